//! The studio's state, split the way egui's demo app splits it: [`Settings`] is plain data a
//! session would persist (serde); [`Live`] holds what only exists while the window is open
//! (background jobs and tasks, the loaded model, datasets); [`Command`] is what panels send
//! instead of mutating either, applied once at the end of the frame. Panels draw from a borrowed
//! [`FrameCtx`]. Nothing here draws and nothing here computes tensors: a [`ModelView`] is built
//! on a worker thread and arrives complete.

use super::bench_run::{BenchCommand, BenchState};
pub use super::model_view::{BundleView, ModelOrigin, ModelView, arch_of};
use super::progress::TrainProgress;
use super::qat_run::{QatCommand, QatRun, QatTaskResult};
use super::task::Task;
use super::workspace::{PlanBusy, PlanCommand, Workspace};
use crate::data::Dataset;
use crate::data::{ImageTransform, Normalization};
use crate::io::Model;
use crate::jobs::Job;
use crate::train::{EvalResult, TrainConfig};
use crate::zoo::Arch;
use serde::{Deserialize, Serialize};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

/// Where the session's model and data come from (what a project file would store).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Settings {
    /// The model file last opened, if any.
    pub model_path: Option<PathBuf>,
    /// The dataset folder used for evaluation and training.
    pub data_dir: PathBuf,
    /// Resize and crop for image folders.
    #[serde(default)]
    pub image_transform: ImageTransform,
}

/// A typed request from a panel; the studio applies all of a frame's commands after drawing.
#[derive(Clone, Debug, PartialEq)]
pub enum Command {
    /// Ask the user for a model file to open.
    PickModel,
    OpenModel(PathBuf),
    /// Ask the user for a dataset folder.
    PickDataDir,
    OpenData(PathBuf),
    /// Reload the data folder with this resize and crop (image folders).
    SetImageTransform(ImageTransform),
    /// Evaluate the current model on the test split.
    Evaluate,
    /// Evaluate the open integer bundle on the test split (integer runtime).
    EvaluateBundle,
    /// Train a fresh network of this architecture.
    Train(TrainRequest),
    StopTraining,
    /// Ask the user where to save the current model.
    PickSavePath,
    SaveModel(PathBuf),
    /// Quantization-aware training (the QAT panel).
    Qat(QatCommand),
    /// Learned rounding of the calibrated plan (the Calibration tab).
    AdaRound(super::adaround_control::AdaRoundCommand),
    /// Kernel / end-to-end benchmarks (the Benchmarks panel).
    Bench(BenchCommand),
    /// The quantization workspace (plan edits, sweeps, ranges).
    Plan(PlanCommand),
    /// Give the model on screen this input normalisation (a copy is made on a worker).
    SetNormalization(Normalization),
    /// Write the converted model (the Export tab).
    Export(super::export_control::ExportCommand),
    /// Hide the notice in the status line.
    DismissNotice,
    /// Hide the typed-path field of the top bar.
    ClosePathPrompt,
    /// Open or save a project file (the File menu).
    Project(super::project_control::ProjectCommand),
    /// The answer to the question on screen ([`Live::confirm`]).
    Confirm(ConfirmAnswer),
    /// Show or hide the keyboard-shortcut list.
    ShowShortcuts(bool),
    /// Show or hide the whole text of the notice in the status line.
    ShowNoticeDetails(bool),
    SetTheme(super::prefs::Theme),
    /// Close the window (asks first when work would be lost).
    Quit,
    /// Ctrl+E: export with the Export tab's format to a file chosen in a dialog.
    ExportShortcut,
    /// F5: start the current tab's job.
    StartCurrent,
    /// Esc: stop whatever runs.
    StopRunning,
    /// Show the QAT tab set to fine-tune the current plan (the Search tab's "fine-tune").
    QatOnPlan,
}

/// How the user answered "unsaved work would be lost".
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ConfirmAnswer {
    /// Go on and lose it.
    Proceed,
    /// Save the project, then go on (closing only).
    SaveFirst,
    Cancel,
}

/// What waits for the user's answer.
#[derive(Clone, Debug, PartialEq)]
pub enum Pending {
    /// Closing the window.
    Close,
    /// A command that would replace unsaved work.
    Command(Box<Command>),
}

/// A question on screen: what would be lost if `pending` went ahead.
#[derive(Clone, Debug, PartialEq)]
pub struct Confirm {
    pub lost: Vec<String>,
    pub pending: Pending,
}

/// "Train from scratch" as the user set it up; everything else is [`TrainConfig::default`].
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct TrainRequest {
    pub arch: Arch,
    pub epochs: usize,
    pub lr: f32,
}

