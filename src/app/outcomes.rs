//! Applying the results of one-shot tasks ([`Outcome`]) to the studio: a model opened or
//! trained, a dataset split read, a fresh network built, a file dialog closed, a file saved,
//! QAT inputs prepared, a project read or written. Runs on the UI thread and only moves
//! finished values into place.

use super::state::{Loadable, ModelLoad, ModelOrigin, Outcome, RunPhase, SplitKind};
use super::studio::{NO_DIALOG_SECONDS, StudioApp};
use crate::cli::common::default_model;
use crate::io::Model;
use crate::jobs::Job;

impl StudioApp {
    pub(super) fn on_outcome(&mut self, o: Outcome) {
        match o {
            Outcome::ModelOpened { id, path, load } => {
                if id != self.live.wanted_model {
                    return;
                }
                match load {
                    ModelLoad::Bundle(b) => {
                        self.plan_jobs.reset();
                        self.ws = Default::default();
                        self.live.model = None;
                        self.live.no_model_reason = Some(format!(
                            "An integer bundle is open ({}): its layers are on the left and \
                             the Model & data tab evaluates it on the integer runtime. The plan \
                             tools, QAT and export start from a float or fake-quant model.",
                            b.path.display()
                        ));
                        self.prefs.remember_model(&path);
                        self.live.bundle = Some(*b);
                        self.live
                            .info(format!("Opened the integer bundle {}", path.display()));
                        if self.live.data.test.ready().is_some() {
                            self.evaluate_bundle();
                        }
                    }
                    ModelLoad::Ready(view) => {
                        self.show_model(view);
                        self.live.no_model_reason = None;
                        if path != default_model() {
                            self.prefs.remember_model(&path);
                        }
                        self.state.settings.model_path = Some(path);
                        if !self.live.is_training() {
                            // The curve panel shows the new model's history, not an old run.
                            self.live.training = None;
                        }
                        if self.live.project.pending.is_some() {
                            self.apply_pending_project();
                        } else if self.live.project.path.is_none() {
                            // An untitled session starts afresh with each model opened.
                            self.live.project = Default::default();
                            self.mark_project_clean();
                        }
                    }
                    ModelLoad::Missing if path == default_model() => {
                        let text = format!(
                            "No pretrained model yet at {}. Train one from scratch (right), or open a model file.",
                            path.display()
                        );
                        self.live.no_model_reason = Some(text.clone());
                        self.live.info(text);
                    }
                    ModelLoad::Missing => {
                        let text = format!("model file not found: {}", path.display());
                        if self.live.model.is_none() {
                            self.live.no_model_reason = Some(text.clone());
                        }
                        self.live.error(text);
                    }
                    ModelLoad::Failed(e) => {
                        if self.live.model.is_none() {
                            self.live.no_model_reason =
                                Some(format!("The model could not be opened: {e}"));
                        }
                        self.live.error(format!("cannot open the model: {e}"));
                    }
                }
            }
            Outcome::TrainedReady(view) => {
                if view.id != self.live.wanted_model {
                    return;
                }
                let acc = view
                    .model
                    .meta
                    .history
                    .as_ref()
                    .and_then(|h| h.epochs.last())
                    .and_then(|r| r.eval.as_ref())
                    .map(|e| e.accuracy);
                let stopped = matches!(
                    view.origin,
                    ModelOrigin::Trained {
                        stopped_early: true
                    }
                );
                let mut text = if stopped {
                    "Training stopped early".to_string()
                } else {
                    "Training finished".to_string()
                };
                if let Some(a) = acc {
                    text += &format!(": test accuracy {}", super::format::percent(a));
                }
                text += ". The trained model is shown; use Save as… to keep it.";
                self.show_model(view);
                self.live.no_model_reason = None;
                self.live.info(text);
            }
            Outcome::Renormalised(view) => {
                if view.id != self.live.wanted_model {
                    return;
                }
                let n = view.model.meta.normalization.clone();
                self.show_model(view);
                if self.live.project.pending.is_some() {
                    self.apply_pending_project();
                    return;
                }
                self.live.info(format!(
                    "Normalisation set to mean {:?}, std {:?}; the plan is calibrated again.",
                    n.mean, n.std
                ));
            }
            Outcome::Data {
                ticket,
                split,
                result,
            } => {
                if ticket != self.live.data_ticket {
                    return;
                }
                if result.is_ok() && split == SplitKind::Test {
                    let dir = self.live.data.dir.clone();
                    if dir != crate::cli::common::default_data_dir() {
                        self.prefs.remember_data(&dir);
                    }
                }
                let slot = match split {
                    SplitKind::Train => &mut self.live.data.train,
                    SplitKind::Test => &mut self.live.data.test,
                };
                *slot = match result {
                    Ok(d) => Loadable::Ready(d),
                    Err(e) => Loadable::Failed(e),
                };
                // One message for the folder, not one per split.
                let failed = [&self.live.data.train, &self.live.data.test]
                    .into_iter()
                    .find_map(|l| match l {
                        Loadable::Failed(e) => Some(e.clone()),
                        _ => None,
                    });
                if let Some(e) = failed
                    && self.live.data_reported != ticket
                {
                    self.live.data_reported = ticket;
                    self.live.error(format!(
                        "cannot use the dataset folder: {e} (in {})",
                        self.live.data.dir.display()
                    ));
                }
                self.on_data_loaded();
            }
            Outcome::FreshModel(result) => self.on_fresh_model(result),
            Outcome::Picked {
                pick,
                path,
                seconds,
            } => {
                self.dialog_open = false;
                let Some(path) = path else {
                    // A dialog that "closes" at once never showed: no dialog service here.
                    if seconds < NO_DIALOG_SECONDS {
                        self.live.path_prompt = Some(pick);
                        self.live.error(
                            "no file dialog could be shown (this system has no file-dialog \
                             service: xdg-desktop-portal or zenity); type the path in the field \
                             under the top bar",
                        );
                    }
                    return;
                };
                let cmd = pick.command(path);
                self.apply(cmd, None);
            }
            Outcome::Saved { id, path, result } => match result {
                Ok(()) => {
                    if let Some(view) = self.live.model.as_mut().filter(|v| v.id == id) {
                        view.origin = ModelOrigin::File(path.clone());
                        self.state.settings.model_path = Some(path.clone());
                    }
                    self.live
                        .info(format!("Saved the model to {}", path.display()));
                }
                Err(e) => self.live.error(format!("cannot save the model: {e}")),
            },
            Outcome::Qat(r) => self.on_qat_task(r),
            Outcome::AdaRound(o) => self.on_adaround(o),
            Outcome::Project(r) => self.on_project_task(r),
            Outcome::BundleEvaluated { path, result } => {
                if let Some(b) = self.live.bundle.as_mut().filter(|b| b.path == path) {
                    let failed = result.as_ref().err().cloned();
                    b.eval = Some(result);
                    if let Some(e) = failed {
                        self.live.error(format!("cannot evaluate the bundle: {e}"));
                    }
                }
            }
        }
    }

