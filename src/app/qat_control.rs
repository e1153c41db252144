//! Applying [`QatCommand`]s: "Start" checks [`Live::qat_blocker`], then a one-shot
//! [`super::task::Task`] copies the float model, builds the plan and limits the data (so the UI
//! thread never touches tensors), and the result starts [`Job::qat`], the same job `qatlas qat`
//! runs. Each frame [`StudioApp::pump_qat`] drains the job's events into the run within the
//! frame budget. Pause, resume and stop go to the job's control; "Save quantized model…" writes
//! the deployable model on a worker thread. Knows no egui beyond the parent of a file dialog.

use super::commands::with_model_extension;
use super::qat_run::{
    QatCommand, QatInputs, QatPhase, QatPrecision, QatRequest, QatRun, QatTaskResult, is_fake_quant,
};
use super::state::{Live, Loadable, ModelOrigin, Outcome, Pick, check_fit};
use super::studio::{CentralTab, StudioApp};
use crate::io::save_model;
use crate::jobs::Job;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

impl Live {
    /// Why "Start QAT" cannot run now (`Ok` when it can). Cheap checks only.
    pub fn qat_blocker(&self) -> Result<(), String> {
        if self.qat.as_ref().is_some_and(QatRun::is_active) {
            return Err("a QAT run is already under way".into());
        }
        if self.is_training() {
            return Err("a training run is under way; wait for it to finish".into());
        }
        let view = self.model.as_ref().ok_or("no model is loaded")?;
        if is_fake_quant(&view.model) {
            return Err(
                "the model on screen is already quantized (it holds fake quantizers); open a float model"
                    .into(),
            );
        }
        let train = match &self.data.train {
            Loadable::Ready(d) => d,
            Loadable::Loading => return Err("the training set is still loading".into()),
            Loadable::Failed(e) => return Err(format!("no training set: {e}")),
        };
        check_fit(&view.model, train)?;
        if matches!(self.data.test, Loadable::Loading) {
            return Err("the test set is still loading".into());
        }
        Ok(())
    }
}

/// `<scratch>/<name>-run<id>.best.safetensors`: where a run's best checkpoint goes (removed with
/// the scratch folder when the studio closes, see [`super::scratch`]).
fn checkpoint_path(run: u64, name: &str) -> PathBuf {
    super::scratch::own_dir().join(format!("{name}-run{run}.best.safetensors"))
}

/// Run ids, unique in the process (a late result of an older run is recognised).
static NEXT_RUN: AtomicU64 = AtomicU64::new(1);

impl StudioApp {
    /// Applies one QAT command. `frame` parents the save dialog when given.
    pub(super) fn apply_qat(&mut self, cmd: QatCommand, frame: Option<&eframe::Frame>) {
        match cmd {
            QatCommand::Start(req) => self.start_qat(req),
            QatCommand::Pause | QatCommand::Resume => {
                let pause = cmd == QatCommand::Pause;
                if let Some(run) = self.live.qat.as_mut().filter(|r| r.is_active())
                    && let Some(job) = &run.job
                {
                    if pause {
                        job.pause();
                    } else {
                        job.resume();
                    }
                    run.paused = pause;
                }
            }
            QatCommand::Stop => {
                if let Some(run) = self.live.qat.as_mut().filter(|r| r.is_active()) {
                    if let Some(job) = &run.job {
                        // A stop also ends a pause; the job then deploys what it has.
                        job.stop();
                    }
                    run.paused = false;
                    run.phase = QatPhase::Stopping;
                }
            }
            QatCommand::PickSavePath => self.dialog(Pick::QatSavePath, frame),
            QatCommand::Save(path) => self.save_qat(path),
        }
    }

    fn start_qat(&mut self, req: QatRequest) {
        if let Err(reason) = self.live.qat_blocker() {
            self.live.error(format!("cannot start QAT: {reason}"));
            return;
        }
        let (Some(view), Some(train)) = (&self.live.model, self.live.data.train.ready()) else {
            return;
        };
        let (model, train) = (view.model.clone(), train.clone());
        let test = self
            .live
            .data
            .test
            .ready()
            .filter(|t| check_fit(&model, t).is_ok())
            .cloned();
        let name = match &view.origin {
            ModelOrigin::File(p) => p.file_stem().map(|s| s.to_string_lossy().into_owned()),
            ModelOrigin::Trained { .. } => None,
        }
        .or_else(|| model.meta.arch.clone())
        .unwrap_or_else(|| model.graph.name.clone());
        // "The current plan" starts from the workspace's calibrated plan, as it is on screen.
        let plan = match req.precision {
            QatPrecision::Plan => match self.ws.current_eval() {
                Some(ev) => Some(ev.eval.ptq.plan.clone()),
                None => {
                    self.live.error(
                        "cannot start QAT from the current plan: it is still being calibrated",
                    );
                    return;
                }
            },
            _ => None,
        };
        let command = req.cli_equivalent(view.path(), &self.live.data.dir);
        let id = NEXT_RUN.fetch_add(1, Ordering::Relaxed);
        let checkpoint = checkpoint_path(id, &format!("{name}-{}", req.precision.name()));
        self.live.project.qat = Some(req);
        self.live.project.qat_figures = None;
        let mut run = QatRun::new(id, req, name, Instant::now());
        run.checkpoint = Some(checkpoint.clone());
        self.live.qat = Some(run);
        self.state.central = CentralTab::Qat;
        self.spawn(
            "Preparing quantization-aware training".to_string(),
            move || {
                let result = (|| {
                    if let Some(dir) = checkpoint.parent() {
                        std::fs::create_dir_all(dir).map_err(|e| {
                            format!("cannot create the checkpoint folder {}: {e}", dir.display())
                        })?;
                    }
                    let train = match req.limit {
                        Some(n) if n < train.len() => Arc::new(train.first(n.max(1))),
                        _ => train,
                    };
                    Ok(Box::new(QatInputs {
                        spec: req.spec(&model, command, Some(checkpoint), plan),
                        train,
                        test,
                    }))
                })();
                Outcome::Qat(QatTaskResult::Prepared { run: id, result })
            },
        );
    }

