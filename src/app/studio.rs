//! The studio application. It owns the persisted [`StudioState`] (settings plus each panel's own
//! state) and the [`Live`] handles. Each frame it first drains background work for at most
//! [`DRAIN_BUDGET`], then lets every panel draw and collect [`Command`]s, then applies them.
//! Everything heavy (reading a model, decoding a dataset, building a network, training,
//! evaluating, writing a file, waiting for a file dialog) runs on worker threads that wake the UI
//! through the injected [`Waker`].

use super::frame_times::FrameTimes;
use super::panels::bench::BenchPanel;
use super::panels::calibration::CalibrationPanel;
use super::panels::curves::CurvesPanel;
use super::panels::data::DataPanel;
use super::panels::export::ExportPanel;
use super::panels::histograms::HistogramsPanel;
use super::panels::layers::LayersPanel;
use super::panels::model::ModelPanel;
use super::panels::qat::QatPanel;
use super::panels::search::SearchPanel;
use super::panels::sensitivity::SensitivityPanel;
use super::panels::summary;
use super::panels::top_bar::TopBar;
use super::panels::training::ActionsPanel;
use super::plan_jobs::{Inputs, PlanJobs};
use super::state::{FrameCtx, Live, ModelOrigin, ModelView, Outcome, RunPhase, Settings};
use super::task::Polled;
use super::workspace::{Effect, Workspace};
use crate::cli::common::{GuiArgs, default_data_dir, default_model};
use crate::jobs::{JobEvent, Waker};
use eframe::egui;
use serde::{Deserialize, Serialize};
use std::collections::VecDeque;
use std::time::{Duration, Instant};

/// Longest time per frame spent applying job events.
pub const DRAIN_BUDGET: Duration = Duration::from_millis(10);

/// Repaint interval while background work runs, so progress animates.
pub const BUSY_REPAINT: Duration = Duration::from_millis(250);

/// Which view fills the centre of the window (in workflow order).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum CentralTab {
    Data,
    #[default]
    Histograms,
    Sensitivity,
    Search,
    Calibration,
    Qat,
    Bench,
    Export,
    Curves,
}

impl CentralTab {
    /// Every tab with its title, in the order the tab bar shows them.
    pub const ALL: [(CentralTab, &'static str); 9] = [
        (CentralTab::Data, "Model & data"),
        (CentralTab::Histograms, "Histograms"),
        (CentralTab::Sensitivity, "Sensitivity"),
        (CentralTab::Search, "Search"),
        (CentralTab::Calibration, "Calibration"),
        (CentralTab::Qat, "QAT"),
        (CentralTab::Bench, "Benchmarks"),
        (CentralTab::Export, "Export"),
        (CentralTab::Curves, "Training"),
    ];
}

/// What a session would persist: settings and the panels' own state (no live handles).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct StudioState {
    pub settings: Settings,
    pub top_bar: TopBar,
    pub model_panel: ModelPanel,
    pub actions: ActionsPanel,
    pub curves: CurvesPanel,
    pub qat: QatPanel,
    #[serde(default)]
    pub bench: BenchPanel,
    #[serde(default)]
    pub layers: LayersPanel,
    #[serde(default)]
    pub histograms: HistogramsPanel,
    #[serde(default)]
    pub sensitivity: SensitivityPanel,
    #[serde(default)]
    pub calibration: CalibrationPanel,
    #[serde(default)]
    pub data: DataPanel,
    #[serde(default)]
    pub export: ExportPanel,
    #[serde(default)]
    pub search: SearchPanel,
    pub central: CentralTab,
}

/// The studio window's application.
pub struct StudioApp {
    pub state: StudioState,
    pub live: Live,
    pub(super) waker: Waker,
    /// Training events drained from the job but not yet applied (over the frame budget).
    pub(super) backlog: VecDeque<JobEvent>,
    /// Whether a file dialog is open (one at a time).
    pub(super) dialog_open: bool,
    /// The quantization workspace of the model on screen.
    pub ws: Workspace,
    pub(super) plan_jobs: PlanJobs,
    /// Recent frame times (logic + drawing), for the status bar's p99.
    pub frame_times: FrameTimes,
    /// Time of this frame's `logic` (job draining), added to the drawing time.
    logic_time: Duration,
    /// Whether the layers panel got its initial width.
    layers_sized: bool,
    /// Recent files and the theme, kept through eframe's storage.
    pub prefs: super::prefs::UiPrefs,
    /// Close the window at the next frame (the user agreed, or nothing would be lost).
    pub(super) close_now: bool,
    /// The window may close without asking.
    pub(super) allow_close: bool,
    /// The command being applied was confirmed by the user (do not ask again).
    pub(super) confirmed: bool,
    /// The title last sent to the window.
    pub(super) title: String,
}

