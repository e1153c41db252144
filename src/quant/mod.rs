//! The quantization core: plans, grids, observers, BatchNorm folding, fake-quant insertion and
//! post-training calibration.
//!
//! Flow (what [`ptq`] does): `fold::fold_batchnorm` → `points::plan_points` (where fake
//! quantizers go for a [`QuantPlan`]) → `calibrate::calibrate` (observers on float activations)
//! → `Calibrator::ranges` (frozen scales and zero points) → `prepare::prepare` (a graph with
//! `FakeQuant` nodes that the ordinary executor, trainer and evaluator run).
//!
//! Sits above `graph`/`ops` and below `analysis`, `train`'s QAT, `io` and the UI; knows nothing
//! of files except plan files, and nothing of the GUI.
//!
//! ```
//! use qatlas::quant::{ptq, plan::{Precision, QuantPlan}};
//! use std::sync::atomic::AtomicBool;
//! let g = qatlas::zoo::Arch::SeedCnn.build([1, 8, 8], 3, 0).unwrap();
//! let plan = QuantPlan::default_for(&g, Precision::Int8);
//! let x = qatlas::tensor::zeros(&[2, 1, 8, 8]);
//! let out = ptq(&g, &plan, [x.clone()], &AtomicBool::new(false), &mut |_| {}).unwrap();
//! let y = out.prepared.graph.infer(&x).unwrap();
//! assert_eq!(y.shape(), &[2, 3]);
//! assert_eq!(out.plan.ranges.len(), 7);
//! ```

pub mod adaround;
pub mod bn_reestimate;
pub mod calibrate;
pub mod deploy;
pub mod error;
pub mod exec;
pub mod fold;
pub mod histogram;
pub mod observer;
pub mod oscillation;
pub mod plan;
pub mod points;
pub mod prepare;
pub mod qat;
pub mod range;
pub mod range_search;
pub mod recipe;
pub(crate) mod rewrite;
pub mod scheme;

pub use calibrate::{Calibrator, calibrate};
pub use deploy::deploy;
pub use error::QuantError;
pub use fold::{FoldReport, fold_batchnorm};
pub use observer::{Observer, RangeMethod};
pub use plan::{Granularity, LayerPlan, PointRange, Precision, QuantPlan};
pub use points::{QuantPoints, plan_points};
pub use prepare::{Prepared, prepare};
pub use qat::{QatOptions, QatPrepared, prepare_qat};

use crate::graph::Graph;
use crate::tensor::Tensor;
use std::sync::atomic::AtomicBool;

/// Everything a PTQ run produced.
#[derive(Clone, Debug)]
pub struct PtqResult {
    /// The float model after BatchNorm folding (the reference the quantized model simulates).
    pub folded: Graph,
    pub fold: FoldReport,
    pub points: QuantPoints,
    pub calibrator: Calibrator,
    /// The fake-quant model.
    pub prepared: Prepared,
    /// The input plan with the frozen ranges filled in.
    pub plan: QuantPlan,
}

/// Post-training quantization: folds BatchNorm, calibrates the activation observers of `plan`
/// on `calib` batches (stoppable between batches; `on_batch(images)` reports progress), freezes
/// the ranges and inserts fake quantizers.
pub fn ptq(
    g: &Graph,
    plan: &QuantPlan,
    calib: impl IntoIterator<Item = Tensor>,
    stop: &AtomicBool,
    on_batch: &mut dyn FnMut(usize),
) -> Result<PtqResult, QuantError> {
    reject_quantized(g)?;
    let (folded, fold) = fold_batchnorm(g)?;
    let points = plan_points(&folded, plan)?;
    let calibrator = calibrate(&folded, &[&points], calib, stop, on_batch)?;
    let ranges = calibrator.ranges(&folded, &points)?;
    let prepared = prepare(&folded, &points, &ranges)?;
    let mut plan = plan.clone();
    plan.ranges = ranges;
    Ok(PtqResult {
        folded,
        fold,
        points,
        calibrator,
        prepared,
        plan,
    })
}

/// Quantizing starts from a float model: one that already holds fake quantizers (a PTQ or QAT
/// output) is refused with a message saying so, rather than failing later on a missing range.
pub(crate) fn reject_quantized(g: &Graph) -> Result<(), QuantError> {
    match g
        .nodes
        .iter()
        .find(|n| matches!(n.op, crate::ops::OpKind::FakeQuant(_)))
    {
        Some(n) => Err(QuantError::Structure(format!(
            "the model is already quantized (it holds fake quantizer '{}'): quantization starts \
             from the float model",
            n.name
        ))),
        None => Ok(()),
    }
}

/// Rebuilds the fake-quant model of a plan that already holds ranges (no data needed); weight
/// ranges are recomputed from the weights.
pub fn prepare_from_plan(g: &Graph, plan: &QuantPlan) -> Result<(Graph, Prepared), QuantError> {
    let (folded, _) = fold_batchnorm(g)?;
    let points = plan_points(&folded, plan)?;
    let weights = Calibrator::new(&[]).ranges_of_weights(&folded, &points)?;
    let mut ranges = plan.ranges.clone();
    ranges.retain(|r| !weights.iter().any(|w| w.point == r.point));
    ranges.extend(weights);
    let prepared = prepare(&folded, &points, &ranges)?;
    Ok((folded, prepared))
}
