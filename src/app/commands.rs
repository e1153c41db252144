//! Applying [`Command`]s: each starts background work (a one-shot [`Task`] or a
//! [`crate::jobs::Job`]) and records in [`super::state::Live`] what it is waiting for; the
//! results come back through [`StudioApp::pump`]. Also the closures those workers run (read a
//! dataset split, build a fresh network); file-name helpers are in `file_names.rs`. Nothing
//! here blocks the UI thread.

use super::file_names::default_file_name;
pub use super::file_names::{cli_equivalent, with_model_extension};
use super::state::{
    BundleView, Command, DataState, EvalRun, Loadable, ModelLoad, ModelOrigin, ModelView, Outcome,
    Pick, RunPhase, SplitKind, TrainRequest, TrainRun,
};
use super::studio::StudioApp;
use super::task::{Task, block_on};
use crate::data::{Dataset, ImageTransform, Normalization, Split, load_split_with};
use crate::io::{Model, ModelMeta, load_any, save_model};
use crate::jobs::Job;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::Arc;
use std::time::Instant;

impl StudioApp {
    /// Applies one command. `frame` parents file dialogs when given.
    pub fn apply(&mut self, cmd: Command, frame: Option<&eframe::Frame>) {
        if let Some(lost) = self.would_lose(&cmd) {
            self.live.confirm = Some(super::state::Confirm {
                lost,
                pending: super::state::Pending::Command(Box::new(cmd)),
            });
            return;
        }
        // An old error does not stay on screen while the user goes on.
        if starts_work(&cmd)
            && self
                .live
                .notice
                .as_ref()
                .is_some_and(|n| n.level == super::state::Level::Error)
        {
            self.live.notice = None;
            self.live.show_notice_details = false;
        }
        match cmd {
            Command::PickModel => self.dialog(Pick::Model, frame),
            Command::OpenModel(path) => self.open_model(path),
            Command::PickDataDir => self.dialog(Pick::DataDir, frame),
            Command::OpenData(dir) => self.open_data(dir),
            Command::SetImageTransform(t) => {
                self.state.settings.image_transform = t;
                self.open_data(self.live.data.dir.clone());
            }
            Command::Evaluate => self.evaluate(),
            Command::EvaluateBundle => self.evaluate_bundle(),
            Command::Train(req) => {
                self.state.central = super::studio::CentralTab::Curves;
                self.train(req)
            }
            Command::StopTraining => {
                if let Some(run) = self.live.training.as_mut().filter(|r| r.is_active()) {
                    if let Some(job) = &run.job {
                        job.stop();
                    }
                    run.phase = RunPhase::Stopping;
                }
            }
            Command::PickSavePath => self.dialog(Pick::SavePath, frame),
            Command::SaveModel(path) => self.save(path),
            Command::Qat(c) => self.apply_qat(c, frame),
            Command::AdaRound(c) => self.apply_adaround(c, frame),
            Command::Bench(c) => self.apply_bench(c),
            Command::DismissNotice => self.live.notice = None,
            Command::ClosePathPrompt => self.live.path_prompt = None,
            Command::Plan(c) => match self.ws.apply(c) {
                Ok(effects) => self.run_effects(effects),
                Err(why) => self.live.error(why),
            },
            Command::SetNormalization(n) => self.renormalise(n),
            Command::Export(c) => self.apply_export(c, frame),
            Command::Project(c) => self.apply_project(c, frame),
            Command::Confirm(a) => self.answer(a, frame),
            Command::ShowShortcuts(on) => self.live.show_shortcuts = on,
            Command::ShowNoticeDetails(on) => self.live.show_notice_details = on,
            Command::SetTheme(t) => self.prefs.theme = t,
            Command::QatOnPlan => {
                self.state.qat.precision = crate::jobs::qat_request::QatPrecision::Plan;
                self.state.central = super::studio::CentralTab::Qat;
            }
            Command::Quit => {
                let lost = self.unsaved_work();
                if lost.is_empty() {
                    self.close_now = true;
                } else {
                    self.live.confirm = Some(super::state::Confirm {
                        lost,
                        pending: super::state::Pending::Close,
                    });
                }
            }
            Command::ExportShortcut => self.export_shortcut(frame),
            Command::StartCurrent => self.start_current(),
            Command::StopRunning => self.stop_running(),
        }
    }

