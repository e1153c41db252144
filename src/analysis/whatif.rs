//! The studio's per-layer precision what-if: one model, many plans, each evaluated as soon as the
//! user changes a layer, without recalibrating what is already known.
//!
//! A [`PlanSession`] folds BatchNorm once and keeps one [`Calibrator`] whose observers are keyed
//! by (value, observer choice). An observer's statistics do not depend on the grid (the range is
//! chosen per grid when frozen, and memoized), so flipping a layer between int8 and int4, or
//! re-gridding values already observed, needs no data pass. Only observers a plan adds run the
//! calibration data again, and then only they (`Calibrator::missing` / `merge`): another observer
//! choice, or a value that becomes a point of its own, e.g. conv2's input once conv1 is fp32 and
//! no longer quantizes the output conv2 shared. Changing the calibration data (its `data_key`,
//! or the batch size, which moving-average observers depend on) starts afresh.
//! [`PlanSession::ptq`] then freezes a plan's ranges from the cache, honouring ranges the user
//! pinned in `plan.ranges`, and [`PlanSession::evaluate`] adds `analysis::compare` and the model
//! size. `compare` runs the float and the fake-quant graph on every batch (per-layer SQNR needs
//! both), so an evaluation costs about two float evaluations; caching the float activations
//! instead would hold every layer's outputs for all evaluation images.
//!
//! Depends on `data`, `graph`, `quant` and `analysis::{cache, compare, size}`; knows nothing of
//! the GUI (it runs on a worker thread: the session is `Send`, progress comes through callbacks
//! and a stop flag).

use super::cache::{combine, data_key};
use super::compare::{Comparison, compare};
use super::size::{PlanSize, plan_size};
use crate::data::{Dataset, Loader, Normalization};
use crate::graph::Graph;
use crate::quant::error::invalid;
use crate::quant::points::{Point, PointKind, QuantPoints};
use crate::quant::scheme::PointGrid;
use crate::quant::{
    Calibrator, FoldReport, PointRange, PtqResult, QuantError, QuantPlan, fold_batchnorm,
    plan_points, prepare,
};
use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

/// A model's BatchNorm-folded float graph and the calibration cached for it.
///
/// ```
/// use qatlas::analysis::PlanSession;
/// use qatlas::data::{Dataset, Normalization, Pixels};
/// use qatlas::quant::plan::{Precision, QuantPlan};
/// use std::sync::atomic::AtomicBool;
/// let g = qatlas::zoo::Arch::SeedCnn.build([1, 8, 8], 3, 0).unwrap();
/// let pixels = Pixels::U8((0..16 * 64).map(|i| (i * 37 % 256) as u8).collect());
/// let labels = (0..16).map(|i| i % 3).collect();
/// let ds = Dataset::new("demo", pixels, labels, [1, 8, 8], vec![]).unwrap();
/// let (norm, stop) = (Normalization::identity(), AtomicBool::new(false));
/// let mut s = PlanSession::new(&g).unwrap();
/// let mut plan = QuantPlan::default_for(&g, Precision::Int8);
/// // input, relu1, relu2 and fc are observed...
/// assert_eq!(s.calibrate(&plan, &ds, &norm, 16, 8, &stop, &mut |_, _| {}).unwrap(), 4);
/// // ...and int4 weights on conv2 need no new observer.
/// plan.layers[1].precision = Precision::Int4;
/// assert_eq!(s.calibrate(&plan, &ds, &norm, 16, 8, &stop, &mut |_, _| {}).unwrap(), 0);
/// let ev = s.evaluate(&plan, &ds, &norm, 16, 8, &stop).unwrap();
/// assert_eq!(ev.comparison.images, 16);
/// ```
#[derive(Debug)]
pub struct PlanSession {
    folded: Graph,
    fold: FoldReport,
    calibrator: Calibrator,
    /// `combine([data_key, batch])` of the data the calibrator has seen (`None`: nothing yet).
    calib_key: Option<u64>,
}

/// One plan evaluated by [`PlanSession::evaluate`].
#[derive(Clone, Debug)]
pub struct PlanEval {
    /// Float versus fake-quant on the evaluation images.
    pub comparison: Comparison,
    /// The PTQ result (shared: the UI keeps it as an immutable snapshot).
    pub ptq: Arc<PtqResult>,
    pub size: PlanSize,
    /// Wall time of freezing, preparing and comparing.
    pub seconds: f64,
}

/// Checks an image count and the normalization before a data pass.
fn check_data(ds: &Dataset, norm: &Normalization, n: usize, what: &str) -> Result<(), QuantError> {
    if n == 0 || ds.is_empty() {
        return Err(invalid(
            format!("{what} images"),
            "at least 1",
            n.min(ds.len()),
        ));
    }
    norm.validate(ds.c)
        .map_err(|e| invalid("normalization", format!("one for {what} data"), e))
}

impl PlanSession {
    /// Folds BatchNorm (refuses an already-quantized model, as `quant::ptq` does).
    pub fn new(model: &Graph) -> Result<Self, QuantError> {
        crate::quant::reject_quantized(model)?;
        let (folded, fold) = fold_batchnorm(model)?;
        Ok(PlanSession {
            folded,
            fold,
            calibrator: Calibrator::new(&[]),
            calib_key: None,
        })
    }

    /// The BatchNorm-folded float graph every plan is applied to.
    pub fn folded(&self) -> &Graph {
        &self.folded
    }

    /// What folding did.
    pub fn fold_report(&self) -> &FoldReport {
        &self.fold
    }

    /// The cached observers (all plans calibrated so far).
    pub fn calibrator(&self) -> &Calibrator {
        &self.calibrator
    }

