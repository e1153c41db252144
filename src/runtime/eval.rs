//! Accuracy of an integer model on a dataset, the runtime's twin of `train::evaluate`: same
//! batches, same loss, so the two can be compared number for number.

use super::{IntModel, RuntimeError};
use crate::data::{Dataset, Loader, Normalization};
use crate::ops::loss::softmax_cross_entropy;
use serde::Serialize;
use std::time::Instant;

/// Accuracy (fraction), mean cross-entropy, images and images per second.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct RuntimeEval {
    pub accuracy: f64,
    pub loss: f64,
    pub images: usize,
    pub images_per_s: f64,
}

/// Evaluates `m` on all of `ds` in batches of `batch`.
pub fn evaluate(
    m: &IntModel,
    ds: &Dataset,
    norm: &Normalization,
    batch: usize,
) -> Result<RuntimeEval, RuntimeError> {
    let start = Instant::now();
    let (mut correct, mut loss, mut seen) = (0usize, 0.0f64, 0usize);
    for (x, y) in Loader::new(ds, norm, batch.max(1), None, false) {
        let logits = m.infer(&x)?;
        let l = softmax_cross_entropy(&logits, &y)
            .map_err(|e| RuntimeError::Invalid(format!("loss: {e}")))?;
        correct += l.correct;
        loss += l.loss as f64 * y.len() as f64;
        seen += y.len();
    }
    let secs = start.elapsed().as_secs_f64().max(1e-9);
    Ok(RuntimeEval {
        accuracy: correct as f64 / seen.max(1) as f64,
        loss: loss / seen.max(1) as f64,
        images: seen,
        images_per_s: seen as f64 / secs,
    })
}