impl TrainRequest {
    /// The full training configuration: defaults with this epoch count and peak learning rate.
    pub fn config(&self) -> TrainConfig {
        let mut cfg = TrainConfig {
            epochs: self.epochs,
            ..TrainConfig::default()
        };
        match &mut cfg.optimizer {
            crate::train::OptimizerConfig::AdamW { lr, .. }
            | crate::train::OptimizerConfig::Sgd { lr, .. } => *lr = self.lr,
        }
        cfg
    }
}

/// Something loaded in the background.
#[derive(Clone, Debug)]
pub enum Loadable<T> {
    Loading,
    Ready(T),
    Failed(String),
}

impl<T> Loadable<T> {
    /// The value, if loaded.
    pub fn ready(&self) -> Option<&T> {
        match self {
            Loadable::Ready(v) => Some(v),
            _ => None,
        }
    }
}

/// The dataset folder and its two splits.
#[derive(Clone, Debug)]
pub struct DataState {
    pub dir: PathBuf,
    /// The resize and crop the splits were loaded with.
    pub transform: ImageTransform,
    pub train: Loadable<Arc<Dataset>>,
    pub test: Loadable<Arc<Dataset>>,
}

/// Which split a data task loads.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SplitKind {
    Train,
    Test,
}

/// Why a file dialog was opened.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Pick {
    Model,
    DataDir,
    SavePath,
    QatSavePath,
    AdaRoundSavePath,
    /// Where to export, in this format and opset.
    ExportPath(crate::jobs::ExportFormat, i64),
    ProjectOpen,
    ProjectSave,
}

impl Pick {
    /// What to do with the path the dialog (or the typed-path field) gave.
    pub fn command(self, path: PathBuf) -> Command {
        use super::project_control::ProjectCommand;
        match self {
            Pick::Model => Command::OpenModel(path),
            Pick::DataDir => Command::OpenData(path),
            Pick::SavePath => Command::SaveModel(path),
            Pick::QatSavePath => Command::Qat(super::qat_run::QatCommand::Save(path)),
            Pick::AdaRoundSavePath => {
                Command::AdaRound(super::adaround_control::AdaRoundCommand::Save(path))
            }
            Pick::ExportPath(format, opset) => {
                Command::Export(super::export_control::ExportCommand::Run {
                    format,
                    opset,
                    path,
                })
            }
            Pick::ProjectOpen => Command::Project(ProjectCommand::Open(path)),
            Pick::ProjectSave => Command::Project(ProjectCommand::SaveAs(path)),
        }
    }
}

/// What opening a model file gave.
#[derive(Debug)]
pub enum ModelLoad {
    Ready(ModelView),
    /// An integer bundle (`qatlas convert` or the Export tab's bundle).
    Bundle(Box<BundleView>),
    /// The file does not exist.
    Missing,
    Failed(String),
}

/// The result of a one-shot [`Task`].
#[derive(Debug)]
pub enum Outcome {
    /// A model file was read (`id` is the id it was requested under).
    ModelOpened {
        id: u64,
        path: PathBuf,
        load: ModelLoad,
    },
    /// A model trained in this session, summarised and ready to show.
    TrainedReady(ModelView),
    /// A split of the dataset folder requested under `ticket`.
    Data {
        ticket: u64,
        split: SplitKind,
        result: Result<Arc<Dataset>, String>,
    },
    /// A fresh, untrained network for "Train from scratch".
    FreshModel(Result<Box<Model>, String>),
    /// The bundle at `path` was evaluated on the integer runtime.
    BundleEvaluated {
        path: PathBuf,
        result: Result<(f64, usize), String>,
    },
    /// A file dialog closed (`None`: cancelled) after `seconds`.
    Picked {
        pick: Pick,
        path: Option<PathBuf>,
        seconds: f64,
    },
    /// The model on screen with another normalisation, summarised and ready to show.
    Renormalised(ModelView),
    /// A model was written to `path` (`id`: the model that was saved).
    Saved {
        id: u64,
        path: PathBuf,
        result: Result<(), String>,
    },
    /// A QAT run's inputs were prepared, or its model saved.
    Qat(QatTaskResult),
    /// Learned rounding finished, or its model was saved.
    AdaRound(super::adaround_control::AdaRoundOutcome),
    /// A project file was read or written.
    Project(super::project_control::ProjectTaskResult),
}

/// Where a training run is.
#[derive(Clone, Debug, PartialEq)]
pub enum RunPhase {
    /// Building the fresh network.
    Preparing,
    Running,
    /// Stop was pressed; waiting for the worker.
    Stopping,
    /// Ended after `steps` optimizer steps; `stopped_early` if Stop ended it.
    Finished {
        stopped_early: bool,
        steps: usize,
        seconds: f64,
    },
    Failed(String),
}

