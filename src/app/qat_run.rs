//! Quantization-aware training in the studio, as data: the request the QAT panel sends
//! ([`QatRequest`], turned into the same [`QatSpec`] `qatlas qat` builds), the run it starts
//! ([`QatRun`]) and the reduction of the job's events into what the panel shows: the live loss
//! curve (through [`TrainProgress`]), the float and PTQ-start accuracies, a per-quantizer scale
//! summary, the weights' integer flip rates, freeze, checkpoint and BatchNorm notices and the
//! finished result. No egui and no tensors here:
//! scale summaries are a few dozen numbers folded when an event is applied, never per frame.

use super::progress::TrainProgress;
use crate::data::Dataset;
use crate::io::Model;
use crate::jobs::{Job, JobEvent, QatEvent, QatOutcome, QatSpec};
use crate::quant::oscillation::{LayerFlips, overall_flip_rate};
use crate::quant::qat::PointScale;
use std::collections::VecDeque;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

pub use crate::jobs::qat_request::{BATCH, CALIB_SAMPLES, QatPrecision, QatRequest, is_fake_quant};

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
    /// Freeze, checkpoint and BatchNorm re-estimation notices, in order.
    pub notes: Vec<QatEvent>,
    /// (step, % of all weights that changed integer value per step) over the run.
    pub flips: Vec<[f64; 2]>,
    /// The latest per-layer flip rates.
    pub flip_layers: Vec<LayerFlips>,
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
            flips: Vec::new(),
            flip_layers: Vec::new(),
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
            JobEvent::Qat(QatEvent::Oscillation { step, layers }) => {
                self.flips
                    .push([step as f64, overall_flip_rate(&layers) * 100.0]);
                self.flip_layers = layers;
            }
            JobEvent::Qat(
                note @ (QatEvent::Frozen { .. }
                | QatEvent::Checkpoint { .. }
                | QatEvent::BatchNormReestimated { .. }),
            ) => self.notes.push(note),
            JobEvent::QatFinished(outcome) => self.finish(*outcome, at),
            JobEvent::Failed(e) => {
                self.job = None;
                self.phase = QatPhase::Failed(e.to_string());
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
    format!(
        "{}_qat_{}.safetensors",
        super::file_names::safe_stem(model_name),
        precision.name()
    )
}

#[cfg(test)]
mod tests;