impl StudioApp {
    /// Starts loading the model and the dataset named by `args` (or the built-in ones).
    pub fn new(args: GuiArgs, waker: Waker) -> StudioApp {
        let data_dir = args.data.clone().unwrap_or_else(default_data_dir);
        let model_path = args.model.clone().unwrap_or_else(default_model);
        let state = StudioState {
            settings: Settings {
                model_path: Some(model_path.clone()),
                data_dir: data_dir.clone(),
                image_transform: Default::default(),
            },
            top_bar: TopBar::default(),
            model_panel: ModelPanel::default(),
            actions: ActionsPanel::default(),
            curves: CurvesPanel::default(),
            qat: QatPanel::default(),
            bench: BenchPanel::default(),
            layers: LayersPanel::default(),
            histograms: HistogramsPanel::default(),
            sensitivity: SensitivityPanel::default(),
            calibration: CalibrationPanel::default(),
            data: DataPanel::default(),
            export: ExportPanel::default(),
            search: SearchPanel::default(),
            central: CentralTab::default(),
        };
        let mut app = StudioApp {
            state,
            live: Live::new(data_dir.clone()),
            waker,
            backlog: VecDeque::new(),
            dialog_open: false,
            ws: Workspace::default(),
            plan_jobs: PlanJobs::default(),
            frame_times: FrameTimes::default(),
            logic_time: Duration::ZERO,
            layers_sized: false,
            prefs: Default::default(),
            close_now: false,
            allow_close: false,
            confirmed: false,
            title: String::new(),
        };
        app.open_data(data_dir);
        app.open_model(model_path);
        app
    }

    /// Keeps the panel widths egui restored from the last session (no initial sizing).
    pub fn keep_restored_layout(&mut self) {
        self.layers_sized = true;
    }

    /// Applies finished tasks and job events, spending at most `budget` on training events.
    pub fn pump(&mut self, budget: Duration) {
        let deadline = Instant::now() + budget;
        let mut outcomes = Vec::new();
        let mut lost = Vec::new();
        self.live.tasks.retain_mut(|t| match t.poll() {
            Polled::Pending => true,
            Polled::Done(o) => {
                outcomes.push(o);
                false
            }
            Polled::Lost => {
                lost.push(t.label().to_string());
                false
            }
        });
        for label in lost {
            self.live
                .error(format!("a background task failed unexpectedly ({label})"));
        }
        for o in outcomes {
            self.on_outcome(o);
        }
        self.pump_evaluation();

        let mut job_ended = false;
        if let Some(job) = self.live.training.as_ref().and_then(|r| r.job.as_ref()) {
            // Read "finished" before draining: every event a finished worker sent is then drained.
            job_ended = job.is_finished();
            self.backlog.extend(job.drain());
        }
        while Instant::now() < deadline {
            let Some(e) = self.backlog.pop_front() else {
                break;
            };
            self.on_train_event(e, Instant::now());
        }
        if job_ended
            && self.backlog.is_empty()
            && let Some(run) = self.live.training.as_mut().filter(|r| r.job.is_some())
        {
            run.job = None;
            let msg = "the training worker ended without a result".to_string();
            run.phase = RunPhase::Failed(msg.clone());
            self.live.error(msg);
        }
        self.pump_qat(deadline);
        self.pump_bench();
        self.pump_export();
        let effects = self.plan_jobs.drain(&mut self.ws);
        self.run_effects(effects);
    }

    /// Which of the workspace's jobs (sweep, latency) run now.
    pub fn plan_busy(&self) -> super::workspace::PlanBusy {
        self.plan_jobs.busy()
    }

