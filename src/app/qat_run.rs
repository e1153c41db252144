//! Quantization-aware training in the studio, as data: the request the QAT panel sends
//! ([`QatRequest`], turned into the same [`QatSpec`] `qatlas qat` builds), the run it starts
//! ([`QatRun`]) and the reduction of the job's events into what the panel shows: the live loss
//! curve (through [`TrainProgress`]), the float and PTQ-start accuracies, a per-quantizer scale
//! summary, freeze and checkpoint notices and the finished result. No egui and no tensors here:
//! scale summaries are a few dozen numbers folded when an event is applied, never per frame.

use super::progress::TrainProgress;
use crate::data::Dataset;
use crate::graph::Graph;
use crate::io::Model;
use crate::jobs::{Job, JobEvent, QatEvent, QatOutcome, QatSpec};
use crate::ops::OpKind;
use crate::quant::qat::PointScale;
use crate::quant::{Precision, QatOptions, QuantPlan};
use crate::train::{OptimizerConfig, Schedule, TrainConfig};
use serde::{Deserialize, Serialize};
use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

/// Training images whose activations set the PTQ starting ranges (as `qatlas qat`).
pub const CALIB_SAMPLES: usize = 1000;

/// Batch size of a studio QAT run (as `qatlas qat`).
pub const BATCH: usize = 64;

/// What every quantizable layer is quantized to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum QatPrecision {
    /// int8 weights and activations.
    Int8,
    /// int4 weights, int8 activations.
    W4A8,
    /// int4 weights and activations.
    W4A4,
    /// The studio's current plan (layers table, Calibration) with its calibrated ranges.
    Plan,
}

impl QatPrecision {
    pub const ALL: [QatPrecision; 4] = [
        QatPrecision::Plan,
        QatPrecision::Int8,
        QatPrecision::W4A8,
        QatPrecision::W4A4,
    ];

    /// Short name, also used in file names.
    pub fn name(self) -> &'static str {
        match self {
            QatPrecision::Int8 => "int8",
            QatPrecision::W4A8 => "w4a8",
            QatPrecision::W4A4 => "w4a4",
            QatPrecision::Plan => "plan",
        }
    }

    /// What the choice means, for the form.
    pub fn label(self) -> &'static str {
        match self {
            QatPrecision::Int8 => "int8 (W8A8)",
            QatPrecision::W4A8 => "W4A8: int4 weights, int8 activations",
            QatPrecision::W4A4 => "W4A4: int4 weights and activations",
            QatPrecision::Plan => "the current plan, from its calibrated ranges",
        }
    }

    /// The plan `qatlas qat --precision .. [--activations int4]` would use for `g`.
    pub fn plan(self, g: &Graph) -> QuantPlan {
        let weights = match self {
            QatPrecision::Int8 | QatPrecision::Plan => Precision::Int8,
            QatPrecision::W4A8 | QatPrecision::W4A4 => Precision::Int4,
        };
        let mut plan = QuantPlan::default_for(g, weights);
        if self == QatPrecision::W4A4 {
            for l in &mut plan.layers {
                l.activations = Precision::Int4;
            }
        }
        plan
    }

    /// The `qatlas qat` flags for this choice.
    fn flags(self) -> &'static str {
        match self {
            QatPrecision::Int8 => "--precision int8",
            QatPrecision::W4A8 => "--precision int4",
            QatPrecision::W4A4 => "--precision int4 --activations int4",
            QatPrecision::Plan => "--plan plan.ron",
        }
    }
}

/// "Start QAT" as the user set it up.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct QatRequest {
    pub precision: QatPrecision,
    pub epochs: usize,
    /// Peak learning rate (AdamW, cosine decay to 0).
    pub lr: f32,
    /// Learnable scales (LSQ) instead of moving-average observers.
    pub lsq: bool,
    pub freeze_bn_after: Option<usize>,
    pub freeze_observers_after: Option<usize>,
    /// Train on the first N training images only.
    pub limit: Option<usize>,
}