    /// What `cmd` would replace that is not saved, if anything (then it asks first).
    fn would_lose(&self, cmd: &Command) -> Option<Vec<String>> {
        if self.confirmed {
            return None;
        }
        let qat_unsaved = self
            .live
            .qat
            .as_ref()
            .is_some_and(|r| r.saveable().is_some() && r.saved_to.is_none());
        let trained_unsaved = self
            .live
            .model
            .as_ref()
            .is_some_and(|v| matches!(v.origin, ModelOrigin::Trained { .. }));
        let lost = match cmd {
            Command::Qat(super::qat_run::QatCommand::Start(_)) if qat_unsaved => {
                vec!["the quantized model of the last QAT run (not saved)".to_string()]
            }
            Command::Train(_) if trained_unsaved => {
                vec!["the model trained in this session (not saved)".to_string()]
            }
            Command::OpenModel(_) => self
                .unsaved_work()
                .into_iter()
                .filter(|w| w.contains("not saved"))
                .collect(),
            Command::Project(super::project_control::ProjectCommand::Open(_)) => {
                self.unsaved_work()
            }
            _ => Vec::new(),
        };
        (!lost.is_empty()).then_some(lost)
    }

    /// The user answered the question on screen.
    fn answer(&mut self, a: super::state::ConfirmAnswer, frame: Option<&eframe::Frame>) {
        use super::state::{ConfirmAnswer, Pending};
        let Some(c) = self.live.confirm.take() else {
            return;
        };
        match (a, c.pending) {
            (ConfirmAnswer::Cancel, _) => {}
            (ConfirmAnswer::Proceed, Pending::Close) => self.close_now = true,
            (ConfirmAnswer::SaveFirst, Pending::Close) => {
                self.live.project.close_after_save = true;
                self.apply(
                    Command::Project(super::project_control::ProjectCommand::Save),
                    frame,
                );
            }
            (_, Pending::Command(cmd)) => {
                self.confirmed = true;
                self.apply(*cmd, frame);
                self.confirmed = false;
            }
        }
    }

    pub(super) fn spawn(&mut self, label: String, work: impl FnOnce() -> Outcome + Send + 'static) {
        match Task::spawn(label, self.waker.clone(), work) {
            Ok(t) => self.live.tasks.push(t),
            Err(e) => self
                .live
                .error(format!("cannot start a worker thread: {e}")),
        }
    }

