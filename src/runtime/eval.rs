//! Accuracy of an integer model on a dataset: `train::evaluate_with` (the float engine's loop:
//! same batches, same loss) with the integer runtime doing inference, so the two can be compared
//! number for number; and the evaluation of a float graph on the float runtime
//! ([`IntModel::from_float`]), which the window and `qatlas eval` use for float models.

use super::{ConvertOptions, IntModel, RuntimeError};
use crate::data::{Dataset, Normalization};
use crate::graph::{Graph, GraphError};
use crate::ops::OpKind;
use crate::train::{EvalResult, evaluate as graph_evaluate, evaluate_with};

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

/// What evaluated a float graph.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum FloatEngine {
    /// The float runtime: NHWC f32 layers, BatchNorm folded, fused epilogues.
    Runtime,
    /// The graph executor (`Graph::infer`): for graphs with fake quantizers (the simulation
    /// must run as trained) or ops the runtime does not lower.
    Graph,
}

impl FloatEngine {
    /// How the CLI and the window name it.
    pub fn name(self) -> &'static str {
        match self {
            FloatEngine::Runtime => "float runtime",
            FloatEngine::Graph => "graph executor",
        }
    }
}

/// Evaluates a float graph on all of `ds` in batches of `batch`, on the float runtime when the
/// graph has no fake quantizer and lowers to it, else on the graph executor. Accuracy and loss
/// equal the graph executor's up to f32 summation order (`tests/runtime_float.rs`).
pub fn evaluate_float(
    g: &Graph,
    ds: &Dataset,
    norm: &Normalization,
    batch: usize,
) -> Result<(EvalResult, FloatEngine), GraphError> {
    let simulated = g.nodes.iter().any(|n| matches!(n.op, OpKind::FakeQuant(_)));
    let runtime = (!simulated)
        .then(|| IntModel::from_float(g, &ConvertOptions::default()).ok())
        .flatten();
    if let Some(m) = runtime
        && let Ok(r) = evaluate(&m, ds, norm, batch)
    {
        return Ok((r, FloatEngine::Runtime));
    }
    // Not lowerable, or the runtime refused the data: the graph executor runs it (and names
    // the problem in its own terms if there is one).
    Ok((graph_evaluate(g, ds, norm, batch)?, FloatEngine::Graph))
}
