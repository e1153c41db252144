//! Project files in the studio: [`ProjectCommand`]s open and save a [`Project`] (reading,
//! hashing and writing on workers), [`StudioApp::project_now`] gathers the session into one,
//! and an opened project is applied once its model is on screen (normalisation, plan and
//! hand-set ranges, calibration, QAT and export settings, the saved figures). The title bar's
//! unsaved-changes mark compares the session's settings with the ones last saved or opened.
//! Knows no egui beyond the parent of a file dialog.

use super::state::{Live, ModelOrigin, Outcome, Pick};
use super::studio::StudioApp;
use super::workspace::Workspace;
use crate::jobs::qat_request::QatRequest;
use crate::project::file::{
    Calibration, DataRef, ExportRecord, ExportSettings, LatencyFigures, Measured, ModelRef,
    QatFigures, Results, SweepFigures, file_sha256, model_changed,
};
use crate::project::{PROJECT_EXTENSION, Project};
use std::path::{Path, PathBuf};

/// What the File menu (and its shortcuts) ask for.
#[derive(Clone, Debug, PartialEq)]
pub enum ProjectCommand {
    PickOpen,
    Open(PathBuf),
    /// Save to the project's file; the first time, ask where.
    Save,
    PickSaveAs,
    SaveAs(PathBuf),
}

/// What a project task gave.
#[derive(Debug)]
pub enum ProjectTaskResult {
    /// A project file was read (with why its model changed, if it did).
    Opened {
        path: PathBuf,
        result: Result<(Project, Option<String>), String>,
    },
    /// A project was written (as saved, with the model's hash).
    Saved {
        path: PathBuf,
        result: Result<Project, String>,
    },
}

/// The session's project.
#[derive(Debug, Default)]
pub struct ProjectState {
    /// The file it was opened from or last saved to.
    pub path: Option<PathBuf>,
    /// The settings as last saved or opened, or as the model came up: the unsaved-changes
    /// mark compares with these.
    pub baseline: Option<Project>,
    /// A project being opened, applied when the model with this id is on screen.
    pub pending: Option<(u64, Project)>,
    /// The QAT settings of the latest run (what a replay runs).
    pub qat: Option<QatRequest>,
    /// The figures of that run, if it came with the opened project.
    pub qat_figures: Option<QatFigures>,
    /// The latest export's settings and every file written in this project.
    pub export: Option<ExportSettings>,
    pub exports: Vec<ExportRecord>,
    /// The figures saved with the opened project.
    pub saved_results: Option<Results>,
    /// A save is under way.
    pub saving: bool,
    /// Close the window once the save under way succeeds.
    pub close_after_save: bool,
    /// Why the opened project's model is not the file it was saved with, if it is not.
    pub model_changed: Option<String>,
}

impl ProjectState {
    /// The project's name for the title bar.
    pub fn name(&self) -> String {
        self.path
            .as_deref()
            .map(Project::name_of)
            .unwrap_or_else(|| "untitled project".into())
    }
}

/// `path` with the project extension unless it already ends in `.ron`.
pub fn with_project_extension(path: PathBuf) -> PathBuf {
    if path.extension().is_some_and(|e| e == "ron") {
        path
    } else {
        let mut s = path.into_os_string();
        s.push(format!(".{PROJECT_EXTENSION}"));
        PathBuf::from(s)
    }
}

impl StudioApp {
    /// Applies one project command. `frame` parents file dialogs when given.
    pub(super) fn apply_project(&mut self, c: ProjectCommand, frame: Option<&eframe::Frame>) {
        match c {
            ProjectCommand::PickOpen => self.dialog(Pick::ProjectOpen, frame),
            ProjectCommand::Open(path) => self.open_project(path),
            ProjectCommand::Save => match self.live.project.path.clone() {
                Some(p) => self.save_project(p),
                None => self.dialog(Pick::ProjectSave, frame),
            },
            ProjectCommand::PickSaveAs => self.dialog(Pick::ProjectSave, frame),
            ProjectCommand::SaveAs(path) => self.save_project(path),
        }
    }

    /// The session as a project (settings and the figures on screen), or why it cannot be one.
    pub fn project_now(&self) -> Result<Project, String> {
        let mut p = self.project_settings()?;
        p.results = results_of(&self.live, &self.ws);
        Ok(p)
    }