    pub(super) fn open_model(&mut self, path: PathBuf) {
        let id = self.live.next_model_id();
        self.live.wanted_model = id;
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| path.display().to_string());
        self.spawn(format!("Opening {name}"), move || {
            let load = if !path.exists() {
                ModelLoad::Missing
            } else if crate::runtime::is_bundle(&path) {
                match crate::runtime::IntModel::load(&path) {
                    Ok(m) => ModelLoad::Bundle(Box::new(BundleView {
                        file_bytes: std::fs::metadata(&path).map_or(0, |m| m.len()),
                        layers: m.layers(),
                        model: Arc::new(m),
                        path: path.clone(),
                        eval: None,
                    })),
                    Err(e) => ModelLoad::Failed(e.to_string()),
                }
            } else {
                match load_any(&path) {
                    Ok(m) => ModelLoad::Ready(ModelView::prepare(
                        id,
                        Arc::new(m),
                        ModelOrigin::File(path.clone()),
                    )),
                    Err(e) => ModelLoad::Failed(e.to_string()),
                }
            };
            Outcome::ModelOpened { id, path, load }
        });
    }

    pub(super) fn open_data(&mut self, dir: PathBuf) {
        self.live.data_ticket += 1;
        let ticket = self.live.data_ticket;
        let transform = self.state.settings.image_transform;
        self.live.data = DataState {
            dir: dir.clone(),
            transform,
            train: Loadable::Loading,
            test: Loadable::Loading,
        };
        self.state.settings.data_dir = dir.clone();
        for split in [SplitKind::Test, SplitKind::Train] {
            let dir = dir.clone();
            let what = match split {
                SplitKind::Train => "training",
                SplitKind::Test => "test",
            };
            self.spawn(format!("Loading the {what} set"), move || Outcome::Data {
                ticket,
                split,
                result: load_data(&dir, split, &transform),
            });
        }
    }

    /// Measures the open bundle on the test split with the integer runtime (on a worker).
    pub(super) fn evaluate_bundle(&mut self) {
        let Some(b) = &self.live.bundle else {
            self.live
                .error("cannot evaluate: no integer bundle is open");
            return;
        };
        let test = match &self.live.data.test {
            Loadable::Ready(d) => d.clone(),
            Loadable::Loading => {
                self.live
                    .error("cannot evaluate the bundle: the test set is still loading");
                return;
            }
            Loadable::Failed(e) => {
                self.live
                    .error(format!("cannot evaluate the bundle: no test set: {e}"));
                return;
            }
        };
        let (model, path) = (b.model.clone(), b.path.clone());
        let norm = model.spec().normalization.clone();
        self.spawn("Evaluating the bundle".to_string(), move || {
            let result = crate::runtime::evaluate(&model, &test, &norm, 250)
                .map(|r| (r.accuracy, r.images))
                .map_err(|e| e.to_string());
            Outcome::BundleEvaluated { path, result }
        });
    }

    fn evaluate(&mut self) {
        if let Err(reason) = self.live.evaluate_blocker() {
            self.live.error(format!("cannot evaluate: {reason}"));
            return;
        }
        let (Some(view), Some(test)) = (&self.live.model, self.live.data.test.ready()) else {
            return;
        };
        let norm = view.model.meta.normalization.clone();
        match Job::evaluate(view.model.clone(), test.clone(), norm, self.waker.clone()) {
            Ok(job) => {
                self.live.evaluation = Some(EvalRun {
                    job,
                    model_id: view.id,
                })
            }
            Err(e) => self
                .live
                .error(format!("cannot start the evaluation thread: {e}")),
        }
    }

    fn train(&mut self, req: TrainRequest) {
        if let Err(reason) = self.live.train_blocker() {
            self.live.error(format!("cannot train: {reason}"));
            return;
        }
        let Some(train) = self.live.data.train.ready().cloned() else {
            return;
        };
        // Keep the current model's normalisation when it fits the data; else MNIST's for
        // grayscale data and none for colour.
        let norm = self
            .live
            .model
            .as_ref()
            .map(|v| v.model.meta.normalization.clone())
            .filter(|n| n.validate(train.c).is_ok())
            .unwrap_or_else(|| {
                if train.c == 1 {
                    Normalization::mnist()
                } else {
                    Normalization::identity()
                }
            });
        let command = cli_equivalent(&req, &self.live.data.dir, &norm);
        self.live.training = Some(TrainRun {
            request: req,
            phase: RunPhase::Preparing,
            progress: Default::default(),
            job: None,
            started: Instant::now(),
        });
        self.spawn(format!("Building a fresh {}", req.arch.name()), move || {
            Outcome::FreshModel(fresh_model(&req, &train, norm, command).map(Box::new))
        });
    }

    /// The model on screen with normalisation `n` (copied and summarised on a worker).
    fn renormalise(&mut self, n: Normalization) {
        let Some(view) = &self.live.model else {
            self.live
                .error("cannot set the normalisation: no model is loaded");
            return;
        };
        let channels = view.model.graph.input_shape[0];
        if let Err(e) = n.validate(channels) {
            self.live
                .error(format!("cannot use this normalisation: {e}"));
            return;
        }
        let (model, origin) = (view.model.clone(), view.origin.clone());
        let id = self.live.next_model_id();
        self.live.wanted_model = id;
        self.spawn("Applying the normalisation".to_string(), move || {
            let mut m = (*model).clone();
            m.meta.normalization = n;
            Outcome::Renormalised(ModelView::prepare(id, Arc::new(m), origin))
        });
    }

    fn save(&mut self, path: PathBuf) {
        let Some(view) = &self.live.model else {
            self.live.error("cannot save: no model is loaded");
            return;
        };
        let path = with_model_extension(path);
        let (id, model) = (view.id, view.model.clone());
        self.spawn(format!("Saving to {}", path.display()), move || {
            let result = save_model(&model, &path).map_err(|e| e.to_string());
            Outcome::Saved { id, path, result }
        });
    }

    pub(super) fn dialog(&mut self, pick: Pick, frame: Option<&eframe::Frame>) {
        if self.dialog_open {
            return;
        }
        let mut d = rfd::AsyncFileDialog::new();
        if let Some(f) = frame {
            d = d.set_parent(f);
        }
        let model_dir = self
            .state
            .settings
            .model_path
            .as_deref()
            .and_then(Path::parent)
            .filter(|p| p.is_dir())
            .map(Path::to_path_buf);
        if let Some(dir) = &model_dir {
            d = d.set_directory(dir);
        }
        type Pending = Pin<Box<dyn Future<Output = Option<rfd::FileHandle>> + Send>>;
        let fut: Pending = match pick {
            Pick::ProjectOpen => {
                if let Some(dir) = super::prefs::UiPrefs::last_folder(&self.prefs.recent_projects) {
                    d = d.set_directory(dir);
                }
                Box::pin(
                    d.set_title("Open a project")
                        .add_filter("qatlas project", &["ron"])
                        .pick_file(),
                )
            }
            Pick::ProjectSave => {
                if let Some(dir) = self
                    .live
                    .project
                    .path
                    .as_deref()
                    .and_then(Path::parent)
                    .map(Path::to_path_buf)
                    .or_else(|| super::prefs::UiPrefs::last_folder(&self.prefs.recent_projects))
                {
                    d = d.set_directory(dir);
                }
                let stem = self
                    .live
                    .model
                    .as_ref()
                    .map(|v| v.model.graph.name.clone())
                    .unwrap_or_else(|| "project".into());
                Box::pin(
                    d.set_title("Save the project as")
                        .add_filter("qatlas project", &["ron"])
                        .set_file_name(format!("{stem}.{}", crate::project::PROJECT_EXTENSION))
                        .save_file(),
                )
            }
            Pick::Model => Box::pin(
                d.set_title("Open a model")
                    .add_filter("model", &["safetensors", "onnx"])
                    .pick_file(),
            ),
            Pick::DataDir => Box::pin(
                d.set_title("Choose a dataset folder")
                    .set_directory(&self.live.data.dir)
                    .pick_folder(),
            ),
            Pick::SavePath => {
                let name = self
                    .live
                    .model
                    .as_ref()
                    .map(|v| default_file_name(&v.model))
                    .unwrap_or_else(|| "model.safetensors".into());
                Box::pin(
                    d.set_title("Save the model as")
                        .add_filter("qatlas model", &["safetensors"])
                        .set_file_name(name)
                        .save_file(),
                )
            }
            Pick::AdaRoundSavePath => {
                let name = self
                    .live
                    .model
                    .as_ref()
                    .map(|v| super::file_names::file_name_with(&v.model, "adaround"))
                    .unwrap_or_else(|| "model_adaround.safetensors".into());
                Box::pin(
                    d.set_title("Save the rounded model as")
                        .add_filter("qatlas model", &["safetensors"])
                        .set_file_name(name)
                        .save_file(),
                )
            }
            Pick::QatSavePath => {
                let name = self
                    .live
                    .qat
                    .as_ref()
                    .map(|r| super::qat_run::default_file_name(&r.model_name, r.request.precision))
                    .unwrap_or_else(|| "model_qat.safetensors".into());
                Box::pin(
                    d.set_title("Save the quantized model as")
                        .add_filter("qatlas model", &["safetensors"])
                        .set_file_name(name)
                        .save_file(),
                )
            }
            Pick::ExportPath(format, _) => {
                let stem = self
                    .live
                    .model
                    .as_ref()
                    .map(|v| v.model.graph.name.clone())
                    .unwrap_or_else(|| "model".into());
                let (kind, suffix) = match format {
                    crate::jobs::ExportFormat::OnnxQdq => ("QDQ ONNX", "_qdq.onnx"),
                    crate::jobs::ExportFormat::Bundle => {
                        ("qatlas integer bundle", ".int.safetensors")
                    }
                    crate::jobs::ExportFormat::OnnxFloat => ("float ONNX", "_float.onnx"),
                };
                Box::pin(
                    d.set_title("Export the model as")
                        .add_filter(kind, &[format.extension()])
                        .set_file_name(format!("{stem}{suffix}"))
                        .save_file(),
                )
            }
        };
        self.dialog_open = true;
        self.live.path_prompt = None;
        self.spawn("Waiting for the file dialog".to_string(), move || {
            let t = Instant::now();
            let path = block_on(fut).map(|h| h.path().to_path_buf());
            Outcome::Picked {
                pick,
                path,
                seconds: t.elapsed().as_secs_f64(),
            }
        });
    }
}

