//! Errors raised by operators: wrong input counts, wrong shapes, unsupported ops.

use thiserror::Error;

/// An operator could not run on the inputs it was given.
#[derive(Debug, Error, Clone, PartialEq)]
pub enum OpError {
    #[error("{op}: expected {expected} inputs, found {found}")]
    Arity {
        op: String,
        expected: usize,
        found: usize,
    },
    #[error("{op}: {what} has shape {found:?}, expected {expected:?}")]
    Shape {
        op: String,
        what: String,
        expected: Vec<usize>,
        found: Vec<usize>,
    },
    #[error("{op}: {problem}")]
    Invalid { op: String, problem: String },
    #[error("operator '{op_type}' is not supported by qatlas")]
    Unsupported { op_type: String },
}

pub(crate) fn invalid(op: &str, problem: impl Into<String>) -> OpError {
    OpError::Invalid {
        op: op.to_string(),
        problem: problem.into(),
    }
}
