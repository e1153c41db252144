//! The Model & data tab: the dataset folder (dialog or typed path), the normalisation the
//! model's inputs get (presets MNIST / ImageNet / none, or mean and std per channel: ONNX files
//! do not carry theirs), evaluation of the float model on the test split, and the model's facts.

use crate::app::format;
use crate::app::state::{Command, FrameCtx, Loadable};
use crate::data::{Dataset, ImageTransform, Normalization};
use eframe::egui::{self, RichText};
use serde::{Deserialize, Serialize};
use std::path::PathBuf;
use std::sync::Arc;

/// The tab's own state: the typed paths and the normalisation being edited.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct DataPanel {
    pub data_path: String,
    pub model_path: String,
    /// Mean and std as typed (comma-separated), for the model on screen.
    #[serde(skip)]
    norm_text: Option<(u64, String, String)>,
    /// The resize and crop being edited, with the loaded one it started from (a new load
    /// resets the form).
    #[serde(skip)]
    transform: Option<(ImageTransform, ImageTransform)>,
}

/// Named normalisations.
pub fn presets() -> [(&'static str, Normalization); 3] {
    [
        ("MNIST", Normalization::mnist()),
        ("ImageNet", Normalization::imagenet()),
        ("none", Normalization::identity()),
    ]
}

fn join(v: &[f32]) -> String {
    v.iter()
        .map(|x| format!("{x}"))
        .collect::<Vec<_>>()
        .join(", ")
}

fn parse(s: &str) -> Result<Vec<f32>, String> {
    s.split(',')
        .map(|t| {
            t.trim()
                .parse::<f32>()
                .map_err(|_| format!("'{}' is not a number", t.trim()))
        })
        .collect()
}

fn split_row(ui: &mut egui::Ui, name: &str, l: &Loadable<Arc<Dataset>>) {
    ui.label(name);
    match l {
        Loadable::Loading => {
            ui.horizontal(|ui| {
                ui.spinner();
                ui.label("loading…");
            });
        }
        Loadable::Ready(d) => {
            let streamed = if d.is_streamed() {
                ", decoded from disk per batch"
            } else {
                ""
            };
            ui.label(format!(
                "{} images, {} classes, {}{streamed}",
                format::thousands(d.len() as u64),
                d.num_classes,
                format::shape(&d.image_shape())
            ));
        }
        Loadable::Failed(e) => {
            // The whole text is in the status line's details and on hover.
            let text = egui::RichText::new(e).color(ui.visuals().error_fg_color);
            ui.add(egui::Label::new(text).truncate()).on_hover_text(e);
        }
    }
    ui.end_row();
}

impl DataPanel {
    /// Resize and crop for image folders (torchvision's evaluation transform).
    fn transform_ui(&mut self, ui: &mut egui::Ui, cx: &mut FrameCtx<'_>) {
        let loaded = cx.live.data.transform;
        // The model's own input size, for "fit to the model" (C x H x W inputs only).
        let model_hw = cx
            .live
            .model
            .as_ref()
            .and_then(|v| match v.model.graph.input_shape[..] {
                [_, h, w] => Some((h as u32, w as u32)),
                _ => None,
            });
        if self.transform.is_none_or(|(seen, _)| seen != loaded) {
            self.transform = Some((loaded, loaded));
        }
        let Some((_, t)) = &mut self.transform else {
            return;
        };
        ui.horizontal_wrapped(|ui| {
            ui.label("Image folders:");
            let mut resize = t.resize.is_some();
            ui.checkbox(&mut resize, "resize shorter side to");
            let mut side = t.resize.unwrap_or(256);
            ui.add_enabled(resize, egui::DragValue::new(&mut side).range(1..=4096));
            t.resize = resize.then_some(side);
            let mut crop = t.crop.is_some();
            ui.checkbox(&mut crop, "centre crop");
            let (mut h, mut w) = t.crop.unwrap_or((224, 224));
            ui.add_enabled(crop, egui::DragValue::new(&mut h).range(1..=4096));
            ui.label("x");
            ui.add_enabled(crop, egui::DragValue::new(&mut w).range(1..=4096));
            t.crop = crop.then_some((h, w));
            if ui
                .button("ImageNet")
                .on_hover_text("resize 256, centre crop 224 (torchvision's evaluation transform)")
                .clicked()
            {
                *t = ImageTransform::imagenet();
            }
            if let Some((h, w)) = model_hw {
                let fit = ImageTransform {
                    resize: Some((h.min(w) * 256).div_ceil(224)),
                    crop: Some((h, w)),
                };
                let text = format!(
                    "resize {}, centre crop {h}x{w}: the model's input, with ImageNet's 256/224 margin",
                    fit.resize.unwrap_or(0)
                );
                if ui
                    .button(format!("Model input {h}x{w}"))
                    .on_hover_text(text)
                    .clicked()
                {
                    *t = fit;
                }
            }
            if ui
                .button("As stored")
                .on_hover_text("no resize, no crop")
                .clicked()
            {
                *t = ImageTransform::none();
            }
            let changed = *t != loaded;
            let r = ui.add_enabled(changed, egui::Button::new("Reload with these"));
            if !changed {
                r.on_disabled_hover_text("the splits on screen were loaded with these settings");
            } else if r.clicked() {
                cx.send(Command::SetImageTransform(*t));
            }
        });
        ui.weak(
            "applies to train/ and test/ folders of JPEG/PNG (IDX and .npz data keep their size); \
             large splits are decoded from disk per batch",
        );
    }

    pub fn ui(&mut self, ui: &mut egui::Ui, cx: &mut FrameCtx<'_>) {
        ui.heading("Data");
        ui.horizontal_wrapped(|ui| {
            ui.label("Folder");
            ui.monospace(cx.live.data.dir.display().to_string());
            if ui.button("Choose…").clicked() {
                cx.send(Command::PickDataDir);
            }
        });
        ui.horizontal(|ui| {
            if self.data_path.is_empty() {
                self.data_path = cx.live.data.dir.display().to_string();
            }
            ui.add(
                egui::TextEdit::singleline(&mut self.data_path)
                    .desired_width(320.0)
                    .hint_text("a dataset folder"),
            );
            if ui
                .button("Open folder")
                .on_hover_text(
                    "open the typed folder (IDX, .npz/.npy or train/ test/ image folders)",
                )
                .clicked()
            {
                cx.send(Command::OpenData(PathBuf::from(self.data_path.trim())));
            }
        });
        egui::Grid::new("data_splits")
            .num_columns(2)
            .show(ui, |ui| {
                split_row(ui, "Training split", &cx.live.data.train);
                split_row(ui, "Test split", &cx.live.data.test);
            });
        self.transform_ui(ui, cx);
        ui.separator();
        ui.heading("Model");
        ui.horizontal(|ui| {
            ui.add(
                egui::TextEdit::singleline(&mut self.model_path)
                    .desired_width(320.0)
                    .hint_text("path of a .safetensors or .onnx model"),
            );
            let r = ui.add_enabled(
                !self.model_path.trim().is_empty(),
                egui::Button::new("Open model"),
            );
            if self.model_path.trim().is_empty() {
                r.on_disabled_hover_text("type a path first (or use Open model… in the top bar)");
            } else if r.clicked() {
                cx.send(Command::OpenModel(PathBuf::from(self.model_path.trim())));
            }
        });
        let Some(view) = &cx.live.model else {
            super::widgets::no_model(ui, cx.live);
            return;
        };
        ui.add_space(4.0);
        ui.strong("Normalisation of the model's inputs");
        ui.weak("pixels are scaled to [0, 1], then (x − mean) / std per channel; ONNX files carry no preprocessing");
        let norm = &view.model.meta.normalization;
        let text = self
            .norm_text
            .get_or_insert_with(|| (view.id, join(&norm.mean), join(&norm.std)));
        if text.0 != view.id {
            *text = (view.id, join(&norm.mean), join(&norm.std));
        }
        ui.horizontal_wrapped(|ui| {
            ui.label("Presets:");
            for (name, p) in presets() {
                let on = *norm == p;
                if ui.selectable_label(on, name).clicked() && !on {
                    cx.send(Command::SetNormalization(p));
                }
            }
        });
        let mut apply = None;
        egui::Grid::new("norm_form").num_columns(2).show(ui, |ui| {
            ui.label("mean");
            ui.add(egui::TextEdit::singleline(&mut text.1).desired_width(220.0));
            ui.end_row();
            ui.label("std");
            ui.add(egui::TextEdit::singleline(&mut text.2).desired_width(220.0));
            ui.end_row();
        });
        let parsed = parse(&text.1).and_then(|mean| {
            Ok(Normalization {
                mean,
                std: parse(&text.2)?,
            })
        });
        ui.horizontal(|ui| {
            let channels = view.model.graph.input_shape[0];
            let check = parsed
                .clone()
                .and_then(|n| n.validate(channels).map(|_| n).map_err(|e| e.to_string()));
            match &check {
                Ok(n) if n == norm => {
                    ui.weak("in use");
                }
                Ok(n) => {
                    if ui.button("Apply").clicked() {
                        apply = Some(n.clone());
                    }
                }
                Err(e) => {
                    ui.colored_label(ui.visuals().error_fg_color, e);
                }
            }
        });
        if let Some(n) = apply {
            cx.send(Command::SetNormalization(n));
        }
        ui.separator();
        ui.horizontal(|ui| {
            let blocker = cx.live.evaluate_blocker();
            let r = ui.add_enabled(
                blocker.is_ok(),
                egui::Button::new("Evaluate float model on the test split"),
            );
            match blocker {
                Err(why) => {
                    r.on_disabled_hover_text(why);
                }
                Ok(()) if r.clicked() => cx.send(Command::Evaluate),
                Ok(()) => {}
            }
            if let Some(e) = cx.live.current_eval() {
                ui.label(
                    RichText::new(format!(
                        "accuracy {} · loss {:.4} on {} images",
                        format::percent(e.accuracy),
                        e.loss,
                        format::thousands(e.images as u64)
                    ))
                    .strong(),
                );
            }
        });
        ui.separator();
        super::model::facts(ui, view);
    }
}