    /// The session's settings as a project, without the figures: what the unsaved-changes mark
    /// compares (cheap enough for every frame: no results are copied).
    pub fn project_settings(&self) -> Result<Project, String> {
        let view = self.live.model.as_ref().ok_or("no model is open")?;
        let path = match &view.origin {
            ModelOrigin::File(p) => p.clone(),
            ModelOrigin::Trained { .. } => {
                return Err(
                    "the model on screen was trained in this session and is in no file \
                            yet: save it first (Save as… in the Training tab)"
                        .into(),
                );
            }
        };
        let ws = &self.ws;
        let plan = ws.plan.as_ref().map(|p| {
            let mut p = p.clone();
            p.ranges = ws.pins.iter().map(|p| p.range.clone()).collect();
            p
        });
        Ok(Project {
            model: ModelRef {
                path,
                ..ModelRef::default()
            },
            data: DataRef {
                dir: self.live.data.dir.clone(),
                normalization: Some(view.model.meta.normalization.clone()),
                transform: self.live.data.transform,
            },
            plan,
            pins: ws.pins.clone(),
            calibration: Calibration {
                calib_samples: ws.calib_samples,
                eval_samples: ws.eval_samples,
            },
            qat: self.live.project.qat,
            export: self.live.project.export.clone(),
            ..Project::default()
        })
    }

    /// Whether the session's settings differ from the ones last saved or opened.
    pub fn project_dirty(&self) -> bool {
        match (&self.live.project.baseline, self.project_settings()) {
            (Some(b), Ok(now)) => !b.settings_eq(&now),
            _ => false,
        }
    }

    /// "name • — qatlas studio" (the dot: unsaved changes), as the last frame set it.
    pub fn window_title(&self) -> &str {
        &self.title
    }

    /// What closing the window (or replacing the session) would lose.
    pub fn unsaved_work(&self) -> Vec<String> {
        let mut v = Vec::new();
        if self.project_dirty() {
            v.push(format!(
                "changes to {} (plan, settings or results)",
                self.live.project.name()
            ));
        }
        if let Some(run) = &self.live.qat
            && run.saveable().is_some()
            && run.saved_to.is_none()
        {
            v.push("the quantized model of the last QAT run (not saved)".into());
        }
        if let Some(v2) = &self.live.model
            && matches!(v2.origin, ModelOrigin::Trained { .. })
        {
            v.push("the model trained in this session (not saved)".into());
        }
        v
    }

    /// The settings just opened or saved become the baseline of the unsaved-changes mark.
    pub(super) fn mark_project_clean(&mut self) {
        self.live.project.baseline = self.project_settings().ok();
    }

    fn save_project(&mut self, path: PathBuf) {
        let path = with_project_extension(path);
        let mut p = match self.project_now() {
            Ok(p) => p,
            Err(why) => {
                self.live.project.close_after_save = false;
                self.live.error(format!("cannot save the project: {why}"));
                return;
            }
        };
        self.live.project.saving = true;
        let name = Project::name_of(&path);
        self.spawn(format!("Saving project {name}"), move || {
            let result = (|| {
                let (sha256, bytes) = file_sha256(&p.model.path)
                    .map_err(|e| format!("{}: {e}", p.model.path.display()))?;
                p.model.sha256 = sha256;
                p.model.bytes = bytes;
                p.save(&path).map_err(|e| e.to_string())?;
                Ok(p)
            })();
            Outcome::Project(ProjectTaskResult::Saved { path, result })
        });
    }

    fn open_project(&mut self, path: PathBuf) {
        let name = Project::name_of(&path);
        self.spawn(format!("Opening project {name}"), move || {
            let result = Project::load(&path)
                .map_err(|e| e.to_string())
                .and_then(|p| {
                    let changed = model_changed(&p.model).map_err(|e| {
                        format!("the project's model {}: {e}", p.model.path.display())
                    })?;
                    Ok((p, changed))
                });
            Outcome::Project(ProjectTaskResult::Opened { path, result })
        });
    }

    /// Applies the result of a project task.
    pub(super) fn on_project_task(&mut self, r: ProjectTaskResult) {
        match r {
            ProjectTaskResult::Saved { path, result } => {
                self.live.project.saving = false;
                match result {
                    Ok(_) => {
                        self.live.project.path = Some(path.clone());
                        self.mark_project_clean();
                        self.prefs.remember_project(&path);
                        self.live
                            .info(format!("Saved the project to {}", path.display()));
                        if std::mem::take(&mut self.live.project.close_after_save) {
                            self.close_now = true;
                        }
                    }
                    Err(e) => {
                        self.live.project.close_after_save = false;
                        self.live.error(format!("cannot save the project: {e}"));
                    }
                }
            }
            ProjectTaskResult::Opened { path, result } => match result {
                Ok((p, changed)) => {
                    self.prefs.remember_project(&path);
                    if p.data.dir != self.live.data.dir
                        || p.data.transform != self.live.data.transform
                        || self.live.data.test.ready().is_none()
                    {
                        self.state.settings.image_transform = p.data.transform;
                        self.open_data(p.data.dir.clone());
                    }
                    self.live.project = super::project_control::ProjectState {
                        path: Some(path.clone()),
                        ..Default::default()
                    };
                    self.open_model(p.model.path.clone());
                    self.live.project.pending = Some((self.live.wanted_model, p));
                    self.live.project.model_changed = changed;
                    self.live
                        .info(format!("Opening the project {}", path.display()));
                }
                Err(e) => self.live.error(format!("cannot open the project: {e}")),
            },
        }
    }

