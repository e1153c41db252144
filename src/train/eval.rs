//! Evaluation of a graph on a dataset: accuracy, mean loss and throughput.

use crate::data::{Dataset, Loader, Normalization};
use crate::graph::{Graph, GraphError};
use crate::ops::OpError;
use crate::ops::loss::softmax_cross_entropy;
use crate::tensor::Tensor;
use serde::{Deserialize, Serialize};
use std::time::Instant;

/// Accuracy (fraction), mean cross-entropy and images per second over a dataset.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct EvalResult {
    pub accuracy: f64,
    pub loss: f64,
    pub images: usize,
    pub images_per_s: f64,
}

/// Evaluates `g` on all of `ds` in batches of `batch` (inference mode).
pub fn evaluate(
    g: &Graph,
    ds: &Dataset,
    norm: &Normalization,
    batch: usize,
) -> Result<EvalResult, GraphError> {
    evaluate_with(
        ds,
        norm,
        batch,
        |x| g.infer(x),
        |e| GraphError::Op {
            node: "loss".into(),
            source: e,
        },
    )
}

/// The evaluation loop for any model: `infer` maps a normalised batch to logits (the float
/// graph, or the integer runtime, which so reports numbers comparable one for one).
pub fn evaluate_with<E>(
    ds: &Dataset,
    norm: &Normalization,
    batch: usize,
    mut infer: impl FnMut(&Tensor) -> Result<Tensor, E>,
    loss_error: impl Fn(OpError) -> E,
) -> Result<EvalResult, E>
where
    E: From<crate::data::DataError>,
{
    let start = Instant::now();
    let (mut correct, mut loss, mut seen) = (0usize, 0.0f64, 0usize);
    for (x, y) in Loader::new(ds, norm, batch.max(1), None, false) {
        let logits = infer(&x)?;
        let l = softmax_cross_entropy(&logits, &y).map_err(&loss_error)?;
        correct += l.correct;
        loss += l.loss as f64 * y.len() as f64;
        seen += y.len();
    }
    ds.check()?;
    let secs = start.elapsed().as_secs_f64().max(1e-9);
    Ok(EvalResult {
        accuracy: correct as f64 / seen.max(1) as f64,
        loss: loss / seen.max(1) as f64,
        images: seen,
        images_per_s: seen as f64 / secs,
    })
}
