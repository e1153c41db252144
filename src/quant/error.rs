//! Errors of the quantization core: bad plans (naming the file when one was read), plans that do
//! not fit the model, missing or invalid ranges, graph failures during calibration.

use crate::graph::GraphError;
use std::path::PathBuf;
use thiserror::Error;

/// Something in quantization went wrong; messages say what was expected and what was found.
#[derive(Debug, Error)]
pub enum QuantError {
    /// The calibration or evaluation data failed (an image file that no longer decodes).
    #[error(transparent)]
    Data(#[from] crate::data::DataError),
    /// A plan file could not be read or parsed, or holds invalid values.
    #[error("{problem} (plan file {path})")]
    PlanFile { path: PathBuf, problem: String },
    /// A plan names a layer the model does not have.
    #[error(
        "plan names layer '{layer}', which the model does not have (quantizable layers: {available})"
    )]
    UnknownLayer { layer: String, available: String },
    /// A plan names a layer that is not a Conv2d, Linear or MatMul.
    #[error(
        "plan names layer '{layer}', a {op}, which is not quantizable (Conv2d, Linear, MatMul)"
    )]
    NotQuantizable { layer: String, op: String },
    /// A plan lists a layer twice.
    #[error("plan lists layer '{layer}' twice")]
    DuplicateLayer { layer: String },
    /// An invalid value in a plan (bins, percentile, momentum, ranges).
    #[error("{what}: expected {expected}, found {found}")]
    InvalidValue {
        what: String,
        expected: String,
        found: String,
    },
    /// A stored range names a quantization point the prepared model does not have.
    #[error("range for '{point}' does not match any quantization point of this plan")]
    UnknownPoint { point: String },
    /// An activation quantization point has no range yet.
    #[error("quantization point '{point}' has no range: run calibration first")]
    MissingRange { point: String },
    /// Observed data was empty or non-finite where a range was needed.
    #[error("quantization point '{point}' observed no finite values")]
    NoData { point: String },
    /// The graph failed to run.
    #[error(transparent)]
    Graph(#[from] GraphError),
    /// A graph does not have the structure an operation needs (names the node).
    #[error("{0}")]
    Structure(String),
    /// The run was stopped through its stop flag.
    #[error("cancelled")]
    Cancelled,
}

/// Shorthand for an [`QuantError::InvalidValue`].
pub(crate) fn invalid(
    what: impl Into<String>,
    expected: impl Into<String>,
    found: impl std::fmt::Display,
) -> QuantError {
    QuantError::InvalidValue {
        what: what.into(),
        expected: expected.into(),
        found: found.to_string(),
    }
}
