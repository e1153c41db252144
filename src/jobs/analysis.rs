//! The plan worker: one long-lived thread per model that owns an
//! [`analysis::whatif::PlanSession`](crate::analysis::whatif::PlanSession) (the BN-folded float
//! model and its calibration cache) and answers [`PlanRequest`]s: calibrate and evaluate a plan
//! (the studio's what-if and its Calibrate button), and the clip-range what-if of a histogram
//! drag. Each request carries its own cancel flag, so a newer request can cancel an older one;
//! requests queued behind a newer one of the same kind are skipped. Results go out as typed
//! [`PlanEvent`]s through the same [`Job`] channel and waker as every other job.
//!
//! Knows nothing of egui. Depends on `analysis`, `quant`, `data`.

use super::{Job, JobEvent, Outbox, Waker};
use crate::analysis::clip::{RangeStats, observer_ranges, range_stats};
use crate::analysis::layer_stats::{LayerStats, layer_stats};
use crate::analysis::whatif::{PlanEval, PlanSession};
use crate::data::{Dataset, Normalization};
use crate::graph::Graph;
use crate::io::Model;
use crate::quant::histogram::Histogram;
use crate::quant::points::PointKind;
use crate::quant::scheme::{PointGrid, QSpec};
use crate::quant::{PtqResult, QuantError, QuantPlan};
use crate::tensor::slice;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, Sender, channel};
use std::time::Instant;

/// Bins of the histograms sent for drawing.
pub const VIEW_BINS: usize = 128;

/// Which data a plan evaluation uses.
#[derive(Clone, Debug)]
pub struct PlanData {
    /// Calibration images come from the start of this set (the training split).
    pub calib: Arc<Dataset>,
    /// Accuracy is measured on the start of this set (the test split).
    pub eval: Arc<Dataset>,
    pub norm: Normalization,
    pub calib_samples: usize,
    pub eval_samples: usize,
}

/// Which tensor of a layer a range refers to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub enum TensorRole {
    Weight,
    Input,
    Output,
}

/// What the plan worker is asked to do.
pub enum PlanRequest {
    /// Calibrate what `plan` needs (cached) and measure it on the evaluation images.
    Evaluate {
        ticket: u64,
        plan: QuantPlan,
        data: PlanData,
        cancel: Arc<AtomicBool>,
    },
    /// SQNR and clipped fraction of one layer tensor under a hand-set range (histogram drag),
    /// from the latest evaluated plan.
    Range {
        ticket: u64,
        layer: String,
        role: TensorRole,
        min: f32,
        max: f32,
    },
}

impl TensorRole {
    /// "weight", "input", "output".
    pub fn name(self) -> &'static str {
        match self {
            TensorRole::Weight => "weight",
            TensorRole::Input => "input",
            TensorRole::Output => "output",
        }
    }
}

impl PlanRequest {
    fn ticket(&self) -> u64 {
        match self {
            PlanRequest::Evaluate { ticket, .. } | PlanRequest::Range { ticket, .. } => *ticket,
        }
    }

    fn same_kind(&self, other: &PlanRequest) -> bool {
        std::mem::discriminant(self) == std::mem::discriminant(other)
    }
}

/// A finished plan evaluation.
#[derive(Clone, Debug)]
pub struct Evaluated {
    pub ticket: u64,
    pub eval: Arc<PlanEval>,
    /// Per-layer histograms and grids of the evaluated plan, for the Histograms tab.
    pub stats: Arc<Vec<LayerStats>>,
    /// Observers that had to be calibrated (0: the calibration cache served everything).
    pub recalibrated: usize,
    /// Wall time of the request on the worker (calibration + evaluation).
    pub seconds: f64,
}

/// What the plan worker reports.
#[derive(Clone, Debug)]
pub enum PlanEvent {
    /// Calibration progress of request `ticket`: `done` of `total` images.
    Calibrating {
        ticket: u64,
        done: usize,
        total: usize,
    },
    Evaluated(Evaluated),
    Range {
        ticket: u64,
        layer: String,
        role: TensorRole,
        stats: RangeStats,
        /// The range each observer kind would choose from the same histogram.
        observers: Vec<(String, (f32, f32))>,
    },
    /// The request was cancelled by a newer one (or by the user).
    Cancelled {
        ticket: u64,
    },
    Failed {
        ticket: u64,
        message: String,
    },
}

