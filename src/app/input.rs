//! Window-level input, read once per frame before drawing: keyboard shortcuts ([`SHORTCUTS`],
//! also the F1 list), files dropped on the window (a folder opens as data, a `.ron` file as a
//! project, anything else as a model), and the window's close request, which asks first when
//! work would be lost ([`StudioApp::unsaved_work`]). Everything becomes a [`Command`].

use super::bench_run::BenchCommand;
use super::export_control::ExportCommand;
use super::project_control::{ProjectCommand, is_project_file};
use super::qat_run::QatCommand;
use super::state::{Command, Confirm, Pending};
use super::studio::{CentralTab, StudioApp};
use super::workspace::PlanCommand;
use eframe::egui::{self, Key, KeyboardShortcut, Modifiers};
use std::path::PathBuf;

/// The keyboard shortcuts, as the F1 list shows them.
pub const SHORTCUTS: [(&str, &str); 10] = [
    ("Ctrl+O", "Open a project"),
    ("Ctrl+Shift+O", "Open a model"),
    ("Ctrl+S", "Save the project"),
    ("Ctrl+Shift+S", "Save the project as…"),
    (
        "Ctrl+E",
        "Export (the Export tab's format, to a file you choose)",
    ),
    (
        "F5",
        "Start the current tab's job (Calibration, Sensitivity, Search, QAT, Export)",
    ),
    ("Esc", "Stop what runs (QAT, training, sweep, benchmark)"),
    ("F1", "This list"),
    ("Ctrl+Q", "Quit (asks first if work would be lost)"),
    (
        "Drop a file",
        "Open it: a folder as data, a .ron as a project, else a model",
    ),
];

/// A shortcut with Ctrl (Cmd on macOS), and with Shift if `shift`.
fn ctrl(key: Key, shift: bool) -> KeyboardShortcut {
    let m = if shift {
        Modifiers::COMMAND | Modifiers::SHIFT
    } else {
        Modifiers::COMMAND
    };
    KeyboardShortcut::new(m, key)
}

/// What a file dropped on the window opens as.
pub fn open_command(path: PathBuf) -> Command {
    if path.is_dir() {
        Command::OpenData(path)
    } else if is_project_file(&path) {
        Command::Project(ProjectCommand::Open(path))
    } else {
        Command::OpenModel(path)
    }
}

impl StudioApp {
    /// Reads this frame's shortcuts, dropped files and close request (see the module doc).
    pub(super) fn read_input(&mut self, ctx: &egui::Context) -> Vec<Command> {
        let mut out = Vec::new();
        let modal = self.live.confirm.is_some();
        ctx.input_mut(|i| {
            // Shift variants first: Ctrl+S also matches Ctrl+Shift+S.
            if i.consume_shortcut(&ctrl(Key::S, true)) {
                out.push(Command::Project(ProjectCommand::PickSaveAs));
            } else if i.consume_shortcut(&ctrl(Key::S, false)) {
                out.push(Command::Project(ProjectCommand::Save));
            }
            if i.consume_shortcut(&ctrl(Key::O, true)) {
                out.push(Command::PickModel);
            } else if i.consume_shortcut(&ctrl(Key::O, false)) {
                out.push(Command::Project(ProjectCommand::PickOpen));
            }
            if i.consume_shortcut(&ctrl(Key::E, false)) {
                out.push(Command::ExportShortcut);
            }
            if i.consume_shortcut(&ctrl(Key::Q, false)) {
                out.push(Command::Quit);
            }
            if i.consume_key(Modifiers::NONE, Key::F1) {
                out.push(Command::ShowShortcuts(!self.live.show_shortcuts));
            }
            if i.consume_key(Modifiers::NONE, Key::F5) {
                out.push(Command::StartCurrent);
            }
            if !modal && i.consume_key(Modifiers::NONE, Key::Escape) {
                out.push(Command::StopRunning);
            }
        });
        let dropped: Vec<PathBuf> = ctx.input(|i| {
            i.raw
                .dropped_files
                .iter()
                .map(|f| f.path().to_path_buf())
                .filter(|p| !p.as_os_str().is_empty())
                .collect()
        });
        out.extend(dropped.into_iter().map(open_command));
        if ctx.input(|i| i.viewport().close_requested()) && !self.allow_close {
            let lost = self.unsaved_work();
            if !lost.is_empty() {
                ctx.send_viewport_cmd(egui::ViewportCommand::CancelClose);
                self.live.confirm = Some(Confirm {
                    lost,
                    pending: Pending::Close,
                });
            }
        }
        if self.close_now {
            self.close_now = false;
            self.allow_close = true;
            ctx.send_viewport_cmd(egui::ViewportCommand::Close);
        }
        out
    }

    /// F5: the current tab's main job, with the tab's settings (or why there is none).
    pub(super) fn start_current(&mut self) {
        let cmd = match self.state.central {
            CentralTab::Calibration => Command::Plan(PlanCommand::Recalibrate),
            CentralTab::Sensitivity => {
                Command::Plan(PlanCommand::Sweep(self.state.sensitivity.form))
            }
            CentralTab::Search => Command::Plan(PlanCommand::Search(self.state.search.form)),
            CentralTab::Qat => Command::Qat(QatCommand::Start(self.state.qat.request())),
            CentralTab::Export => Command::ExportShortcut,
            other => {
                let name = CentralTab::ALL
                    .iter()
                    .find(|(t, _)| *t == other)
                    .map_or("this", |(_, n)| *n);
                self.live.info(format!(
                    "F5 starts the job of the Calibration, Sensitivity, Search, QAT and Export tabs; \
                     the {name} tab has its own buttons"
                ));
                return;
            }
        };
        self.apply(cmd, None);
    }

    /// Esc: stops whatever runs (or says nothing does).
    pub(super) fn stop_running(&mut self) {
        let mut stopped = Vec::new();
        if self.live.qat.as_ref().is_some_and(|r| r.is_active()) {
            self.apply(Command::Qat(QatCommand::Stop), None);
            stopped.push("QAT");
        }
        if self.live.is_training() {
            self.apply(Command::StopTraining, None);
            stopped.push("training");
        }
        if self.plan_busy().search {
            self.apply(Command::Plan(PlanCommand::StopSearch), None);
            stopped.push("the search");
        }
        if self.plan_busy().sweep {
            self.apply(Command::Plan(PlanCommand::CancelSweep), None);
            stopped.push("the sensitivity sweep");
        }
        if self.live.bench.running.is_some() {
            self.apply(Command::Bench(BenchCommand::Stop), None);
            stopped.push("the benchmark");
        }
        if stopped.is_empty() {
            self.live
                .info("Esc stops a running job; nothing is running");
        } else {
            self.live.info(format!("Stopping {}", stopped.join(", ")));
        }
    }

    /// Ctrl+E: the Export tab's format to a file chosen in a dialog.
    pub(super) fn export_shortcut(&mut self, frame: Option<&eframe::Frame>) {
        self.state.central = CentralTab::Export;
        let format = self.state.export.format;
        let opset = self
            .state
            .export
            .effective_opset(self.live.export_min_opset(&self.ws));
        match self.live.export_blocker(&self.ws, format) {
            Ok(()) => self.apply(
                Command::Export(ExportCommand::Pick { format, opset }),
                frame,
            ),
            Err(why) => self.live.error(format!("cannot export: {why}")),
        }
    }
}
