//! The top bar: the app name, the open-model button, where the model on screen comes from, and
//! the status line (background work with a spinner, the latest notice, errors in red). Draws
//! from a [`FrameCtx`] and sends [`Command`]s; it changes no state itself.

use crate::app::state::{Command, FrameCtx, Level, ModelOrigin, Pick};
use eframe::egui::{self, RichText};
use serde::{Deserialize, Serialize};

/// The top bar; its state is the typed path when no file dialog can be shown.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct TopBar {
    #[serde(skip)]
    pub typed_path: String,
}

impl TopBar {
    pub fn ui(&mut self, ui: &mut egui::Ui, cx: &mut FrameCtx<'_>) {
        ui.add_space(4.0);
        ui.horizontal(|ui| {
            ui.heading(RichText::new("qatlas studio").strong());
            ui.separator();
            if ui
                .button("Open model…")
                .on_hover_text("Open a qatlas model (.safetensors) or an ONNX file")
                .clicked()
            {
                cx.send(Command::PickModel);
            }
            if ui
                .button("Open data…")
                .on_hover_text("Choose the dataset folder")
                .clicked()
            {
                cx.send(Command::PickDataDir);
            }
            ui.label("Model:");
            match cx.live.model.as_ref().map(|v| &v.origin) {
                Some(ModelOrigin::File(p)) => {
                    ui.monospace(p.display().to_string());
                }
                Some(ModelOrigin::Trained { .. }) => {
                    ui.label(
                        RichText::new("trained in this session, not saved")
                            .italics()
                            .color(ui.visuals().warn_fg_color),
                    );
                }
                None => {
                    ui.weak("none");
                }
            }
        });
        if let Some(pick) = cx.live.path_prompt {
            ui.horizontal(|ui| {
                let what = match pick {
                    Pick::Model => "Model file to open:",
                    Pick::DataDir => "Dataset folder to open:",
                    Pick::SavePath | Pick::QatSavePath | Pick::AdaRoundSavePath => "Save to:",
                    Pick::ExportPath(..) => "Export to:",
                    Pick::ProjectOpen => "Project file to open:",
                    Pick::ProjectSave => "Save the project to:",
                };
                ui.label(what);
                let r = ui.add(
                    egui::TextEdit::singleline(&mut self.typed_path)
                        .desired_width(420.0)
                        .hint_text("/path/to/file"),
                );
                let go = ui.button("OK").clicked()
                    || (r.lost_focus() && ui.input(|i| i.key_pressed(egui::Key::Enter)));
                if go && !self.typed_path.trim().is_empty() {
                    let p = std::path::PathBuf::from(self.typed_path.trim());
                    cx.send(pick.command(p));
                    cx.send(Command::ClosePathPrompt);
                }
                if ui.button("Cancel").clicked() {
                    cx.send(Command::ClosePathPrompt);
                }
            });
        }
        ui.horizontal_wrapped(|ui| {
            ui.label("Status:");
            let busy = cx.live.busy_labels();
            if !busy.is_empty() {
                if cx.live.is_busy() {
                    ui.spinner();
                }
                ui.label(busy.join(" · "));
            }
            match &cx.live.notice {
                Some(n) => {
                    if !busy.is_empty() {
                        ui.separator();
                    }
                    let short = one_line(&n.text, 160);
                    let text = match n.level {
                        Level::Error => RichText::new(format!("Error: {short}"))
                            .color(ui.visuals().error_fg_color),
                        Level::Info => RichText::new(short),
                    };
                    ui.label(text);
                    if ui
                        .small_button("details")
                        .on_hover_text("Show the whole message (copyable)")
                        .clicked()
                    {
                        cx.send(Command::ShowNoticeDetails(true));
                    }
                    if ui
                        .small_button("dismiss")
                        .on_hover_text("Dismiss this message")
                        .clicked()
                    {
                        cx.send(Command::DismissNotice);
                    }
                }
                None if busy.is_empty() => {
                    ui.label("Ready");
                }
                None => {}
            }
            if let Some(ms) = cx.frame_p99_ms {
                ui.separator();
                ui.weak(format!("frame p99 {ms:.1} ms")).on_hover_text(
                    "99th percentile of the last 600 frames' CPU time (job draining + layout)",
                );
            }
        });
        ui.add_space(2.0);
    }
}

/// The first line of `text`, cut to `max` characters with "…".
fn one_line(text: &str, max: usize) -> String {
    let first = text.lines().next().unwrap_or("");
    if first.chars().count() <= max && !text.contains('\n') {
        return first.to_string();
    }
    let cut: String = first.chars().take(max).collect();
    format!("{cut}…")
}
