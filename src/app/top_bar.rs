//! The top bar: the app name, the open-model button, where the model on screen comes from, and
//! the status line (background work with a spinner, the latest notice, errors in red). Draws
//! from a [`FrameCtx`] and sends [`Command`]s; it changes no state itself.

use super::state::{Command, FrameCtx, Level, ModelOrigin};
use eframe::egui::{self, RichText};
use serde::{Deserialize, Serialize};

/// The top bar (it has no state of its own yet).
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct TopBar {}

impl TopBar {
    pub fn ui(&mut self, ui: &mut egui::Ui, cx: &mut FrameCtx<'_>) {
        ui.add_space(4.0);
        ui.horizontal(|ui| {
            ui.heading(RichText::new("qatlas studio").strong());
            ui.separator();
            if ui
                .button("Open model…")
                .on_hover_text("Open a qatlas model file (.safetensors)")
                .clicked()
            {
                cx.send(Command::PickModel);
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
        ui.horizontal_wrapped(|ui| {
            ui.label("Status:");
            let busy = cx.live.busy_labels();
            if !busy.is_empty() {
                ui.spinner();
                ui.label(busy.join(" · "));
            }
            match &cx.live.notice {
                Some(n) => {
                    if !busy.is_empty() {
                        ui.separator();
                    }
                    let text = match n.level {
                        Level::Error => RichText::new(format!("Error: {}", n.text))
                            .color(ui.visuals().error_fg_color),
                        Level::Info => RichText::new(&n.text),
                    };
                    ui.label(text);
                    if ui
                        .small_button("✖")
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
        });
        ui.add_space(2.0);
    }
}
