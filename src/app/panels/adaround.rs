//! The "Learned rounding (AdaRound)" section of the Calibration tab: what it does, "Learn the
//! rounding" (disabled with the reason when it cannot run), a spinner while the task runs, then
//! nearest against learned rounding on the same evaluation images, per-layer results (weights
//! rounded the other way, output error relative to nearest rounding, bias shift) and "Save
//! rounded model…". Draws only; the work is [`crate::app::adaround_control`].

use crate::app::adaround_control::{ADAROUND_SAMPLES, AdaRoundCommand};
use crate::app::format;
use crate::app::state::{Command, FrameCtx};
use eframe::egui::{self, RichText};

pub fn section(ui: &mut egui::Ui, cx: &mut FrameCtx<'_>) {
    let (live, ws) = (cx.live, cx.ws);
    let st = &live.adaround;
    egui::CollapsingHeader::new(RichText::new("Learned rounding (AdaRound)").strong())
        .id_salt("adaround_section")
        .default_open(st.result.is_some() || st.running)
        .show(ui, |ui| {
            ui.add(
                egui::Label::new(RichText::new(format!(
                    "Rounds each weight up or down to minimise its layer's output error on {ADAROUND_SAMPLES} \
                     calibration images instead of to nearest (Nagel et al. 2020), then corrects \
                     the biases for the shift of the output mean. Worth most at 4 bits; as \
                     `qatlas ptq --adaround`."
                )).small())
                .wrap(),
            );
            let blocker = live.adaround_blocker(ws.current_eval().is_some());
            let stale = matches!(&st.result, Some(Ok(r)) if r.rev != ws.rev);
            ui.horizontal(|ui| {
                let b = ui
                    .add_enabled(blocker.is_ok(), egui::Button::new("Learn the rounding"))
                    .on_hover_text(
                        "Learn the rounding of every integer weight of the plan as calibrated; \
                         \"other way\": weights not rounded to nearest, \"error vs nearest\": the \
                         layer's output error relative to nearest rounding",
                    )
                    .on_disabled_hover_text(blocker.as_ref().err().cloned().unwrap_or_default());
                if b.clicked() {
                    cx.send(Command::AdaRound(AdaRoundCommand::Run));
                }
                if st.running {
                    ui.spinner();
                    ui.label("learning the rounding…");
                } else if let Err(reason) = &blocker {
                    ui.weak(format!("Cannot run: {reason}."));
                }
            });
            let Some(Ok(r)) = &st.result else {
                if let Some(Err(e)) = &st.result {
                    ui.colored_label(ui.visuals().error_fg_color, e);
                }
                return;
            };
            ui.label(
                RichText::new(format!(
                    "Nearest rounding {} → learned {} ({:+.2} pp) on {} images, {:.1} s",
                    format::percent(r.nearest_accuracy),
                    format::percent(r.learned_accuracy),
                    (r.learned_accuracy - r.nearest_accuracy) * 100.0,
                    r.images,
                    r.seconds
                ))
                .strong(),
            );
            if stale {
                ui.weak("The plan changed since: learn the rounding again for the new plan.");
            }
            egui::Grid::new("adaround_layers")
                .striped(true)
                .num_columns(5)
                .show(ui, |ui| {
                    for h in ["layer", "weights", "other way", "error vs nearest", "bias shift"] {
                        ui.strong(h);
                    }
                    ui.end_row();
                    for l in &r.layers {
                        ui.label(&l.layer);
                        ui.label(format::thousands(l.weights as u64));
                        ui.label(format!(
                            "{} ({:.1} %)",
                            format::thousands(l.flipped as u64),
                            l.flipped as f64 * 100.0 / l.weights.max(1) as f64
                        ));
                        ui.label(format!("{:.1} %", l.relative_error * 100.0));
                        ui.label(format!("{:.2e}", l.bias_shift));
                        ui.end_row();
                    }
                });
            ui.horizontal(|ui| {
                if ui
                    .button("Save rounded model…")
                    .on_hover_text("Write the fake-quant model with the learned rounding (.safetensors)")
                    .clicked()
                {
                    cx.send(Command::AdaRound(AdaRoundCommand::PickSavePath));
                }
                if let Some(p) = &st.saved_to {
                    ui.weak(format!("saved to {}", p.display()));
                }
            });
        });
}
