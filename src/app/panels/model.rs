//! The model panel: what the model on screen is (name, source, architecture, input shape,
//! trainable parameters, MACs, classes, normalisation, how it was trained and the command that
//! made it) and a table of its layers. Everything shown was computed off the UI thread into a
//! [`ModelView`]; this file only lays it out.

use crate::app::format;
use crate::app::state::{FrameCtx, ModelOrigin, ModelView};
use crate::train::{OptimizerConfig, Schedule, TrainConfig};
use eframe::egui::{self, RichText};
use serde::{Deserialize, Serialize};

/// The model panel (it has no state of its own yet).
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct ModelPanel {}

impl ModelPanel {
    pub fn ui(&mut self, ui: &mut egui::Ui, cx: &mut FrameCtx<'_>) {
        ui.add_space(4.0);
        ui.heading("Model");
        ui.separator();
        let Some(view) = &cx.live.model else {
            match &cx.live.no_model_reason {
                Some(reason) => {
                    ui.label(RichText::new(reason).strong());
                }
                None if !cx.live.tasks.is_empty() => {
                    ui.horizontal(|ui| {
                        ui.spinner();
                        ui.label("Opening the model…");
                    });
                }
                None => {
                    ui.label("No model is loaded. Open one with “Open model…”, or train one from scratch.");
                }
            }
            return;
        };
        egui::ScrollArea::vertical()
            .auto_shrink([false, false])
            .show(ui, |ui| {
                facts(ui, view);
                ui.add_space(8.0);
                ui.separator();
                ui.strong("Layers");
                layers(ui, view);
            });
    }
}

pub fn facts(ui: &mut egui::Ui, view: &ModelView) {
    let m = &view.model;
    // Long values wrap inside the panel instead of widening it.
    let value_width = (ui.available_width() - 170.0).max(160.0);
    let wrapped = |ui: &mut egui::Ui, text: RichText| ui.add(egui::Label::new(text).wrap());
    egui::Grid::new("model_facts")
        .num_columns(2)
        .spacing([16.0, 4.0])
        .max_col_width(value_width)
        .show(ui, |ui| {
            ui.label("Name");
            ui.strong(&m.graph.name);
            ui.end_row();

            ui.label("Source");
            match &view.origin {
                ModelOrigin::File(p) => {
                    wrapped(ui, RichText::new(p.display().to_string()).monospace())
                }
                ModelOrigin::Trained { stopped_early } => {
                    let note = if *stopped_early {
                        " (stopped early)"
                    } else {
                        ""
                    };
                    ui.label(
                        RichText::new(format!("trained in this session{note}, not saved"))
                            .color(ui.visuals().warn_fg_color),
                    )
                }
            };
            ui.end_row();

            ui.label("Architecture");
            ui.label(
                m.meta
                    .arch
                    .as_deref()
                    .unwrap_or("not a built-in architecture"),
            );
            ui.end_row();

            ui.label("Input shape");
            ui.label(format!("{} (C×H×W)", format::shape(&m.graph.input_shape)));
            ui.end_row();

            ui.label("Trainable parameters");
            ui.label(format::thousands(view.trainable as u64));
            ui.end_row();

            ui.label("MACs per image");
            match &view.layers {
                Ok(_) => ui.label(format!(
                    "{} ({})",
                    format::si(view.total_macs()),
                    format::thousands(view.total_macs())
                )),
                Err(_) => ui.weak("unknown"),
            };
            ui.end_row();

            ui.label("Classes");
            ui.label(classes(&m.meta.class_names));
            ui.end_row();

            ui.label("Normalisation");
            let n = &m.meta.normalization;
            wrapped(
                ui,
                RichText::new(format!("mean {:?}, std {:?}", n.mean, n.std)),
            );
            ui.end_row();

            ui.label("Training");
            match &m.meta.train_config {
                Some(cfg) => wrapped(ui, RichText::new(describe_config(cfg))),
                None => ui.weak("no record"),
            };
            ui.end_row();

            let last_eval = m
                .meta
                .history
                .as_ref()
                .and_then(|h| h.epochs.last())
                .and_then(|r| r.eval.as_ref());
            if let Some(e) = last_eval {
                ui.label("Test accuracy (stored)");
                ui.label(format!(
                    "{} on {} images",
                    format::percent(e.accuracy),
                    format::thousands(e.images as u64)
                ));
                ui.end_row();
            }

            ui.label("Made by");
            match &m.meta.command {
                Some(c) => wrapped(ui, RichText::new(c).monospace()),
                None => ui.weak("unknown"),
            };
            ui.end_row();
        });
}

