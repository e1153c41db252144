//! The actions panel: the dataset in use, "Evaluate on test set" with its measured accuracy, loss
//! and throughput, "Train from scratch" (architecture, epochs and peak learning rate; everything
//! else is the training defaults), and "Save as…". Its own state is the training form, which a
//! session would persist; every action is sent as a [`Command`].

use crate::app::format;
use crate::app::state::{Command, FrameCtx, Loadable, ModelOrigin, TrainRequest, arch_of};
use crate::data::Dataset;
use crate::train::TrainConfig;
use crate::zoo::Arch;
use eframe::egui::{self, RichText};
use serde::{Deserialize, Serialize};
use std::sync::Arc;

/// The actions panel and its training form.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ActionsPanel {
    pub arch: Arch,
    pub epochs: usize,
    pub lr: f32,
    /// The model whose architecture the form last took (the form follows the model on screen).
    #[serde(skip)]
    synced_model: Option<u64>,
}

impl Default for ActionsPanel {
    fn default() -> Self {
        let d = TrainConfig::default();
        ActionsPanel {
            arch: Arch::SeedCnn,
            epochs: d.epochs,
            lr: d.optimizer.lr(),
            synced_model: None,
        }
    }
}

impl ActionsPanel {
    pub fn ui(&mut self, ui: &mut egui::Ui, cx: &mut FrameCtx<'_>) {
        self.follow_model(cx);
        ui.add_space(4.0);
        ui.heading("Actions");
        ui.separator();
        egui::ScrollArea::vertical()
            .auto_shrink([false, false])
            .show(ui, |ui| {
                self.data_section(ui, cx);
                ui.separator();
                self.evaluate_section(ui, cx);
                ui.separator();
                self.train_section(ui, cx);
                ui.separator();
                self.save_section(ui, cx);
            });
    }

    /// Takes the architecture of a newly shown model, so "Train from scratch" retrains it.
    fn follow_model(&mut self, cx: &FrameCtx<'_>) {
        let Some(view) = &cx.live.model else { return };
        if self.synced_model != Some(view.id) {
            self.synced_model = Some(view.id);
            if let Some(a) = arch_of(&view.model) {
                self.arch = a;
            }
        }
    }

    fn data_section(&mut self, ui: &mut egui::Ui, cx: &mut FrameCtx<'_>) {
        ui.strong("Data");
        ui.horizontal_wrapped(|ui| {
            ui.monospace(cx.live.data.dir.display().to_string());
        });
        egui::Grid::new("data_splits")
            .num_columns(2)
            .show(ui, |ui| {
                split_row(ui, "Training set", &cx.live.data.train);
                split_row(ui, "Test set", &cx.live.data.test);
            });
        let failed = |l: &Loadable<Arc<Dataset>>| matches!(l, Loadable::Failed(_));
        if failed(&cx.live.data.train) || failed(&cx.live.data.test) {
            ui.add(
                egui::Label::new(
                    RichText::new(
                        "Evaluation and training need a dataset folder: MNIST-style IDX files \
                         (like assets/mnist), .npz/.npy files, or train/ and test/ image folders.",
                    )
                    .weak(),
                )
                .wrap(),
            );
        }
        if ui
            .button("Data folder…")
            .on_hover_text(
                "Choose a dataset folder (MNIST-style IDX files, .npz/.npy, or image folders)",
            )
            .clicked()
        {
            cx.send(Command::PickDataDir);
        }
    }

    fn evaluate_section(&mut self, ui: &mut egui::Ui, cx: &mut FrameCtx<'_>) {
        ui.strong("Evaluate");
        let blocker = cx.live.evaluate_blocker();
        let running = cx.live.evaluation.is_some();
        ui.horizontal(|ui| {
            let button = ui.add_enabled(blocker.is_ok(), egui::Button::new("Evaluate on test set"));
            if button.clicked() {
                cx.send(Command::Evaluate);
            }
            if running {
                ui.spinner();
                ui.label("evaluating…");
            }
        });
        if let (Err(reason), false) = (&blocker, running) {
            ui.weak(reason);
        }
        if let Some(r) = cx.live.current_eval() {
            egui::Grid::new("eval_result")
                .num_columns(2)
                .show(ui, |ui| {
                    ui.label("Accuracy");
                    ui.strong(format::percent(r.accuracy));
                    ui.end_row();
                    ui.label("Loss");
                    ui.label(format!("{:.4}", r.loss));
                    ui.end_row();
                    ui.label("Images");
                    ui.label(format::thousands(r.images as u64));
                    ui.end_row();
                    ui.label("Throughput");
                    ui.label(format::images_per_s(r.images_per_s));
                    ui.end_row();
                });
        }
    }