/// A training run and what it reported so far.
pub struct TrainRun {
    pub request: TrainRequest,
    pub phase: RunPhase,
    pub progress: TrainProgress,
    pub job: Option<Job>,
    pub started: Instant,
}

impl TrainRun {
    /// Whether the run still holds (or is about to hold) a worker.
    pub fn is_active(&self) -> bool {
        matches!(
            self.phase,
            RunPhase::Preparing | RunPhase::Running | RunPhase::Stopping
        )
    }
}

/// An evaluation running on the worker.
pub struct EvalRun {
    pub job: Job,
    pub model_id: u64,
}

/// How a notice is shown.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Level {
    Info,
    Error,
}

/// A message in the status line, kept until dismissed or replaced.
#[derive(Clone, Debug, PartialEq)]
pub struct Notice {
    pub level: Level,
    pub text: String,
}

/// Everything that only exists while the window is open.
pub struct Live {
    /// The model on screen.
    pub model: Option<ModelView>,
    /// The integer bundle on screen instead of a model, if one was opened.
    pub bundle: Option<BundleView>,
    /// Shown in the model panel when there is no model (e.g. the pretrained file is missing).
    pub no_model_reason: Option<String>,
    /// Id of the model most recently asked for (older results are ignored).
    pub wanted_model: u64,
    next_id: u64,
    pub data: DataState,
    /// Ticket of the data folder most recently asked for.
    pub data_ticket: u64,
    /// Ticket of the data folder whose failure the status line reported.
    pub data_reported: u64,
    pub training: Option<TrainRun>,
    pub evaluation: Option<EvalRun>,
    /// The latest quantization-aware training run (kept after it ends, for its results).
    pub qat: Option<QatRun>,
    /// Learned rounding of the calibrated plan (Calibration tab).
    pub adaround: super::adaround_control::AdaRoundState,
    /// The Benchmarks tab: CPU features, the running benchmark and the latest results.
    pub bench: BenchState,
    /// The latest evaluation: (model id, result).
    pub last_eval: Option<(u64, EvalResult)>,
    pub notice: Option<Notice>,
    pub tasks: Vec<Task<Outcome>>,
    /// A file dialog could not be shown: the top bar asks for a typed path instead.
    pub path_prompt: Option<Pick>,
    /// The Export tab's running export and latest result.
    pub export: super::export_control::ExportRun,
    /// The session's project file and what it holds beyond the workspace.
    pub project: super::project_control::ProjectState,
    /// A question waiting for the user (unsaved work would be lost).
    pub confirm: Option<Confirm>,
    pub show_shortcuts: bool,
    pub show_notice_details: bool,
}

impl Live {
    /// Nothing loaded yet; data from `data_dir` is about to be requested.
    pub fn new(data_dir: PathBuf) -> Live {
        Live {
            model: None,
            bundle: None,
            no_model_reason: None,
            wanted_model: 0,
            next_id: 1,
            data: DataState {
                dir: data_dir,
                transform: ImageTransform::none(),
                train: Loadable::Loading,
                test: Loadable::Loading,
            },
            data_ticket: 0,
            data_reported: 0,
            training: None,
            evaluation: None,
            qat: None,
            adaround: Default::default(),
            bench: BenchState::default(),
            last_eval: None,
            notice: None,
            tasks: Vec::new(),
            path_prompt: None,
            export: Default::default(),
            project: Default::default(),
            confirm: None,
            show_shortcuts: false,
            show_notice_details: false,
        }
    }

    /// A fresh model id.
    pub fn next_model_id(&mut self) -> u64 {
        let id = self.next_id;
        self.next_id += 1;
        id
    }

    /// Shows an error in the status line.
    pub fn error(&mut self, text: impl Into<String>) {
        self.notice = Some(Notice {
            level: Level::Error,
            text: text.into(),
        });
    }

    /// Shows information in the status line.
    pub fn info(&mut self, text: impl Into<String>) {
        self.notice = Some(Notice {
            level: Level::Info,
            text: text.into(),
        });
    }

    /// Whether a training run is under way.
    pub fn is_training(&self) -> bool {
        self.training.as_ref().is_some_and(TrainRun::is_active)
    }

    /// Whether anything runs in the background (the UI then repaints to animate progress).
    pub fn is_busy(&self) -> bool {
        !self.tasks.is_empty()
            || self.is_training()
            || self.evaluation.is_some()
            || self
                .qat
                .as_ref()
                .is_some_and(|r| r.is_active() && !r.paused)
            || self.bench.running.is_some()
            || self.export.job.is_some()
    }