fn layers(ui: &mut egui::Ui, view: &ModelView) {
    let rows = match &view.layers {
        Ok(rows) => rows,
        Err(e) => {
            ui.colored_label(ui.visuals().error_fg_color, e);
            return;
        }
    };
    // Numbers are right-aligned by padding in a monospace font, which keeps the grid simple.
    let num =
        |ui: &mut egui::Ui, s: String| ui.label(RichText::new(format!("{s:>11}")).monospace());
    egui::Grid::new("model_layers")
        .num_columns(6)
        .striped(true)
        .spacing([12.0, 3.0])
        .show(ui, |ui| {
            for h in ["#", "Layer", "Op", "Output", "Params", "MACs"] {
                ui.strong(h);
            }
            ui.end_row();
            for (i, r) in rows.iter().enumerate() {
                ui.label(RichText::new(i.to_string()).weak());
                ui.monospace(&r.name);
                ui.label(&r.op);
                ui.monospace(format::shape(&r.output_shape));
                num(
                    ui,
                    if r.params == 0 {
                        "–".into()
                    } else {
                        format::thousands(r.params as u64)
                    },
                );
                num(
                    ui,
                    if r.macs == 0 {
                        "–".into()
                    } else {
                        format::si(r.macs)
                    },
                );
                ui.end_row();
            }
            ui.label("");
            ui.strong("Total");
            ui.label(format!("{} layers", rows.len()));
            ui.label("");
            num(
                ui,
                format::thousands(rows.iter().map(|r| r.params as u64).sum()),
            );
            num(ui, format::si(view.total_macs()));
            ui.end_row();
        });
}

/// The class list, abbreviated past eight names.
fn classes(names: &[String]) -> String {
    match names.len() {
        0 => "unknown".to_string(),
        n if n <= 8 => format!("{n}: {}", names.join(", ")),
        n => format!("{n}: {}, …, {}", names[..6].join(", "), names[n - 1]),
    }
}

/// One line describing a training configuration.
pub fn describe_config(cfg: &TrainConfig) -> String {
    let opt = match &cfg.optimizer {
        OptimizerConfig::AdamW {
            lr, weight_decay, ..
        } => format!(
            "AdamW (lr {}, weight decay {})",
            format::small(*lr),
            format::small(*weight_decay)
        ),
        OptimizerConfig::Sgd {
            lr,
            momentum,
            nesterov,
            weight_decay,
        } => format!(
            "SGD (lr {}, momentum {}{}, weight decay {})",
            format::small(*lr),
            format::small(*momentum),
            if *nesterov { ", Nesterov" } else { "" },
            format::small(*weight_decay)
        ),
    };
    let schedule = match &cfg.schedule {
        Schedule::Constant => "constant rate".to_string(),
        Schedule::Step {
            every_epochs,
            gamma,
        } => format!("×{} every {every_epochs} epochs", format::small(*gamma)),
        Schedule::Cosine { warmup_steps, .. } => format!("cosine, {warmup_steps} warm-up steps"),
    };
    let epochs = if cfg.epochs == 1 {
        "1 epoch".to_string()
    } else {
        format!("{} epochs", cfg.epochs)
    };
    format!(
        "{epochs}, batch {}, {opt}, {schedule}, seed {}",
        cfg.batch_size, cfg.seed
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn describes_the_default_configuration() {
        assert_eq!(
            describe_config(&TrainConfig::default()),
            "2 epochs, batch 64, AdamW (lr 0.002, weight decay 1e-4), cosine, 100 warm-up steps, seed 0"
        );
    }

    #[test]
    fn abbreviates_long_class_lists() {
        let names: Vec<String> = (0..10).map(|i| i.to_string()).collect();
        assert_eq!(classes(&names), "10: 0, 1, 2, 3, 4, 5, …, 9");
        assert_eq!(classes(&names[..2]), "2: 0, 1");
        assert_eq!(classes(&[]), "unknown");
    }
}