    /// Applies a project being opened once its model is on screen (called after a model view
    /// is shown).
    pub(super) fn apply_pending_project(&mut self) {
        let Some(view) = &self.live.model else { return };
        let id = view.id;
        let Some((want, p)) = self.live.project.pending.take() else {
            return;
        };
        if want != id {
            self.live.project.pending = Some((want, p));
            return;
        }
        if let Some(n) = &p.data.normalization
            && *n != view.model.meta.normalization
        {
            // The plan comes after the model has the project's normalisation.
            self.apply(super::state::Command::SetNormalization(n.clone()), None);
            self.live.project.pending = Some((self.live.wanted_model, p));
            return;
        }
        if let Some(plan) = p.plan.clone() {
            match self.ws.restore(plan, p.pins.clone(), p.calibration) {
                Ok(effects) => self.run_effects(effects),
                Err(why) => self.live.error(format!(
                    "the project's plan does not fit this model ({why}); the default plan is shown"
                )),
            }
        } else if p.calibration != Calibration::default() {
            let c = p.calibration;
            let effects = self.ws.set_samples(c.eval_samples, c.calib_samples);
            self.run_effects(effects);
        }
        if let Some(s) = &p.results.sensitivity {
            self.ws.restore_sweep(s);
        }
        if let Some(q) = p.qat {
            self.state.qat.set_request(&q);
        }
        if let Some(e) = &p.export {
            self.state.export.format = e.format;
            self.state.export.opset = Some(e.opset);
            self.state.export.path = e.path.display().to_string();
        }
        let st = &mut self.live.project;
        st.qat = p.qat;
        st.qat_figures = p.results.qat;
        st.export = p.export.clone();
        st.exports = p.results.exports.clone();
        st.saved_results = Some(p.results.clone());
        self.mark_project_clean();
        // The figures come from the run just started, so the baseline's results are moot.
        let name = self.live.project.name();
        match self.live.project.model_changed.clone() {
            Some(why) => self.live.error(format!(
                "Opened the project {name}, but {why}. Its plan is applied to the file as it is \
                 now; the figures saved with it were measured on the old one."
            )),
            None => self.live.info(format!(
                "Opened the project {name}: the plan is being calibrated and measured again"
            )),
        }
    }
}

/// Whether `path` names a project file (by its extension).
pub fn is_project_file(path: &Path) -> bool {
    path.to_string_lossy().ends_with(".ron")
}

/// The figures on screen now (those of the current plan revision only): what a project saves.
pub fn results_of(live: &Live, ws: &Workspace) -> Results {
    let mut r = Results::default();
    if let Some(ev) = ws.current_eval() {
        r.set_plan_figures(&ev.eval);
    }
    if let Some(t) = ws.integer.as_ref().filter(|t| t.rev == ws.rev)
        && let Ok((accuracy, images)) = t.value
    {
        r.integer_accuracy = Some(Measured { accuracy, images });
    }
    if let Some(t) = ws.latency.as_ref().filter(|t| t.rev == ws.rev) {
        r.latency = Some(LatencyFigures {
            int_us: t.value.int_us,
            float_us: t.value.float_us,
            kernel_path: t.value.kernel_path.clone(),
            cpu: crate::bench::cpu_name(),
        });
    }
    if let Some(s) = ws.sweep.settings.filter(|_| !ws.sweep.rows.is_empty()) {
        r.sensitivity = Some(SweepFigures {
            label: s.label(),
            mode: s.mode,
            weights: s.weights,
            a4: s.a4,
            samples: s.samples,
            float_accuracy: ws.sweep.float_accuracy,
            quantized_accuracy: ws.sweep.quantized_accuracy,
            rows: ws.sweep.rows.values().cloned().collect(),
        });
    }
    r.qat = match live
        .qat
        .as_ref()
        .and_then(|q| q.result.as_ref().map(|x| (q, x)))
    {
        Some((run, res)) => Some(QatFigures {
            float_accuracy: res.float_accuracy,
            start_accuracy: res.start_accuracy,
            quantized_accuracy: res.quantized_accuracy,
            epochs: run.request.epochs,
            stopped_early: matches!(
                run.phase,
                super::qat_run::QatPhase::Finished {
                    stopped_early: true,
                    ..
                }
            ),
        }),
        None => live.project.qat_figures,
    };
    r.exports = live.project.exports.clone();
    r
}