impl QatRequest {
    /// The training configuration of `qatlas qat` with this epoch count and learning rate.
    pub fn train_config(&self) -> TrainConfig {
        TrainConfig {
            epochs: self.epochs,
            batch_size: BATCH,
            optimizer: OptimizerConfig::AdamW {
                lr: self.lr,
                beta1: 0.9,
                beta2: 0.999,
                eps: 1e-8,
                weight_decay: 0.0,
            },
            schedule: Schedule::Cosine {
                warmup_steps: 0,
                min_factor: 0.0,
            },
            seed: 0,
        }
    }

    /// The job's specification for the float `model` (clones it: call on a worker thread).
    /// `plan` is the studio's calibrated plan, used when the precision is
    /// [`QatPrecision::Plan`].
    pub fn spec(
        &self,
        model: &Model,
        command: String,
        checkpoint: Option<PathBuf>,
        plan: Option<QuantPlan>,
    ) -> QatSpec {
        let mut model = model.clone();
        model.meta.command = Some(command);
        QatSpec {
            plan: match (self.precision, plan) {
                (QatPrecision::Plan, Some(p)) => p,
                (p, _) => p.plan(&model.graph),
            },
            model,
            opts: QatOptions {
                lsq: self.lsq,
                ..QatOptions::default()
            },
            train: self.train_config(),
            calib_samples: CALIB_SAMPLES,
            freeze_bn_after: self.freeze_bn_after,
            freeze_observers_after: self.freeze_observers_after,
            checkpoint,
        }
    }

    /// The `qatlas qat` command line that reproduces the run (recorded in the model).
    pub fn cli_equivalent(&self, model: Option<&Path>, data_dir: &Path) -> String {
        let mut s = String::from("qatlas qat");
        if let Some(m) = model {
            s += &format!(" --model {}", m.display());
        }
        s += &format!(
            " --data {} {} --epochs {} --lr {}",
            data_dir.display(),
            self.precision.flags(),
            self.epochs,
            self.lr
        );
        if self.lsq {
            s += " --lsq";
        }
        if let Some(e) = self.freeze_bn_after {
            s += &format!(" --freeze-bn-after {e}");
        }
        if let Some(e) = self.freeze_observers_after {
            s += &format!(" --freeze-observers-after {e}");
        }
        if let Some(n) = self.limit {
            s += &format!(" --limit {n}");
        }
        s + " (run in the studio)"
    }
}

/// Whether `model` already holds fake quantizers (a quantized model or a QAT checkpoint).
pub fn is_fake_quant(model: &Model) -> bool {
    model.meta.qat.is_some()
        || model
            .graph
            .nodes
            .iter()
            .any(|n| matches!(n.op, OpKind::FakeQuant(_)))
}

/// A QAT panel request: sent as [`super::state::Command::Qat`].
#[derive(Clone, Debug, PartialEq)]
pub enum QatCommand {
    Start(QatRequest),
    Pause,
    Resume,
    /// Stop after the current step; the run still ends with a deployable model.
    Stop,
    /// Ask the user where to save the quantized model.
    PickSavePath,
    Save(PathBuf),
}

/// What a QAT one-shot task gave: sent back as [`super::state::Outcome::Qat`].
#[derive(Debug)]
pub enum QatTaskResult {
    /// The job's inputs, built off the UI thread (`run`: the run they belong to).
    Prepared {
        run: u64,
        result: Result<Box<QatInputs>, String>,
    },
    /// The quantized model was written.
    Saved {
        path: PathBuf,
        result: Result<(), String>,
    },
}

/// Everything a QAT job needs, ready to hand over.
#[derive(Debug)]
pub struct QatInputs {
    pub spec: QatSpec,
    /// The training images (limited to the first N if asked).
    pub train: Arc<Dataset>,
    /// The test set, when it fits the model (no accuracies are measured otherwise).
    pub test: Option<Arc<Dataset>>,
}

/// Where a QAT run is.
#[derive(Clone, Debug, PartialEq)]
pub enum QatPhase {
    /// Copying the model and building the plan.
    Preparing,
    Running,
    /// Stop was pressed; waiting for the worker to deploy what it has.
    Stopping,
    Finished {
        stopped_early: bool,
        seconds: f64,
    },
    Failed(String),
}

