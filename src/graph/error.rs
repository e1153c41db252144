//! Errors of graph construction and execution, naming the node involved.

use crate::ops::OpError;
use thiserror::Error;

/// A graph is malformed or could not run.
#[derive(Debug, Error)]
pub enum GraphError {
    /// The data feeding the graph failed (an image file that no longer decodes).
    #[error(transparent)]
    Data(#[from] crate::data::DataError),
    #[error("node '{node}': {source}")]
    Op { node: String, source: OpError },
    #[error("node '{node}' reads value '{value}', which is not defined before it")]
    Undefined { node: String, value: String },
    #[error("value '{value}' is defined twice")]
    Duplicate { value: String },
    #[error("graph expects {expected} inputs, got {found}")]
    Inputs { expected: usize, found: usize },
    #[error("input has shape {found:?}, the model expects [N, {expected:?}]")]
    InputShape {
        expected: Vec<usize>,
        found: Vec<usize>,
    },
    #[error("non-finite value in the output of node '{node}'")]
    NonFinite { node: String },
}
