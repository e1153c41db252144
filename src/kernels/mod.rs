//! Compute kernels: the only module allowed `unsafe`.
//!
//! Today it holds the float GEMM used by every float op (a safe, bounds-checked wrapper over the
//! `gemm` crate's runtime-dispatched AVX2/AVX-512 kernels, with `matrixmultiply` — ndarray's own
//! GEMM — selectable as the baseline for benchmarks). Depends on nothing else in the crate.

pub mod alloc;
pub mod sgemm;

pub use sgemm::{FloatBackend, MatMut, MatRef, float_backend, set_float_backend, sgemm};
