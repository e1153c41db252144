//! The quantization-aware-training job: PTQ start (or a checkpoint), fine-tuning with fake
//! quantization on the ordinary trainer, BatchNorm/observer freezing after configured epochs,
//! best-checkpoint keeping, and the deployable fake-quant model at the end.
//!
//! [`run_qat`] is the whole run on the calling thread (the CLI calls it through [`Job::qat`] too,
//! so the studio and the command line share one code path); it reports [`QatEvent`]s next to the
//! trainer's step and epoch events, and honours the job's [`Control`] between steps. A
//! non-finite loss or gradient ends the run with an error, and the model it hands back holds the
//! last good weights (the trainer never applies a non-finite step).

use super::{Job, JobEvent, Waker};
use crate::data::{Dataset, Loader, Normalization};
use crate::io::{Model, save_model};
use crate::quant::QuantPlan;
use crate::quant::bn_reestimate::reestimate_batchnorm;
use crate::quant::deploy::{deploy, deployed_ranges};
use crate::quant::oscillation::{LayerFlips, OscillationMeter, overall_flip_rate};
use crate::quant::qat::{
    PointScale, QatOptions, QatState, freeze_batchnorm, freeze_observers, point_scales,
    prepare_qat, quantizer_lr_factors,
};
use crate::train::{
    Control, EpochHooks, EpochRecord, TrainConfig, TrainError, TrainEvent, TrainSummary, evaluate,
    train_from,
};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;

/// What a QAT run should do.
#[derive(Clone, Debug)]
pub struct QatSpec {
    /// A float model, or a QAT checkpoint (`meta.qat` set) to resume.
    pub model: Model,
    /// The plan (ignored when resuming: the checkpoint holds it).
    pub plan: QuantPlan,
    pub opts: QatOptions,
    pub train: TrainConfig,
    /// Training images used for the PTQ start.
    pub calib_samples: usize,
    /// Freeze BatchNorm statistics once this many epochs are done.
    pub freeze_bn_after: Option<usize>,
    /// Freeze observers once this many epochs are done.
    pub freeze_observers_after: Option<usize>,
    /// Training batches to re-estimate BatchNorm statistics on after the last epoch (0: off).
    pub bn_reestimate_batches: usize,
    /// Where the best checkpoint (by evaluation accuracy) is written, if anywhere.
    pub checkpoint: Option<PathBuf>,
}

/// Progress particular to QAT (step and epoch events come as [`JobEvent::Train`]).
#[derive(Clone, Debug, PartialEq)]
pub enum QatEvent {
    /// The starting point: PTQ calibrated (or a checkpoint loaded), with the accuracies of the
    /// float model and of the starting fake-quant model when an evaluation set is given.
    Started {
        calib_images: usize,
        quantizers: usize,
        float_accuracy: Option<f64>,
        start_accuracy: Option<f64>,
        resumed_at_epoch: Option<usize>,
    },
    /// Current scales and zero points of every integer quantizer (every ~50 steps and after
    /// each epoch).
    Scales {
        step: usize,
        scales: Vec<PointScale>,
    },
    /// BatchNorm statistics and/or observers were frozen before `epoch`.
    Frozen {
        epoch: usize,
        batchnorms: usize,
        observers: usize,
    },
    /// Integer flips of the weights per step since the previous report, per layer (every ~50
    /// steps).
    Oscillation {
        step: usize,
        layers: Vec<LayerFlips>,
    },
    /// BatchNorm statistics were re-estimated with the final weights.
    BatchNormReestimated {
        batchnorms: usize,
        batches: usize,
        /// Accuracy of the deployable model before and after.
        before: Option<f64>,
        after: Option<f64>,
    },
    /// A new best checkpoint was written.
    Checkpoint {
        epoch: usize,
        accuracy: f64,
        path: PathBuf,
    },
}