    pub(super) fn on_fresh_model(&mut self, result: Result<Box<Model>, String>) {
        let Some(run) = self.live.training.as_mut() else {
            return;
        };
        let phase = run.phase.clone();
        match (phase, result) {
            (RunPhase::Preparing, Ok(model)) => {
                let (Some(train), test) = (
                    self.live.data.train.ready().cloned(),
                    self.live.data.test.ready().cloned(),
                ) else {
                    run.phase = RunPhase::Failed("the training set is no longer loaded".into());
                    return;
                };
                // Evaluate after each epoch only on a test split the network can read.
                let test = test.filter(|t| {
                    t.image_shape() == train.image_shape()
                        && t.num_classes <= train.num_classes.max(2)
                });
                match Job::train(
                    *model,
                    train,
                    test,
                    run.request.config(),
                    self.waker.clone(),
                ) {
                    Ok(job) => {
                        run.job = Some(job);
                        run.phase = RunPhase::Running;
                    }
                    Err(e) => {
                        let msg = format!("cannot start the training thread: {e}");
                        run.phase = RunPhase::Failed(msg.clone());
                        self.live.error(msg);
                    }
                }
            }
            (RunPhase::Preparing, Err(e)) => {
                run.phase = RunPhase::Failed(e.clone());
                self.live.error(e);
            }
            // Stop was pressed while the network was being built.
            (RunPhase::Stopping, _) => {
                run.phase = RunPhase::Finished {
                    stopped_early: true,
                    steps: 0,
                    seconds: run.started.elapsed().as_secs_f64(),
                };
            }
            _ => {}
        }
    }
}