    fn train_section(&mut self, ui: &mut egui::Ui, cx: &mut FrameCtx<'_>) {
        ui.strong("Train from scratch");
        let blocker = cx.live.train_blocker();
        let model_arch = cx.live.model.as_ref().and_then(|v| arch_of(&v.model));
        egui::Grid::new("train_form").num_columns(2).show(ui, |ui| {
            ui.label("Architecture");
            super::widgets::choice(
                ui,
                "train_arch",
                "architecture",
                0.0,
                &mut self.arch,
                &Arch::ALL,
                |a| a.name().to_string(),
            );
            ui.end_row();
            ui.label("Epochs");
            ui.add(egui::DragValue::new(&mut self.epochs).range(1..=100));
            ui.end_row();
            ui.label("Learning rate");
            // Dragging changes the rate by about 1 % per point: useful across decades.
            let speed = (self.lr as f64 * 0.01).max(1e-7);
            ui.add(
                egui::DragValue::new(&mut self.lr)
                    .range(1e-6..=1.0)
                    .speed(speed)
                    .custom_formatter(|v, _| format::small(v as f32)),
            );
            ui.end_row();
        });
        let d = TrainConfig::default();
        ui.weak(format!(
            "batch {}, AdamW, cosine schedule, seed {} (defaults)",
            d.batch_size, d.seed
        ));
        if cx.live.model.is_some() && model_arch.is_none() {
            ui.weak("The model on screen is not a built-in architecture; pick one to train.");
        }
        let clicked = ui
            .add_enabled(blocker.is_ok(), egui::Button::new("Train from scratch"))
            .clicked();
        if clicked {
            cx.send(Command::Train(TrainRequest {
                arch: self.arch,
                epochs: self.epochs,
                lr: self.lr,
            }));
        }
        if let Err(reason) = &blocker {
            ui.weak(reason);
        }
        ui.weak("The trained model replaces the one on screen when it finishes.");
    }

    fn save_section(&mut self, ui: &mut egui::Ui, cx: &mut FrameCtx<'_>) {
        ui.strong("Save");
        let blocker = cx.live.save_blocker();
        let button = ui
            .add_enabled(blocker.is_ok(), egui::Button::new("Save as…"))
            .on_hover_text("Write the model on screen to a .safetensors file");
        if button.clicked() {
            cx.send(Command::PickSavePath);
        }
        if let Some(ModelOrigin::Trained { .. }) = cx.live.model.as_ref().map(|v| &v.origin) {
            ui.label(
                RichText::new("The trained model is not saved yet.")
                    .color(ui.visuals().warn_fg_color),
            );
        }
    }
}

fn split_row(ui: &mut egui::Ui, name: &str, slot: &Loadable<Arc<Dataset>>) {
    ui.label(name);
    match slot {
        Loadable::Loading => {
            ui.horizontal(|ui| {
                ui.spinner();
                ui.label("loading…");
            });
        }
        Loadable::Ready(d) => {
            ui.label(describe_dataset(d));
        }
        Loadable::Failed(e) => {
            ui.add(egui::Label::new(RichText::new(e).color(ui.visuals().error_fg_color)).wrap());
        }
    }
    ui.end_row();
}

/// `"60,000 images, 1×28×28, 10 classes"`.
pub fn describe_dataset(d: &Dataset) -> String {
    format!(
        "{} images, {}, {} classes",
        format::thousands(d.n as u64),
        format::shape(&d.image_shape()),
        d.num_classes
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::Pixels;

    #[test]
    fn describes_a_dataset() {
        let d = Dataset::new(
            "t",
            Pixels::U8(vec![0; 3 * 4]),
            vec![0, 1, 2],
            [1, 2, 2],
            vec![],
        )
        .unwrap();
        assert_eq!(describe_dataset(&d), "3 images, 1×2×2, 3 classes");
    }

    #[test]
    fn the_form_starts_from_the_training_defaults() {
        let p = ActionsPanel::default();
        assert_eq!((p.arch, p.epochs, p.lr), (Arch::SeedCnn, 2, 2e-3));
    }
}
