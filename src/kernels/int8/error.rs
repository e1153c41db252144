//! Errors of the integer kernels: what was expected and what was found.

/// An int8 kernel could not run as asked.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Int8Error {
    /// `QATLAS_KERNEL` (or a caller) named a path that does not exist.
    #[error(
        "unknown int8 kernel path `{value}`: expected one of portable, avx2, avxvnni, avx512vnni, amx (or auto)"
    )]
    UnknownPath { value: String },
    /// The path exists but this CPU, OS or build cannot run it.
    #[error("int8 kernel path `{path}` is not available on this machine: {reason}")]
    Unavailable { path: &'static str, reason: String },
    /// A buffer's length does not match the shape it is used with.
    #[error("{what}: expected {expected} elements, found {found}")]
    Length {
        what: &'static str,
        expected: usize,
        found: usize,
    },
    /// A parameter vector is neither per tensor (1) nor per output column (N).
    #[error("{what}: expected 1 or {n} values (per tensor or per output column), found {found}")]
    PerColumn {
        what: &'static str,
        n: usize,
        found: usize,
    },
    /// Weights outside the range a restricted kernel is exact for.
    #[error("kernel {kernel} is exact only for weights with |b| <= {max}, found |b| = {found}")]
    WeightRange {
        kernel: &'static str,
        max: u8,
        found: u32,
    },
    /// A requantization multiplier outside what the fixed-point epilogue represents.
    #[error("requantization multiplier {value}: {reason}")]
    Multiplier { value: String, reason: &'static str },
    /// An output clamp range that is empty or outside the output type.
    #[error("output clamp [{lo}, {hi}] is empty or outside the output type's range [{min}, {max}]")]
    Clamp {
        lo: i32,
        hi: i32,
        min: i32,
        max: i32,
    },
}