/// The starting point the job reported.
#[derive(Clone, Debug, PartialEq)]
pub struct QatStart {
    pub calib_images: usize,
    pub quantizers: usize,
    pub float_accuracy: Option<f64>,
    pub start_accuracy: Option<f64>,
}

/// One quantizer's current scale (and zero point), summarised over its channels.
#[derive(Clone, Debug, PartialEq)]
pub struct ScaleRow {
    pub point: String,
    /// 1 for a per-tensor quantizer.
    pub channels: usize,
    pub min: f32,
    pub mean: f32,
    pub max: f32,
    /// Smallest and largest zero point.
    pub zero_point: (f32, f32),
    /// Relative change of the mean scale since the first report (0.01 = +1 %).
    pub change: Option<f64>,
}

impl ScaleRow {
    /// Summarises one report; `first_mean` is this quantizer's mean scale when first reported.
    pub fn new(p: &PointScale, first_mean: Option<f64>) -> ScaleRow {
        let n = p.scale.len();
        let fold = |v: &[f32], f: fn(f32, f32) -> f32, init: f32| v.iter().copied().fold(init, f);
        let mean = if n == 0 {
            f64::NAN
        } else {
            p.scale.iter().map(|&s| s as f64).sum::<f64>() / n as f64
        };
        ScaleRow {
            point: p.point.clone(),
            channels: n,
            min: fold(&p.scale, f32::min, f32::INFINITY),
            mean: mean as f32,
            max: fold(&p.scale, f32::max, f32::NEG_INFINITY),
            zero_point: (
                fold(&p.zero_point, f32::min, f32::INFINITY),
                fold(&p.zero_point, f32::max, f32::NEG_INFINITY),
            ),
            change: first_mean
                .filter(|&m| m > 0.0 && mean.is_finite())
                .map(|m| mean / m - 1.0),
        }
    }
}

/// What a finished run left: the deployable model and the three accuracies.
#[derive(Clone, Debug)]
pub struct QatResult {
    /// The deployable fake-quant model (BatchNorm folded, quantizers frozen).
    pub model: Arc<Model>,
    pub float_accuracy: Option<f64>,
    pub start_accuracy: Option<f64>,
    /// Accuracy of the deployable model on the test set.
    pub quantized_accuracy: Option<f64>,
    /// Best epoch (1-based) and its fake-quant test accuracy.
    pub best: Option<(usize, f64)>,
    pub steps: usize,
    /// Why the run ended early, if it failed (the model then holds the last good weights).
    pub error: Option<String>,
}

/// A QAT run and what it reported so far.
pub struct QatRun {
    /// Distinguishes runs (a late preparation result of an older run is ignored).
    pub id: u64,
    pub request: QatRequest,
    /// The float model it started from (name, for the header).
    pub model_name: String,
    pub phase: QatPhase,
    pub progress: TrainProgress,
    pub start: Option<QatStart>,
    /// Current scales, in graph order, and the step they were reported at.
    pub scales: Vec<ScaleRow>,
    pub scales_step: usize,
    /// Mean scale of each quantizer when first reported.
    first_means: Vec<(String, f64)>,
    /// Freeze and checkpoint notices, in order.
    pub notes: Vec<QatEvent>,
    pub result: Option<QatResult>,
    pub job: Option<Job>,
    pub paused: bool,
    pub started: Instant,
    /// Where the best checkpoint goes.
    pub checkpoint: Option<PathBuf>,
    /// Where the quantized model was last saved.
    pub saved_to: Option<PathBuf>,
    /// Events drained from the job but not yet applied (over the frame budget).
    pub(super) backlog: VecDeque<JobEvent>,
}

impl QatRun {
    /// A run being prepared.
    pub fn new(id: u64, request: QatRequest, model_name: String, at: Instant) -> QatRun {
        QatRun {
            id,
            request,
            model_name,
            phase: QatPhase::Preparing,
            progress: TrainProgress::default(),
            start: None,
            scales: Vec::new(),
            scales_step: 0,
            first_means: Vec::new(),
            notes: Vec::new(),
            result: None,
            job: None,
            paused: false,
            started: at,
            checkpoint: None,
            saved_to: None,
            backlog: VecDeque::new(),
        }
    }