    /// What runs in the background, for the status line.
    pub fn busy_labels(&self) -> Vec<String> {
        let mut out: Vec<String> = self.tasks.iter().map(|t| t.label().to_string()).collect();
        // A run being prepared is covered by the label of the task building its network.
        if let Some(run) = &self.training {
            match run.phase {
                RunPhase::Running => out.push(format!(
                    "Training {} ({:.0} %)…",
                    run.request.arch.name(),
                    run.progress.fraction() * 100.0
                )),
                RunPhase::Stopping => out.push("Stopping training…".to_string()),
                _ => {}
            }
        }
        if self.evaluation.is_some() {
            out.push("Evaluating on the test set…".to_string());
        }
        out.extend(self.qat.as_ref().and_then(QatRun::busy_label));
        out.extend(self.bench.busy_label());
        out
    }

    /// The evaluation result of the model on screen, if it has one.
    pub fn current_eval(&self) -> Option<&EvalResult> {
        let (id, r) = self.last_eval.as_ref()?;
        (self.model.as_ref()?.id == *id).then_some(r)
    }

    /// Why "Evaluate on test set" cannot run now (`Ok` when it can).
    pub fn evaluate_blocker(&self) -> Result<(), String> {
        let view = self.model.as_ref().ok_or("no model is loaded")?;
        if self.evaluation.is_some() {
            return Err("an evaluation is already running".into());
        }
        let test = match &self.data.test {
            Loadable::Ready(d) => d,
            Loadable::Loading => return Err("the test set is still loading".into()),
            Loadable::Failed(e) => return Err(format!("no test set: {e}")),
        };
        check_fit(&view.model, test)
    }

    /// Why "Train from scratch" cannot run now (`Ok` when it can).
    pub fn train_blocker(&self) -> Result<(), String> {
        if self.is_training() {
            return Err("a training run is already under way".into());
        }
        if self.qat.as_ref().is_some_and(QatRun::is_active) {
            return Err("a QAT run is under way; wait for it to finish".into());
        }
        match &self.data.train {
            Loadable::Ready(_) => Ok(()),
            Loadable::Loading => Err("the training set is still loading".into()),
            Loadable::Failed(e) => Err(format!("no training set: {e}")),
        }
    }

    /// Why "Save as…" cannot run now (`Ok` when it can).
    pub fn save_blocker(&self) -> Result<(), String> {
        self.model
            .as_ref()
            .map(|_| ())
            .ok_or_else(|| "no model is loaded".to_string())
    }
}

/// Checks that `model` can read `data`: same image shape, normalisation valid for its channels,
/// enough outputs for its labels. Cheap metadata checks only.
pub fn check_fit(model: &Model, data: &Dataset) -> Result<(), String> {
    let shape = data.image_shape();
    if model.graph.input_shape[..] != shape[..] {
        return Err(format!(
            "the model expects {} images, the dataset has {}",
            super::format::shape(&model.graph.input_shape),
            super::format::shape(&shape)
        ));
    }
    model
        .meta
        .normalization
        .validate(data.c)
        .map_err(|e| format!("the model's normalisation does not fit the data: {e}"))?;
    let classes = model.meta.class_names.len();
    if classes > 0 && classes < data.num_classes {
        return Err(format!(
            "the model knows {classes} classes, the dataset has {}",
            data.num_classes
        ));
    }
    Ok(())
}

/// Per-frame context handed to panels: read-only state plus a command outbox.
pub struct FrameCtx<'a> {
    pub live: &'a Live,
    pub settings: &'a Settings,
    /// The quantization workspace (plan and its analysis results).
    pub ws: &'a Workspace,
    /// The 99th percentile of recent frame times, for the status bar.
    pub frame_p99_ms: Option<f64>,
    /// Which of the workspace's jobs run.
    pub plan_busy: PlanBusy,
    /// The frame's time (for ETAs).
    pub now: Instant,
    /// Recent files and the theme (`None` in tests that draw one panel).
    pub prefs: Option<&'a super::prefs::UiPrefs>,
    /// Why Save project cannot run now (`Ok` when it can).
    pub project_save: Result<(), String>,
    /// Whether the project has unsaved changes.
    pub project_dirty: bool,
    commands: &'a mut Vec<Command>,
}

impl<'a> FrameCtx<'a> {
    pub fn new(
        live: &'a Live,
        settings: &'a Settings,
        ws: &'a Workspace,
        commands: &'a mut Vec<Command>,
    ) -> Self {
        FrameCtx {
            live,
            settings,
            ws,
            frame_p99_ms: None,
            plan_busy: PlanBusy::default(),
            now: Instant::now(),
            prefs: None,
            project_save: Ok(()),
            project_dirty: false,
            commands,
        }
    }

    /// Queues a command for the end of the frame.
    pub fn send(&mut self, c: Command) {
        self.commands.push(c);
    }
}

#[cfg(test)]
mod tests;
