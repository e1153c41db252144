//! Accuracy of an integer model on a dataset: `train::evaluate_with` (the float engine's loop:
//! same batches, same loss) with the integer runtime doing inference, so the two can be compared
//! number for number.

use super::{IntModel, RuntimeError};
use crate::data::{Dataset, Normalization};
use crate::train::{EvalResult, evaluate_with};

/// Evaluates `m` on all of `ds` in batches of `batch`.
pub fn evaluate(
    m: &IntModel,
    ds: &Dataset,
    norm: &Normalization,
    batch: usize,
) -> Result<EvalResult, RuntimeError> {
    evaluate_with(
        ds,
        norm,
        batch,
        |x| m.infer(x),
        |e| RuntimeError::Invalid(format!("loss: {e}")),
    )
}