/// The requests side of a plan worker (its events arrive through the [`Job`]).
pub struct PlanWorker {
    pub job: Job,
    tx: Sender<PlanRequest>,
}

impl PlanWorker {
    /// Starts the worker for `model` (a float model; the session folds BatchNorm on the
    /// worker, so the UI thread does no graph work).
    pub fn start(model: Arc<Model>, waker: Waker) -> std::io::Result<PlanWorker> {
        let (tx, rx) = channel::<PlanRequest>();
        let job = Job::spawn("qatlas-plan", waker, move |out, _control| {
            serve(&model.graph, rx, out)
        })?;
        Ok(PlanWorker { job, tx })
    }

    /// Queues a request; false if the worker is gone.
    pub fn send(&self, r: PlanRequest) -> bool {
        self.tx.send(r).is_ok()
    }
}

fn send(out: &Outbox, e: PlanEvent) {
    out.send(JobEvent::Plan(e));
}

/// The worker loop: runs until the studio drops the request sender.
fn serve(model: &Graph, rx: Receiver<PlanRequest>, out: &Outbox) {
    let mut session = match PlanSession::new(model) {
        Ok(s) => Some(s),
        Err(e) => {
            out.send(JobEvent::Failed(super::JobError::PlanTools(e)));
            None
        }
    };
    let mut latest: Option<Arc<PtqResult>> = None;
    let mut drag: Option<DragCache> = None;
    let mut queue: Vec<PlanRequest> = Vec::new();
    loop {
        if queue.is_empty() {
            match rx.recv() {
                Ok(r) => queue.push(r),
                Err(_) => return,
            }
        }
        queue.extend(rx.try_iter());
        let r = queue.remove(0);
        // A newer request of the same kind makes this one obsolete.
        if queue.iter().any(|q| q.same_kind(&r)) {
            send(out, PlanEvent::Cancelled { ticket: r.ticket() });
            continue;
        }
        let Some(session) = session.as_mut() else {
            send(
                out,
                PlanEvent::Failed {
                    ticket: r.ticket(),
                    message: "the model cannot be quantized".into(),
                },
            );
            continue;
        };
        match r {
            PlanRequest::Evaluate {
                ticket,
                plan,
                data,
                cancel,
            } => match evaluate(session, ticket, &plan, &data, &cancel, out) {
                Ok(done) => {
                    latest = Some(done.eval.ptq.clone());
                    send(out, PlanEvent::Evaluated(done));
                }
                Err(QuantError::Cancelled) => send(out, PlanEvent::Cancelled { ticket }),
                Err(e) => send(
                    out,
                    PlanEvent::Failed {
                        ticket,
                        message: e.to_string(),
                    },
                ),
            },
            PlanRequest::Range {
                ticket,
                layer,
                role,
                min,
                max,
            } => {
                let ev = match latest.as_ref() {
                    None => PlanEvent::Failed {
                        ticket,
                        message: "no plan has been evaluated yet".into(),
                    },
                    Some(res) => match DragCache::for_tensor(&mut drag, res, &layer, role) {
                        Ok(c) => PlanEvent::Range {
                            ticket,
                            stats: range_stats(&c.hist, min, max, c.spec),
                            observers: c.observers.clone(),
                            layer,
                            role,
                        },
                        Err(message) => PlanEvent::Failed { ticket, message },
                    },
                };
                send(out, ev);
            }
        }
    }
}

fn evaluate(
    session: &mut PlanSession,
    ticket: u64,
    plan: &QuantPlan,
    data: &PlanData,
    cancel: &AtomicBool,
    out: &Outbox,
) -> Result<Evaluated, QuantError> {
    let start = Instant::now();
    let (eval, recalibrated) =
        calibrate_and_evaluate(session, plan, data, cancel, &mut |done, total| {
            send(
                out,
                PlanEvent::Calibrating {
                    ticket,
                    done,
                    total,
                },
            )
        })?;
    let stats = layer_stats(&eval.ptq, VIEW_BINS);
    Ok(Evaluated {
        ticket,
        eval: Arc::new(eval),
        stats: Arc::new(stats),
        recalibrated,
        seconds: start.elapsed().as_secs_f64(),
    })
}

