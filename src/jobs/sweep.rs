//! One-shot analysis jobs of the studio: a sensitivity sweep (rows stream out as each layer's
//! variants finish; cached by model, plan, data and settings), a mixed-precision search and
//! the per-layer latency of a
//! plan measured on this machine's integer kernels. Both run the library code the CLI runs
//! (`analysis::sensitivity`, `bench::latency`). Knows nothing of egui.

use super::{IntegerCheckError, Job, JobError, JobEvent, Waker};
use crate::analysis::search::{SearchConfig, SearchData, SearchMemory, search};
use crate::analysis::sensitivity::{
    SensitivityCache, SensitivityEvent, SensitivityReport, SweepConfig, SweepData, sensitivity,
};
use crate::analysis::whatif::PlanEval;
use crate::bench::latency::{LatencyConfig, plan_latency};
use crate::data::{Dataset, Normalization};
use crate::graph::Graph;
use crate::io::Model;
use crate::quant::QuantPlan;
use crate::runtime::{ConvertOptions, IntModel, evaluate as runtime_evaluate};
use std::sync::Arc;

/// The end of a sensitivity sweep.
#[derive(Clone, Debug)]
pub struct SweepDone {
    pub report: Arc<SensitivityReport>,
    /// Served from the cache (no work done).
    pub cached: bool,
}

impl Job {
    /// Sweeps the layers of `plan` on `model` ([`sensitivity`]); ends with
    /// [`JobEvent::SweepDone`] or [`JobEvent::Failed`]; Stop cancels between batches.
    #[allow(clippy::too_many_arguments)]
    pub fn sensitivity(
        model: Arc<Model>,
        plan: QuantPlan,
        calib: Arc<Dataset>,
        eval: Arc<Dataset>,
        norm: Normalization,
        cfg: SweepConfig,
        cache: Arc<SensitivityCache>,
        waker: Waker,
    ) -> std::io::Result<Job> {
        Job::spawn("qatlas-sensitivity", waker, move |out, control| {
            let d = SweepData {
                model: &model.graph,
                plan: &plan,
                calib: &calib,
                eval: &eval,
                norm: &norm,
            };
            let on_event = |e: SensitivityEvent| out.send(JobEvent::Sweep(e));
            match sensitivity(&d, &cfg, Some(&cache), control.stop_flag(), &on_event) {
                Ok(s) => out.send(JobEvent::SweepDone(SweepDone {
                    report: s.report,
                    cached: s.cached,
                })),
                Err(crate::quant::QuantError::Cancelled) => {
                    out.send(JobEvent::Failed(JobError::SweepCancelled))
                }
                Err(e) => out.send(JobEvent::Failed(JobError::Sweep(e))),
            }
        })
    }

    /// Measures the per-layer latency of an evaluated plan (its fake-quant graph against the
    /// BN-folded float graph) on the integer runtime ([`plan_latency`]); ends with
    /// [`JobEvent::Latency`]. Then, with `check`, the accuracy of the converted integer model
    /// on the first images of that data ([`JobEvent::IntegerAccuracy`]): the number the
    /// simulation promises.
    pub fn latency(
        eval: Arc<PlanEval>,
        cfg: LatencyConfig,
        check: Option<IntegerCheck>,
        waker: Waker,
    ) -> std::io::Result<Job> {
        Job::spawn("qatlas-latency", waker, move |out, control| {
            let (float, prepared) = (&eval.ptq.folded, &eval.ptq.prepared.graph);
            let r = plan_latency(float, prepared, &cfg, control.stop_flag());
            out.send(JobEvent::Latency(r.map(Arc::new)));
            if let Some(c) = check
                && !control.stop_requested()
            {
                out.send(JobEvent::IntegerAccuracy(integer_accuracy(prepared, &c)));
            }
        })
    }
}

impl Job {
    /// Searches per-layer precisions of `base` on `model` ([`search`]): every evaluated plan
    /// as [`JobEvent::Search`], then [`JobEvent::SearchDone`] (Stop ends the search early and
    /// still reports the front) or [`JobEvent::Failed`]. `resume` continues an earlier search
    /// when it fits.
    pub fn search(
        model: Arc<Model>,
        base: QuantPlan,
        data: (Arc<Dataset>, Arc<Dataset>),
        cfg: SearchConfig,
        resume: Option<SearchMemory>,
        waker: Waker,
    ) -> std::io::Result<Job> {
        let (calib, eval) = data;
        Job::spawn("qatlas-search", waker, move |out, control| {
            let norm = model.meta.normalization.clone();
            let d = SearchData {
                model: &model.graph,
                base: &base,
                calib: &calib,
                eval: &eval,
                norm: &norm,
                resume: resume.as_ref(),
            };
            let r = search(&d, &cfg, control.stop_flag(), &mut |e| {
                out.send(JobEvent::Search(e))
            });
            match r {
                Ok(r) => out.send(JobEvent::SearchDone(Box::new(r))),
                Err(e) => out.send(JobEvent::Failed(JobError::Search(e))),
            }
        })
    }
}

/// What the integer-runtime check of a plan measures on.
#[derive(Clone, Debug)]
pub struct IntegerCheck {
    pub data: Arc<Dataset>,
    pub norm: Normalization,
    pub samples: usize,
}

/// Accuracy and image count of the fake-quant graph `prepared` converted to the integer
/// runtime.
pub fn integer_accuracy(
    prepared: &Graph,
    c: &IntegerCheck,
) -> Result<(f64, usize), IntegerCheckError> {
    let m = IntModel::convert(prepared, &ConvertOptions::default())
        .map_err(IntegerCheckError::Convert)?;
    let n = c.samples.min(c.data.len()).max(1);
    let ds = c.data.first(n);
    let r = runtime_evaluate(&m, &ds, &c.norm, 250).map_err(IntegerCheckError::Run)?;
    Ok((r.accuracy, r.images))
}
