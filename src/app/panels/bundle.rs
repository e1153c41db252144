//! An integer bundle on screen (read only): its layers as the runtime stores and runs them
//! (left, in place of the layers table) and its facts with the accuracy measured on the
//! integer runtime (Model & data tab).

use crate::app::format;
use crate::app::panels::widgets::bytes;
use crate::app::state::{BundleView, Command, FrameCtx};
use crate::runtime::WeightStorage;
use eframe::egui::{self, RichText};

fn storage(s: WeightStorage) -> &'static str {
    match s {
        WeightStorage::S8 => "int8",
        WeightStorage::Int4 { .. } => "int4",
        WeightStorage::F16 => "fp16",
        WeightStorage::F32 => "fp32",
    }
}

/// The bundle's layers, in place of the layers table.
pub fn layers(ui: &mut egui::Ui, b: &BundleView) {
    ui.horizontal(|ui| {
        ui.heading("Layers");
        ui.weak(format!("{} · integer bundle", b.model.spec().name));
    });
    ui.weak("Stored as the integer runtime runs them (read only).");
    egui::Grid::new("bundle_layers")
        .num_columns(5)
        .striped(true)
        .spacing([12.0, 4.0])
        .show(ui, |ui| {
            for h in ["Layer", "Weights", "Compute", "Kernel", "Bytes"] {
                ui.strong(h);
            }
            ui.end_row();
            for l in &b.layers {
                ui.label(&l.name);
                ui.label(storage(l.storage));
                ui.label(l.compute);
                ui.label(l.kernel.unwrap_or("—"));
                ui.label(bytes(l.weight_bytes));
                ui.end_row();
            }
        });
}

/// The bundle's facts and its measured accuracy (Model & data tab).
pub fn details(ui: &mut egui::Ui, cx: &mut FrameCtx<'_>, b: &BundleView) {
    ui.heading("Integer bundle");
    let spec = b.model.spec();
    egui::Grid::new("bundle_facts")
        .num_columns(2)
        .spacing([12.0, 4.0])
        .show(ui, |ui| {
            ui.label("File");
            ui.monospace(b.path.display().to_string());
            ui.end_row();
            ui.label("Size");
            ui.label(format!(
                "{} (weights and biases {})",
                bytes(b.file_bytes as usize),
                bytes(b.model.weight_bytes())
            ));
            ui.end_row();
            ui.label("Input");
            ui.label(format::shape(&spec.input_shape));
            ui.end_row();
            ui.label("Normalisation");
            ui.label(format!(
                "mean {:?}, std {:?}",
                spec.normalization.mean, spec.normalization.std
            ));
            ui.end_row();
            ui.label("Requantization");
            ui.label(format!("{:?}", spec.requantization));
            ui.end_row();
        });
    ui.horizontal(|ui| {
        if ui
            .button("Evaluate on the test split")
            .on_hover_text("Runs the bundle on the integer runtime")
            .clicked()
        {
            cx.send(Command::EvaluateBundle);
        }
        match &b.eval {
            Some(Ok((acc, n))) => {
                ui.label(
                    RichText::new(format!(
                        "accuracy {} on {} images (integer runtime)",
                        format::percent(*acc),
                        format::thousands(*n as u64)
                    ))
                    .strong(),
                );
            }
            Some(Err(e)) => {
                ui.colored_label(ui.visuals().error_fg_color, e);
            }
            None => {
                ui.weak("not measured yet");
            }
        }
    });
}