    fn save_qat(&mut self, path: PathBuf) {
        let Some(model) = self.live.qat.as_ref().and_then(QatRun::saveable).cloned() else {
            self.live
                .error("cannot save: no finished QAT run holds a quantized model");
            return;
        };
        let path = with_model_extension(path);
        self.spawn(format!("Saving to {}", path.display()), move || {
            let result = save_model(&model, &path).map_err(|e| e.to_string());
            Outcome::Qat(QatTaskResult::Saved { path, result })
        });
    }

    /// Applies the result of a QAT task.
    pub(super) fn on_qat_task(&mut self, r: QatTaskResult) {
        match r {
            QatTaskResult::Prepared { run: id, result } => {
                let Some(run) = self.live.qat.as_mut().filter(|r| r.id == id) else {
                    return;
                };
                match (&run.phase, result) {
                    (QatPhase::Preparing, Ok(inputs)) => {
                        let QatInputs { spec, train, test } = *inputs;
                        match Job::qat(spec, train, test, self.waker.clone()) {
                            Ok(job) => {
                                run.job = Some(job);
                                run.phase = QatPhase::Running;
                            }
                            Err(e) => {
                                let msg = format!("cannot start the QAT thread: {e}");
                                run.phase = QatPhase::Failed(msg.clone());
                                self.live.error(msg);
                            }
                        }
                    }
                    (QatPhase::Preparing, Err(e)) => {
                        run.phase = QatPhase::Failed(e.clone());
                        self.live.error(e);
                    }
                    // Stop was pressed while the inputs were being prepared.
                    (QatPhase::Stopping, _) => {
                        run.phase = QatPhase::Finished {
                            stopped_early: true,
                            seconds: run.started.elapsed().as_secs_f64(),
                        };
                    }
                    _ => {}
                }
            }
            QatTaskResult::Saved { path, result } => match result {
                Ok(()) => {
                    if let Some(run) = self.live.qat.as_mut() {
                        run.saved_to = Some(path.clone());
                    }
                    self.live
                        .info(format!("Saved the quantized model to {}", path.display()));
                }
                Err(e) => self
                    .live
                    .error(format!("cannot save the quantized model: {e}")),
            },
        }
    }

    /// Drains the QAT job's events and applies them until `deadline`; reports the end of a run
    /// in the status line.
    pub(super) fn pump_qat(&mut self, deadline: Instant) {
        let Some(run) = self.live.qat.as_mut() else {
            return;
        };
        let mut ended = false;
        if let Some(job) = &run.job {
            // Read "finished" before draining: every event a finished worker sent is then drained.
            ended = job.is_finished();
            run.backlog.extend(job.drain());
        }
        let was_active = run.is_active();
        while Instant::now() < deadline {
            let Some(e) = run.backlog.pop_front() else {
                break;
            };
            run.apply(e, Instant::now());
        }
        if ended && run.backlog.is_empty() && run.job.is_some() {
            run.job = None;
            run.phase = QatPhase::Failed("the QAT worker ended without a result".into());
        }
        if !was_active || run.is_active() {
            return;
        }
        let pct = |v: Option<f64>| v.map_or("–".to_string(), super::format::percent);
        match (&run.phase, &run.result) {
            (QatPhase::Finished { stopped_early, .. }, Some(r)) => {
                let how = if *stopped_early {
                    "QAT stopped early"
                } else {
                    "QAT finished"
                };
                let text = format!(
                    "{how}: float {}, PTQ start {}, after QAT {}. Save the quantized model from the QAT tab.",
                    pct(r.float_accuracy),
                    pct(r.start_accuracy),
                    pct(r.quantized_accuracy)
                );
                self.live.info(text);
            }
            (QatPhase::Failed(msg), _) => {
                let msg = msg.clone();
                self.live.error(msg);
            }
            _ => {}
        }
    }
}