    /// Whether the run still holds (or is about to hold) a worker.
    pub fn is_active(&self) -> bool {
        matches!(
            self.phase,
            QatPhase::Preparing | QatPhase::Running | QatPhase::Stopping
        )
    }

    /// The model to save, once the run ended without an error.
    pub fn saveable(&self) -> Option<&Arc<Model>> {
        self.result
            .as_ref()
            .filter(|r| r.error.is_none())
            .map(|r| &r.model)
    }

    /// Folds one job event, received at `at`, into the run.
    pub fn apply(&mut self, e: JobEvent, at: Instant) {
        match e {
            JobEvent::Train(te) => self.progress.apply(&te, at),
            JobEvent::Qat(QatEvent::Started {
                calib_images,
                quantizers,
                float_accuracy,
                start_accuracy,
                ..
            }) => {
                self.start = Some(QatStart {
                    calib_images,
                    quantizers,
                    float_accuracy,
                    start_accuracy,
                })
            }
            JobEvent::Qat(QatEvent::Scales { step, scales }) => self.set_scales(step, &scales),
            JobEvent::Qat(note @ (QatEvent::Frozen { .. } | QatEvent::Checkpoint { .. })) => {
                self.notes.push(note)
            }
            JobEvent::QatFinished(outcome) => self.finish(*outcome, at),
            JobEvent::Failed(msg) => {
                self.job = None;
                self.phase = QatPhase::Failed(msg);
            }
            _ => {}
        }
    }

    fn set_scales(&mut self, step: usize, scales: &[PointScale]) {
        self.scales_step = step;
        self.scales = scales
            .iter()
            .map(|p| {
                let first = self
                    .first_means
                    .iter()
                    .find(|(name, _)| *name == p.point)
                    .map(|&(_, m)| m);
                let row = ScaleRow::new(p, first);
                if first.is_none() && row.mean.is_finite() {
                    self.first_means.push((p.point.clone(), row.mean as f64));
                }
                row
            })
            .collect();
    }

    fn finish(&mut self, o: QatOutcome, at: Instant) {
        self.job = None;
        let seconds = o
            .summary
            .as_ref()
            .map_or_else(|| (at - self.started).as_secs_f64(), |s| s.seconds);
        let stopped_early = o.summary.as_ref().is_some_and(|s| s.stopped);
        self.phase = match &o.error {
            Some(e) => QatPhase::Failed(e.clone()),
            None => QatPhase::Finished {
                stopped_early,
                seconds,
            },
        };
        self.result = Some(QatResult {
            model: Arc::new(o.model),
            float_accuracy: o.float_accuracy,
            start_accuracy: o.start_accuracy,
            quantized_accuracy: o.quantized_accuracy,
            best: o.best,
            steps: o.summary.as_ref().map_or(self.progress.step, |s| s.steps),
            error: o.error,
        });
    }

    /// What the status line says while the run is under way.
    pub fn busy_label(&self) -> Option<String> {
        match self.phase {
            QatPhase::Running if self.paused => Some("QAT paused".to_string()),
            QatPhase::Running if self.start.is_none() => {
                Some("QAT: calibrating the PTQ start…".to_string())
            }
            QatPhase::Running => Some(format!(
                "Quantization-aware training ({:.0} %)…",
                self.progress.fraction() * 100.0
            )),
            QatPhase::Stopping => Some("Stopping QAT…".to_string()),
            _ => None,
        }
    }
}

/// `dir/<model>_qat_<precision>.safetensors`: the file name suggested when saving.
pub fn default_file_name(model_name: &str, precision: QatPrecision) -> String {
    let base: String = model_name
        .chars()
        .map(|c| {
            if c.is_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect();
    format!("{base}_qat_{}.safetensors", precision.name())
}

#[cfg(test)]
mod tests;