/// Calibrates what `plan` needs on the first `data.calib_samples` images (batches of 256;
/// observers already seen are reused) and evaluates it on the first `data.eval_samples`
/// (batches of 250): the studio's what-if, also what `qatlas run` replays, so both give the
/// same numbers. Returns the evaluation and how many observers were calibrated.
pub fn calibrate_and_evaluate(
    session: &mut PlanSession,
    plan: &QuantPlan,
    data: &PlanData,
    cancel: &AtomicBool,
    progress: &mut dyn FnMut(usize, usize),
) -> Result<(PlanEval, usize), QuantError> {
    let calib_n = data.calib_samples.min(data.calib.len()).max(1);
    let recalibrated = session.calibrate(
        plan,
        &data.calib,
        &data.norm,
        calib_n,
        256,
        cancel,
        progress,
    )?;
    if cancel.load(Ordering::Relaxed) {
        return Err(QuantError::Cancelled);
    }
    let eval_n = data.eval_samples.min(data.eval.len()).max(1);
    let eval = session.evaluate(plan, &data.eval, &data.norm, eval_n, 250, cancel)?;
    Ok((eval, recalibrated))
}

/// The index (in `res.points.points`) of a layer tensor's quantization point, or why it has
/// none.
pub fn layer_point(res: &PtqResult, layer: &str, role: TensorRole) -> Result<usize, String> {
    let l = res
        .points
        .layers
        .iter()
        .find(|l| res.folded.nodes[l.node].name == layer)
        .ok_or_else(|| format!("'{layer}' is not quantized in this plan"))?;
    match role {
        TensorRole::Weight => l.weight,
        TensorRole::Input => l.inputs.first().copied().flatten(),
        TensorRole::Output => l.output,
    }
    .ok_or_else(|| format!("'{layer}' has no quantized {} tensor", role.name()))
}

/// The histogram behind a layer tensor of a PTQ result and the integer grid of its point.
fn tensor_histogram(
    res: &PtqResult,
    layer: &str,
    role: TensorRole,
) -> Result<(Histogram, QSpec), String> {
    let pi = layer_point(res, layer, role)?;
    let point = &res.points.points[pi];
    let PointGrid::Int(spec) = point.grid else {
        return Err("an fp16 tensor has no integer grid to clip".into());
    };
    let hist = match point.kind {
        PointKind::Weight { .. } => {
            let p = res
                .folded
                .param_of(point.value)
                .ok_or("the weight is not a parameter")?;
            let mut h = Histogram::new(crate::quant::observer::DEFAULT_BINS);
            h.observe(slice(&res.folded.params[p].tensor));
            h
        }
        _ => res
            .calibrator
            .state(point)
            .and_then(|s| s.histogram())
            .cloned()
            .ok_or("this activation's observer keeps no histogram (choose a histogram observer)")?,
    };
    Ok((hist, spec))
}

/// The histogram of the tensor being dragged and the observers' ranges on it: built once per
/// (evaluated plan, layer, tensor), then every drag event only re-scores a range.
struct DragCache {
    ptq: Arc<PtqResult>,
    layer: String,
    role: TensorRole,
    hist: Histogram,
    spec: QSpec,
    observers: Vec<(String, (f32, f32))>,
}

impl DragCache {
    fn for_tensor<'c>(
        cache: &'c mut Option<DragCache>,
        ptq: &Arc<PtqResult>,
        layer: &str,
        role: TensorRole,
    ) -> Result<&'c DragCache, String> {
        let hit = cache
            .as_ref()
            .is_some_and(|c| Arc::ptr_eq(&c.ptq, ptq) && c.layer == layer && c.role == role);
        if !hit {
            let (hist, spec) = tensor_histogram(ptq, layer, role)?;
            *cache = Some(DragCache {
                ptq: ptq.clone(),
                layer: layer.to_string(),
                role,
                observers: observer_ranges(&hist, spec),
                hist,
                spec,
            });
        }
        Ok(cache.as_ref().expect("just filled"))
    }
}

/// Keeps the latest cancel flag of a kind of request, so that sending a new one cancels the
/// one in flight. Held by the sender alone (the worker only reads the flags).
#[derive(Default)]
pub struct CancelSlot(Option<Arc<AtomicBool>>);

impl CancelSlot {
    /// Cancels the previous request and returns the flag of the next one.
    pub fn renew(&mut self) -> Arc<AtomicBool> {
        self.cancel();
        let flag = Arc::new(AtomicBool::new(false));
        self.0 = Some(flag.clone());
        flag
    }

    /// Cancels the request in flight, if any.
    pub fn cancel(&self) {
        if let Some(f) = &self.0 {
            f.store(true, Ordering::Relaxed);
        }
    }
}