    /// Ensures every activation observer `plan` needs has seen the first `n` images of `calib`
    /// (normalised by `norm`, batches of `batch`): if the calibration data (`data_key` of
    /// `calib`/`n`/`norm`, and the batch size) changed, starts afresh; otherwise observes only
    /// the missing observers. `stop` is checked between batches ([`QuantError::Cancelled`]; the
    /// cache is then left as it was); `on_images(done, total)` reports progress. Returns how
    /// many observers were newly calibrated (0 = fully cached, no data pass).
    #[allow(clippy::too_many_arguments)]
    pub fn calibrate(
        &mut self,
        plan: &QuantPlan,
        calib: &Dataset,
        norm: &Normalization,
        n: usize,
        batch: usize,
        stop: &AtomicBool,
        on_images: &mut dyn FnMut(usize, usize),
    ) -> Result<usize, QuantError> {
        check_data(calib, norm, n, "calibration")?;
        let points = plan_points(&self.folded, plan)?;
        let batch = batch.max(1);
        let key = combine(&[data_key(calib, n, norm), batch as u64]);
        let fresh = self.calib_key != Some(key);
        let mut todo = if fresh {
            Calibrator::new(&[&points])
        } else {
            self.calibrator.missing(&[&points])
        };
        let count = todo.observer_count();
        if count > 0 {
            let ds = calib.first(n);
            let total = ds.len();
            for (x, _) in Loader::new(&ds, norm, batch, None, false) {
                if stop.load(Ordering::Relaxed) {
                    return Err(QuantError::Cancelled);
                }
                todo.observe(&self.folded, &x)?;
                on_images(todo.images(), total);
            }
            ds.check()?;
        }
        if fresh {
            self.calibrator = todo;
            self.calib_key = Some(key);
        } else {
            self.calibrator.merge(todo);
        }
        Ok(count)
    }

    /// The number of scales a point needs: its weight's channels along `axis`, else 1.
    fn channels(&self, p: &Point) -> usize {
        match p.kind {
            PointKind::Weight { axis: Some(a), .. } => self
                .folded
                .param_of(p.value)
                .and_then(|q| self.folded.params[q].tensor.shape().get(a).copied())
                .unwrap_or(1),
            _ => 1,
        }
    }

    /// The entry of `plan.ranges` that pins point `p`: same name, dtype, scheme and channel
    /// count (anything else is a stale range from another setting, ignored).
    fn pinned<'a>(&self, plan: &'a QuantPlan, p: &Point) -> Option<&'a PointRange> {
        let PointGrid::Int(spec) = p.grid else {
            return None;
        };
        plan.ranges.iter().find(|r| {
            r.point == p.name
                && (r.dtype, r.scheme) == (spec.dtype, spec.scheme)
                && r.scale.len() == self.channels(p)
        })
    }

    /// The PTQ result of `plan` from the cached calibration (no data pass): points, ranges,
    /// prepared graph. `plan.ranges` entries whose point name exists with the same dtype and
    /// scheme (and channel count) override the calibrated range of that point (user-pinned
    /// ranges; a pinned activation point needs no calibration). The returned `PtqResult.plan`
    /// holds all frozen ranges, so pass it back only to pin them all; its `calibrator` holds
    /// only this plan's observers. `Err(QuantError::NoData { point })` if not calibrated for
    /// it.
    pub fn ptq(&self, plan: &QuantPlan) -> Result<PtqResult, QuantError> {
        let points = plan_points(&self.folded, plan)?;
        let pinned: Vec<Option<&PointRange>> =
            points.points.iter().map(|p| self.pinned(plan, p)).collect();
        let rest = QuantPoints {
            points: (points.points.iter().zip(&pinned))
                .filter(|(_, pin)| pin.is_none())
                .map(|(p, _)| p.clone())
                .collect(),
            layers: Vec::new(),
        };
        let mut calibrated: HashMap<String, PointRange> = self
            .calibrator
            .ranges(&self.folded, &rest)?
            .into_iter()
            .map(|r| (r.point.clone(), r))
            .collect();
        let ranges: Vec<PointRange> = (points.points.iter().zip(&pinned))
            .filter_map(|(p, pin)| match pin {
                Some(r) => Some((*r).clone()),
                None => calibrated.remove(&p.name),
            })
            .collect();
        let prepared = prepare(&self.folded, &points, &ranges)?;
        let mut plan = plan.clone();
        plan.ranges = ranges;
        Ok(PtqResult {
            folded: self.folded.clone(),
            fold: self.fold.clone(),
            calibrator: self.calibrator.subset(&[&points]),
            points,
            prepared,
            plan,
        })
    }

    /// [`ptq`](Self::ptq) + `analysis::compare` on the first `n` images of `eval` (normalised
    /// by `norm`, batches of `batch`), plus the model size under the plan; `stop` is checked
    /// between batches.
    pub fn evaluate(
        &self,
        plan: &QuantPlan,
        eval: &Dataset,
        norm: &Normalization,
        n: usize,
        batch: usize,
        stop: &AtomicBool,
    ) -> Result<PlanEval, QuantError> {
        check_data(eval, norm, n, "evaluation")?;
        let start = Instant::now();
        let res = self.ptq(plan)?;
        let ds = eval.first(n);
        let comparison = compare(
            &self.folded,
            &res.points,
            &res.prepared,
            &ds,
            norm,
            batch,
            stop,
        )?;
        Ok(PlanEval {
            comparison,
            size: plan_size(&self.folded, plan),
            ptq: Arc::new(res),
            seconds: start.elapsed().as_secs_f64(),
        })
    }
}

#[cfg(test)]
mod tests;