/// What a QAT run ends with.
#[derive(Clone, Debug)]
pub struct QatOutcome {
    /// The deployable fake-quant model (BatchNorm folded, quantizers frozen).
    pub model: Model,
    /// The training graph as it ended (a checkpoint of the last state).
    pub training: Model,
    /// The plan with the final ranges.
    pub plan: QuantPlan,
    pub summary: Option<TrainSummary>,
    pub float_accuracy: Option<f64>,
    pub start_accuracy: Option<f64>,
    /// Accuracy of the deployable model on the evaluation set.
    pub quantized_accuracy: Option<f64>,
    /// Best epoch (1-based) and its evaluation accuracy.
    pub best: Option<(usize, f64)>,
    /// Accuracy of the deployable model before BatchNorm re-estimation (when it ran).
    pub pre_reestimate_accuracy: Option<f64>,
    /// Weight flips per step of the last reporting window, per layer.
    pub oscillation: Vec<LayerFlips>,
    /// (step, flip rate of all weights per step) over the run.
    pub flip_history: Vec<(usize, f64)>,
    /// Why the run ended early, if it failed (the models then hold the last good weights).
    pub error: Option<String>,
    /// The non-finite step that ended the run, when that was the failure (the weights are
    /// those after `summary.steps` steps).
    pub diverged: Option<crate::train::Divergence>,
}

/// Steps between [`QatEvent::Scales`] reports.
const SCALE_EVERY: usize = 50;

struct Hooks<'a> {
    spec: &'a QatSpec,
    state: QatState,
    meta: crate::io::ModelMeta,
    emit: &'a dyn Fn(JobEvent),
    best: Option<(usize, f64)>,
    meter: OscillationMeter,
    last_flips: Vec<LayerFlips>,
    flip_history: Vec<(usize, f64)>,
}

impl Hooks<'_> {
    /// Sends the flip rates since the last report (if any step was seen).
    fn report_flips(&mut self, step: usize, g: &crate::graph::Graph) {
        if self.meter.steps() == 0 {
            return;
        }
        let layers = self.meter.report(g);
        self.flip_history.push((step, overall_flip_rate(&layers)));
        self.last_flips = layers.clone();
        (self.emit)(JobEvent::Qat(QatEvent::Oscillation { step, layers }));
    }
}

impl EpochHooks for Hooks<'_> {
    fn epoch_start(&mut self, epoch: usize, g: &mut crate::graph::Graph) {
        let due = |after: Option<usize>| after.is_some_and(|a| epoch >= a);
        let batchnorms = if due(self.spec.freeze_bn_after) {
            freeze_batchnorm(g)
        } else {
            0
        };
        let observers = if due(self.spec.freeze_observers_after) {
            freeze_observers(g)
        } else {
            0
        };
        if batchnorms + observers > 0 {
            (self.emit)(JobEvent::Qat(QatEvent::Frozen {
                epoch,
                batchnorms,
                observers,
            }));
        }
    }

    fn lr_factors(&self, g: &crate::graph::Graph) -> Option<Vec<f32>> {
        let f = self.spec.opts.quantizer_lr_factor;
        (f != 1.0).then(|| quantizer_lr_factors(g, f))
    }

    fn step_end(&mut self, step: usize, g: &crate::graph::Graph) {
        self.meter.observe(g);
        if step % SCALE_EVERY == 0 {
            let scales = point_scales(g);
            (self.emit)(JobEvent::Qat(QatEvent::Scales { step, scales }));
            self.report_flips(step, g);
        }
    }

    fn epoch_end(&mut self, g: &crate::graph::Graph, rec: &EpochRecord) -> Result<(), TrainError> {
        self.state.epochs_done = rec.epoch + 1;
        let acc = rec.eval.as_ref().map(|e| e.accuracy);
        self.state.accuracy = acc;
        let Some(acc) = acc else {
            return Ok(());
        };
        if self.best.is_some_and(|(_, b)| b >= acc) {
            return Ok(());
        }
        self.best = Some((rec.epoch + 1, acc));
        if let Some(path) = &self.spec.checkpoint {
            let mut meta = self.meta.clone();
            meta.qat = Some(self.state.clone());
            let m = Model {
                graph: g.clone(),
                meta,
            };
            save_model(&m, path).map_err(|e| TrainError::Hook(format!("checkpoint: {e}")))?;
            (self.emit)(JobEvent::Qat(QatEvent::Checkpoint {
                epoch: rec.epoch + 1,
                accuracy: acc,
                path: path.clone(),
            }));
        }
        Ok(())
    }
}

