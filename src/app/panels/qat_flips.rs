//! The oscillation meter of the QAT tab: the share of all weights that changed their integer
//! value per optimizer step, plotted over the run, and the latest rates per layer (flips, and
//! oscillations: changes back against the previous change). At 4 bits a rate that does not
//! fall is the sign that weights sit on rounding boundaries (Nagel et al. 2022); freezing
//! BatchNorm or damping brings it down. Draws only: the rates come folded in
//! [`QatRun::flips`] and [`QatRun::flip_layers`].

use crate::app::qat_run::QatRun;
use eframe::egui::{self, Color32, RichText};
use egui_plot::{Line, Plot, PlotPoints};

const FLIPS: Color32 = Color32::from_rgb(200, 90, 200);

/// The flip-rate plot and the per-layer table (nothing before the first report).
pub fn flips(ui: &mut egui::Ui, run: &QatRun) {
    if run.flips.is_empty() {
        return;
    }
    ui.separator();
    ui.strong("Weight flips per step");
    ui.weak(
        "Share of the weights whose integer value changed in one optimizer step (mean over the \
         last ~50 steps), all layers together.",
    );
    Plot::new("qat_flip_plot")
        .height(140.0)
        .x_axis_label("step")
        .y_axis_label("% of weights")
        .allow_scroll(false)
        .show(ui, |p| {
            p.line(
                Line::new("flips", PlotPoints::from(run.flips.clone()))
                    .color(FLIPS)
                    .width(1.5),
            );
        });
    egui::CollapsingHeader::new(RichText::new("Per layer (latest)").small())
        .id_salt("qat_flip_layers")
        .show(ui, |ui| {
            egui::Grid::new("qat_flip_table")
                .striped(true)
                .num_columns(4)
                .show(ui, |ui| {
                    ui.strong("quantizer");
                    ui.strong("weights");
                    ui.strong("flips / step");
                    ui.strong("oscillations / step");
                    ui.end_row();
                    for l in &run.flip_layers {
                        ui.label(&l.point);
                        ui.label(l.weights.to_string());
                        ui.label(format!("{:.3} %", l.flip_rate * 100.0));
                        ui.label(format!("{:.3} %", l.oscillation_rate * 100.0));
                        ui.end_row();
                    }
                });
        });
}