    /// What the plan jobs read from the studio.
    fn plan_inputs(live: &Live) -> Inputs<'_> {
        Inputs {
            model: live.model.as_ref().map(|v| (v.id, &v.model)),
            train: live.data.train.ready(),
            test: live.data.test.ready(),
        }
    }

    /// Starts the work the workspace asked for.
    pub(super) fn run_effects(&mut self, effects: Vec<Effect>) {
        if effects.is_empty() {
            return;
        }
        let inp = Self::plan_inputs(&self.live);
        self.plan_jobs.run(effects, &mut self.ws, &inp, &self.waker);
    }

    /// A new model is on screen: a fresh workspace with its default plan, evaluated at once.
    pub(super) fn show_model(&mut self, view: ModelView) {
        self.live.bundle = None;
        self.plan_jobs.reset();
        self.ws = Workspace::for_model(view.id, view.plan.clone());
        let rev = self.ws.rev;
        self.live.model = Some(view);
        if self.ws.plan.is_some() {
            self.run_effects(vec![Effect::Evaluate { rev }]);
        }
    }

    /// A dataset split arrived: an evaluation waiting for it can run.
    pub(super) fn on_data_loaded(&mut self) {
        if self.live.bundle.as_ref().is_some_and(|b| b.eval.is_none())
            && self.live.data.test.ready().is_some()
        {
            self.evaluate_bundle();
        }
        let inp = Self::plan_inputs(&self.live);
        self.plan_jobs
            .retry_deferred(&mut self.ws, &inp, &self.waker);
    }

    /// Whether job events are waiting for the next frame.
    pub fn has_backlog(&self) -> bool {
        !self.backlog.is_empty()
            || self
                .live
                .qat
                .as_ref()
                .is_some_and(|r| !r.backlog.is_empty())
    }

    fn pump_evaluation(&mut self) {
        let Some(run) = &self.live.evaluation else {
            return;
        };
        let ended = run.job.is_finished();
        let model_id = run.model_id;
        let mut done = false;
        for e in run.job.drain() {
            match e {
                JobEvent::Evaluated(r) => {
                    self.live.last_eval = Some((model_id, r));
                    done = true;
                }
                JobEvent::Failed(e) => {
                    self.live.error(e.to_string());
                    done = true;
                }
                _ => {}
            }
        }
        if !done && ended {
            self.live
                .error("the evaluation worker ended without a result");
            done = true;
        }
        if done {
            self.live.evaluation = None;
        }
    }

    pub(super) fn on_train_event(&mut self, e: JobEvent, at: Instant) {
        let Some(run) = self.live.training.as_mut() else {
            return;
        };
        match e {
            JobEvent::Train(te) => run.progress.apply(&te, at),
            JobEvent::Trained {
                model,
                summary,
                diverged,
            } => {
                run.job = None;
                // A diverged run still hands back its last good weights: they become the
                // model, and the run shows why it ended.
                let failure = diverged.map(|d| d.report(summary.steps));
                run.phase = match &failure {
                    Some(msg) => RunPhase::Failed(msg.clone()),
                    None => RunPhase::Finished {
                        stopped_early: summary.stopped,
                        steps: summary.steps,
                        seconds: summary.seconds,
                    },
                };
                if let Some(msg) = failure {
                    self.live.error(msg);
                }
                let id = self.live.next_model_id();
                self.live.wanted_model = id;
                let origin = ModelOrigin::Trained {
                    stopped_early: summary.stopped,
                };
                self.spawn("Summarising the trained model".to_string(), move || {
                    Outcome::TrainedReady(ModelView::prepare(id, model, origin))
                });
            }
            JobEvent::Failed(e) => {
                run.job = None;
                let msg = e.to_string();
                run.phase = RunPhase::Failed(msg.clone());
                self.live.error(msg);
            }
            _ => {}
        }
    }
}

impl eframe::App for StudioApp {
    fn logic(&mut self, ctx: &egui::Context, _frame: &mut eframe::Frame) {
        self.logic(ctx);
    }

    fn ui(&mut self, ui: &mut egui::Ui, frame: &mut eframe::Frame) {
        self.draw(ui, Some(frame));
    }

    fn save(&mut self, storage: &mut dyn eframe::Storage) {
        eframe::set_value(storage, super::prefs::KEY, &self.prefs);
    }
}

impl StudioApp {
    /// The per-frame logic before drawing: drains background work within the frame budget
    /// and schedules the next repaint.
    pub fn logic(&mut self, ctx: &egui::Context) {
        let started = Instant::now();
        for c in self.read_input(ctx) {
            self.apply(c, None);
        }
        ctx.set_theme(self.prefs.theme.preference());
        self.pump(DRAIN_BUDGET);
        // Workers wake the window when they report; the slow tick only moves ETAs and
        // elapsed times. Nothing ticks while the only job is a paused one.
        if self.has_backlog() {
            ctx.request_repaint();
        } else if self.live.is_busy() || self.plan_jobs.is_busy() {
            ctx.request_repaint_after(BUSY_REPAINT);
        }
        self.logic_time = started.elapsed();
    }

    /// One whole frame without eframe (GUI tests): [`Self::logic`] then [`Self::draw`].
    pub fn frame(&mut self, ui: &mut egui::Ui) {
        self.logic(&ui.ctx().clone());
        self.draw(ui, None);
    }

