//! Errors of the integer runtime: a graph pattern `convert` cannot lower (naming the node), an
//! inconsistent model description, a wrong input, a kernel refusal, or a bad bundle file (naming
//! the file). Depends on `kernels::int8` for the kernel error only.

use crate::kernels::int8::Int8Error;
use std::path::PathBuf;
use thiserror::Error;

/// Something the integer runtime could not do.
#[derive(Debug, Error)]
pub enum RuntimeError {
    /// The input data failed (an image file that no longer decodes).
    #[error(transparent)]
    Data(#[from] crate::data::DataError),
    /// A node of the fake-quant graph has no integer-runtime lowering.
    #[error("node '{node}' ({op}): {problem}")]
    Unsupported {
        node: String,
        op: String,
        problem: String,
    },
    /// The model description contradicts itself (wrong sizes, slots, grids).
    #[error("invalid integer model: {0}")]
    Invalid(String),
    /// The input batch does not have the shape the model was converted for.
    #[error("input: expected [N, {expected}] images, found shape {found:?}")]
    Input { expected: String, found: Vec<usize> },
    #[error(transparent)]
    Kernel(#[from] Int8Error),
    #[error("cannot read {}: {source}", path.display())]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot write {}: {source}", path.display())]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
    /// A bundle file is not a valid integer model.
    #[error("{problem}: {}", path.display())]
    Format { path: PathBuf, problem: String },
}

/// Shorthand for [`RuntimeError::Invalid`].
pub(crate) fn invalid(msg: impl Into<String>) -> RuntimeError {
    RuntimeError::Invalid(msg.into())
}