/// Whether `cmd` is the user going on with something (an old error then leaves the screen).
fn starts_work(cmd: &Command) -> bool {
    !matches!(
        cmd,
        Command::DismissNotice
            | Command::ClosePathPrompt
            | Command::ShowShortcuts(_)
            | Command::ShowNoticeDetails(_)
            | Command::SetTheme(_)
            | Command::QatOnPlan
            | Command::Confirm(_)
            | Command::Plan(super::workspace::PlanCommand::Select(_))
            | Command::Plan(super::workspace::PlanCommand::DragRange { .. })
    )
}

/// Loads one split of `dir` (runs on a worker thread).
fn load_data(
    dir: &Path,
    split: SplitKind,
    transform: &ImageTransform,
) -> Result<Arc<Dataset>, String> {
    if !dir.is_dir() {
        return Err(format!("no dataset folder at {}", dir.display()));
    }
    let split = match split {
        SplitKind::Train => Split::Train,
        SplitKind::Test => Split::Test,
    };
    load_split_with(dir, split, transform)
        .map(Arc::new)
        .map_err(|e| e.to_string())
}

/// A freshly initialised network for `req`, shaped for `train` (runs on a worker thread).
fn fresh_model(
    req: &TrainRequest,
    train: &Dataset,
    normalization: Normalization,
    command: String,
) -> Result<Model, String> {
    let graph = req
        .arch
        .build(
            train.image_shape(),
            train.num_classes.max(2),
            req.config().seed,
        )
        .map_err(|e| {
            format!(
                "cannot build {} for {} images: {e}",
                req.arch.name(),
                super::format::shape(&train.image_shape())
            )
        })?;
    Ok(Model {
        graph,
        meta: ModelMeta {
            normalization,
            class_names: train.class_names.clone(),
            arch: Some(req.arch.name().to_string()),
            train_config: None,
            history: None,
            command: Some(command),
            qat: None,
        },
    })
}