    /// Draws the window and applies the frame's commands; `frame` parents file dialogs.
    pub fn draw(&mut self, ui: &mut egui::Ui, frame: Option<&eframe::Frame>) {
        let started = Instant::now();
        let mut commands = Vec::new();
        let project = self.project_settings();
        let dirty = match (&self.live.project.baseline, &project) {
            (Some(b), Ok(now)) => !b.settings_eq(now),
            _ => false,
        };
        let title = format!(
            "{}{} — {}",
            self.live.project.name(),
            if dirty { " •" } else { "" },
            super::APP_NAME
        );
        if title != self.title {
            ui.ctx()
                .send_viewport_cmd(egui::ViewportCommand::Title(title.clone()));
            self.title = title;
        }
        {
            let StudioState {
                settings,
                top_bar,
                model_panel: _,
                actions,
                curves,
                qat,
                bench,
                layers,
                histograms,
                sensitivity,
                calibration,
                data,
                export,
                search,
                central,
            } = &mut self.state;
            let mut cx = FrameCtx::new(&self.live, settings, &self.ws, &mut commands);
            cx.frame_p99_ms = self.frame_times.p99_ms();
            cx.plan_busy = self.plan_jobs.busy();
            cx.prefs = Some(&self.prefs);
            cx.project_save = project.map(|_| ());
            cx.project_dirty = dirty;
            super::panels::dialogs::ui(ui.ctx(), &mut cx);
            egui::Panel::top("top_bar").show(ui, |ui| {
                super::panels::menu::ui(ui, &mut cx);
                top_bar.ui(ui, &mut cx);
                summary::ui(ui, &mut cx);
                ui.add_space(2.0);
            });
            // The layers table starts at ~45 % of a 1280-wide window and never takes more than
            // 60 %: the centre keeps the rest.
            let width = ui.available_width();
            let start = (width * 0.45).min(LAYERS_WIDTH);
            let mut panel = egui::Panel::left("layers_panel")
                .resizable(true)
                .min_size(240.0)
                .max_size((width * 0.6).max(240.0))
                .default_size(start);
            // The window may start tiny before the window system sizes it: set the width once
            // the window is a real size (the panel remembers it, and the user's resizing). It
            // is forced until a frame shows it (egui may discard the first pass of a frame).
            let sizing = !self.layers_sized && width >= 800.0;
            if sizing {
                panel = panel.exact_size(start);
            }
            // egui stores a panel's width as the width its contents used: fill it, or a frame
            // drawn before the model loads ("Loading…") would shrink the panel for good.
            let shown = panel.show(ui, |ui| {
                ui.set_min_width(ui.available_width());
                match &self.live.bundle {
                    Some(b) => super::panels::bundle::layers(ui, b),
                    None => layers.ui(ui, &mut cx),
                }
            });
            if sizing && (shown.response.rect.width() - start).abs() < 2.0 {
                self.layers_sized = true;
            }
            egui::CentralPanel::default().show(ui, |ui| {
                ui.add_space(4.0);
                // Tabs wrap onto a second line in a narrow window rather than clip.
                ui.horizontal_wrapped(|ui| {
                    for (tab, name) in CentralTab::ALL {
                        let text = egui::RichText::new(name).strong();
                        ui.selectable_value(central, tab, text);
                    }
                });
                ui.separator();
                match central {
                    CentralTab::Data => {
                        egui::ScrollArea::both()
                            .auto_shrink([false, false])
                            .show(ui, |ui| {
                                super::panels::project::ui(ui, &mut cx);
                                ui.separator();
                                if let Some(b) = &self.live.bundle {
                                    super::panels::bundle::details(ui, &mut cx, b);
                                    ui.separator();
                                }
                                data.ui(ui, &mut cx)
                            });
                    }
                    CentralTab::Histograms => histograms.ui(ui, &mut cx),
                    CentralTab::Sensitivity => sensitivity.ui(ui, &mut cx),
                    CentralTab::Search => {
                        egui::ScrollArea::vertical()
                            .auto_shrink([false, false])
                            .show(ui, |ui| search.ui(ui, &mut cx));
                    }
                    CentralTab::Calibration => {
                        egui::ScrollArea::vertical()
                            .auto_shrink([false, false])
                            .show(ui, |ui| calibration.ui(ui, &mut cx));
                    }
                    CentralTab::Qat => qat.ui(ui, &mut cx),
                    CentralTab::Bench => bench.ui(ui, &mut cx),
                    CentralTab::Export => {
                        egui::ScrollArea::vertical()
                            .auto_shrink([false, false])
                            .show(ui, |ui| export.ui(ui, &mut cx));
                    }
                    CentralTab::Curves => {
                        egui::Panel::left("training_form")
                            .resizable(true)
                            .default_size(300.0)
                            .show(ui, |ui| actions.ui(ui, &mut cx));
                        curves.ui(ui, &mut cx);
                    }
                }
            });
        }
        for c in commands {
            self.apply(c, frame);
        }
        self.frame_times.push(self.logic_time + started.elapsed());
    }
}

/// The layers table's initial width.
const LAYERS_WIDTH: f32 = 560.0;

/// A file dialog that returns "cancelled" faster than this never showed.
pub(super) const NO_DIALOG_SECONDS: f64 = 0.4;

#[cfg(test)]
mod tests;