/// Runs QAT on `train` (evaluating on `eval` after each epoch if given) on this thread.
/// Errors before training starts (bad plan, calibration failure) are returned as `Err`; errors
/// during training come back in [`QatOutcome::error`] with the last good weights.
/// Why a QAT run could not start or finish (errors during training end the run with the last
/// good weights instead: [`QatOutcome::error`]).
#[derive(Debug, thiserror::Error)]
pub enum QatError {
    #[error(transparent)]
    Graph(#[from] crate::graph::GraphError),
    #[error(transparent)]
    Quant(#[from] crate::quant::QuantError),
    #[error(transparent)]
    Data(#[from] crate::data::DataError),
}

pub fn run_qat(
    spec: &QatSpec,
    train: &Dataset,
    eval: Option<&Dataset>,
    control: &Control,
    emit: &dyn Fn(JobEvent),
) -> Result<QatOutcome, QatError> {
    let norm: Normalization = spec.model.meta.normalization.clone();
    let acc_of = |g: &crate::graph::Graph| -> Result<Option<f64>, QatError> {
        Ok(match eval {
            Some(ds) => Some(evaluate(g, ds, &norm, 256)?.accuracy),
            None => None,
        })
    };
    let (mut graph, state, template, calib_images) = match &spec.model.meta.qat {
        Some(st) => {
            let template = st.plan.ranges.clone();
            (spec.model.graph.clone(), st.clone(), template, 0)
        }
        None => {
            // A plan that carries calibrated ranges (the studio's Calibration, a plan file
            // from `qatlas ptq`) is the starting point as it is; otherwise calibrate now.
            let (q, n) = if spec.plan.ranges.is_empty() {
                let n = spec.calib_samples.min(train.len()).max(1);
                let calib = train.first(n);
                let batches = Loader::new(&calib, &norm, 256, None, false).map(|(x, _)| x);
                let stop = AtomicBool::new(false);
                let q = prepare_qat(
                    &spec.model.graph,
                    &spec.plan,
                    batches,
                    &stop,
                    &mut |_| {},
                    &spec.opts,
                )?;
                calib.check()?;
                (q, n)
            } else {
                let q = crate::quant::qat::prepare_qat_from_ranges(
                    &spec.model.graph,
                    &spec.plan,
                    &spec.opts,
                )?;
                (q, 0)
            };
            let state = QatState {
                plan: q.plan.clone(),
                lsq: spec.opts.lsq,
                averaging: spec.opts.averaging,
                damping: spec.opts.damping,
                quantizer_lr_factor: spec.opts.quantizer_lr_factor,
                bn_reestimate_batches: spec.bn_reestimate_batches,
                freeze_bn_after: spec.freeze_bn_after,
                freeze_observers_after: spec.freeze_observers_after,
                epochs_done: 0,
                accuracy: None,
                float_accuracy: acc_of(&spec.model.graph)?,
            };
            (q.graph, state, q.plan.ranges, n)
        }
    };
    let float_accuracy = state.float_accuracy;
    let start_accuracy = acc_of(&graph)?;
    let start_epoch = state.epochs_done;
    emit(JobEvent::Qat(QatEvent::Started {
        calib_images,
        quantizers: point_scales(&graph).len(),
        float_accuracy,
        start_accuracy,
        resumed_at_epoch: spec.model.meta.qat.as_ref().map(|s| s.epochs_done),
    }));
    let mut meta = spec.model.meta.clone();
    meta.qat = None;
    // The float model's curve does not describe this run; the QAT curve is set at the end.
    meta.history = None;
    meta.train_config = Some(spec.train.clone());
    let mut hooks = Hooks {
        spec,
        state,
        meta: meta.clone(),
        emit,
        best: None,
        meter: OscillationMeter::new(&graph),
        last_flips: Vec::new(),
        flip_history: Vec::new(),
    };
    let result = if start_epoch >= spec.train.epochs {
        Err(TrainError::Config(format!(
            "the checkpoint already has {start_epoch} epochs done; ask for more than that with --epochs"
        )))
    } else {
        let mut throttle = super::StepThrottle::default();
        let mut on_train = |e: TrainEvent| {
            if throttle.pass(&e) {
                emit(JobEvent::Train(e));
            }
        };
        train_from(
            &mut graph,
            train,
            &norm,
            &spec.train,
            eval,
            control,
            start_epoch,
            &mut hooks,
            &mut on_train,
        )
    };
    let steps_done = result.as_ref().map_or(0, |s| s.steps);
    hooks.report_flips(steps_done, &graph);
    let best = hooks.best;
    let state = hooks.state.clone();
    let (oscillation, flip_history) = (hooks.last_flips, hooks.flip_history);
    let (summary, error) = match result {
        Ok(s) => (Some(s), None),
        // The steps before a divergence stand: their history is kept with the error.
        Err(e) => (e.diverged_summary().cloned(), Some(e)),
    };
    let diverged = match &error {
        Some(TrainError::Diverged { cause, .. }) => Some(cause.clone()),
        _ => None,
    };
    let error = error.map(|e| e.to_string());
    emit(JobEvent::Qat(QatEvent::Scales {
        step: summary.as_ref().map_or(0, |s| s.steps),
        scales: point_scales(&graph),
    }));
    // (BatchNorms, batches, accuracy before) when BatchNorm statistics were re-estimated.
    let mut reestimated = None;
    if spec.bn_reestimate_batches > 0 && error.is_none() {
        let before = acc_of(&deploy(&graph)?)?;
        let seed = Some(spec.train.seed ^ 0x0b0e_5717);
        let batches = Loader::new(train, &norm, spec.train.batch_size, seed, true)
            .take(spec.bn_reestimate_batches)
            .map(|(x, _)| x);
        let (batchnorms, batches) = reestimate_batchnorm(&mut graph, batches)?;
        train.check()?;
        reestimated = (batchnorms > 0).then_some((batchnorms, batches, before));
    }
    let deployed = deploy(&graph)?;
    let mut plan = state.plan.clone();
    plan.ranges = deployed_ranges(&deployed, &template)?;
    let quantized_accuracy = acc_of(&deployed)?;
    if let Some((batchnorms, batches, before)) = reestimated {
        emit(JobEvent::Qat(QatEvent::BatchNormReestimated {
            batchnorms,
            batches,
            before,
            after: quantized_accuracy,
        }));
    }
    let pre_reestimate_accuracy = reestimated.and_then(|r| r.2);
    let mut out_meta = meta.clone();
    if let Some(s) = &summary {
        out_meta.history = Some(s.history.clone());
    }
    let mut train_meta = meta;
    train_meta.qat = Some(state);
    Ok(QatOutcome {
        model: Model {
            graph: deployed,
            meta: out_meta,
        },
        training: Model {
            graph,
            meta: train_meta,
        },
        plan,
        summary,
        float_accuracy,
        start_accuracy,
        quantized_accuracy,
        best,
        pre_reestimate_accuracy,
        oscillation,
        flip_history,
        error,
        diverged,
    })
}

impl Job {
    /// Runs QAT ([`run_qat`]) on a worker thread; ends with [`JobEvent::QatFinished`] or
    /// [`JobEvent::Failed`].
    pub fn qat(
        spec: QatSpec,
        train: Arc<Dataset>,
        eval: Option<Arc<Dataset>>,
        waker: Waker,
    ) -> std::io::Result<Job> {
        Job::spawn("qatlas-qat", waker, move |out, control| {
            let emit = |e: JobEvent| out.send(e);
            match run_qat(&spec, &train, eval.as_deref(), control, &emit) {
                Ok(o) => out.send(JobEvent::QatFinished(Box::new(o))),
                Err(e) => out.send(JobEvent::Failed(super::JobError::Qat(e))),
            }
        })
    }
}
