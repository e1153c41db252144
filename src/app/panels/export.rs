//! The Export tab: write the current plan's quantized model (or the model on screen) as QDQ
//! ONNX, as the native integer bundle, or as float ONNX, to a path chosen by dialog or typed;
//! then the file's size, its ratio to the f32 parameters, and the accuracy of the file read back
//! (by the integer runtime for the bundle, by qatlas's importer for ONNX) beside the simulated
//! accuracy of the same plan on the same images.

use super::widgets::{bytes, choice};
use crate::app::export_control::ExportCommand;
use crate::app::format;
use crate::app::state::{Command, FrameCtx};
use crate::io::onnx::EXPORT_OPSETS;
use crate::jobs::ExportFormat;
use eframe::egui::{self, RichText};
use serde::{Deserialize, Serialize};
use std::path::PathBuf;

/// The tab's form.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(default)]
pub struct ExportPanel {
    pub format: ExportFormat,
    /// `None`: the lowest opset the model needs, at least 17.
    pub opset: Option<i64>,
    pub path: String,
    /// Export the finished QAT run's model instead of the plan.
    pub from_qat: bool,
}

impl Default for ExportPanel {
    fn default() -> Self {
        ExportPanel {
            format: ExportFormat::OnnxQdq,
            opset: None,
            path: String::new(),
            from_qat: false,
        }
    }
}

/// `path` with the extension of `to` when it has the one of `from` (a typed path follows the
/// format).
fn with_extension(path: &str, from: ExportFormat, to: ExportFormat) -> String {
    let suffix = |f: ExportFormat| match f {
        ExportFormat::OnnxQdq => "_qdq.onnx",
        ExportFormat::Bundle => ".int.safetensors",
        ExportFormat::OnnxFloat => "_float.onnx",
    };
    for old in [suffix(from), &format!(".{}", from.extension())] {
        if let Some(stem) = path.strip_suffix(old) {
            return format!("{stem}{}", suffix(to));
        }
    }
    path.to_string()
}

fn format_label(f: ExportFormat) -> String {
    match f {
        ExportFormat::OnnxQdq => "QDQ ONNX (ONNX Runtime, TensorRT, ...)".into(),
        ExportFormat::Bundle => "integer bundle (qatlas runtime)".into(),
        ExportFormat::OnnxFloat => "float ONNX".into(),
    }
}

impl ExportPanel {
    pub fn ui(&mut self, ui: &mut egui::Ui, cx: &mut FrameCtx<'_>) {
        if cx.live.model.is_none() {
            super::widgets::no_model(ui, cx.live);
            return;
        }
        let min_opset = cx.live.export_min_opset(cx.ws);
        egui::Grid::new("export_form")
            .num_columns(2)
            .spacing([12.0, 6.0])
            .show(ui, |ui| {
                ui.label("Source");
                let qat = cx.live.qat.as_ref().filter(|r| r.saveable().is_some());
                match qat {
                    Some(run) => {
                        ui.horizontal(|ui| {
                            ui.radio_value(&mut self.from_qat, false, "the plan (PTQ)");
                            ui.radio_value(
                                &mut self.from_qat,
                                true,
                                format!("the QAT result ({})", run.request.precision.name()),
                            );
                        });
                    }
                    None => {
                        ui.label("the plan (PTQ)").on_hover_text(
                            "After a QAT run, its model can be exported from here too",
                        );
                    }
                }
                ui.end_row();
                ui.label("Format");
                let before = self.format;
                if choice(
                    ui,
                    "export_format",
                    "Export format",
                    260.0,
                    &mut self.format,
                    &ExportFormat::ALL,
                    format_label,
                ) {
                    self.path = with_extension(&self.path, before, self.format);
                }
                ui.end_row();
                ui.label("ONNX opset");
                if self.format == ExportFormat::Bundle {
                    ui.weak("- (the bundle is qatlas's own format)");
                } else {
                    ui.horizontal(|ui| {
                        let mut auto = self.opset.is_none();
                        ui.checkbox(&mut auto, "automatic");
                        if auto {
                            self.opset = None;
                            ui.weak(format!("{}", self.effective_opset(min_opset)));
                        } else {
                            let mut v = self.opset.unwrap_or(self.effective_opset(min_opset));
                            ui.add(
                                egui::DragValue::new(&mut v)
                                    .range(*EXPORT_OPSETS.start()..=*EXPORT_OPSETS.end()),
                            );
                            self.opset = Some(v);
                        }
                        if self.format == ExportFormat::OnnxQdq && min_opset > 13 {
                            ui.weak("(4-bit grids are ONNX INT4/UINT4: opset 21)");
                        }
                    });
                }
                ui.end_row();
                ui.label("Destination");
                ui.add(
                    egui::TextEdit::singleline(&mut self.path)
                        .desired_width(360.0)
                        .hint_text(format!("/path/to/model.{}", self.format.extension())),
                );
                ui.end_row();
            });
        let blocker = cx.live.export_blocker(cx.ws, self.format);
        let opset = self.effective_opset(min_opset);
        ui.horizontal(|ui| {
            let can = blocker.is_ok();
            let r = ui.add_enabled(can, egui::Button::new("Export…"));
            if let Err(why) = &blocker {
                r.clone().on_disabled_hover_text(why.as_str());
            }
            if r.clicked() {
                cx.send(Command::Export(ExportCommand::Pick {
                    format: self.format,
                    opset,
                }));
            }
            let typed = self.path.trim();
            let r = ui.add_enabled(
                can && !typed.is_empty(),
                egui::Button::new("Export to the typed path"),
            );
            if typed.is_empty() {
                r.clone()
                    .on_disabled_hover_text("type a destination path first");
            } else if let Err(why) = &blocker {
                r.clone().on_disabled_hover_text(why.as_str());
            }
            if r.clicked() {
                cx.send(Command::Export(ExportCommand::Run {
                    format: self.format,
                    opset,
                    path: PathBuf::from(typed),
                }));
            }
            if let Some((p, _, _)) = &cx.live.export.running {
                ui.spinner();
                ui.label(format!("writing {} and reading it back…", p.display()));
            } else if let Err(why) = &blocker {
                ui.weak(why.as_str());
            }
        });
        ui.separator();
        self.result(ui, cx);
        ui.add_space(8.0);
        ui.weak(
            "ONNX Runtime's default graph optimisations fuse QDQ pairs into its own integer \
             kernels, which round differently: expect a few logits to differ there. With \
             optimisations disabled it computes what qatlas simulates.",
        );
    }

    pub fn effective_opset(&self, min_opset: i64) -> i64 {
        self.opset
            .unwrap_or(min_opset.max(crate::io::onnx::DEFAULT_OPSET))
    }

    fn result(&self, ui: &mut egui::Ui, cx: &FrameCtx<'_>) {
        let Some(done) = &cx.live.export.last else {
            ui.weak("Nothing exported yet in this session.");
            return;
        };
        let r = match &done.result {
            Ok(r) => r,
            Err(e) => {
                ui.label(RichText::new(e).color(ui.visuals().error_fg_color));
                return;
            }
        };
        let stale = done.rev.is_some_and(|rev| rev != cx.ws.rev);
        egui::Grid::new("export_result")
            .num_columns(2)
            .spacing([12.0, 4.0])
            .show(ui, |ui| {
                ui.label("Written");
                ui.label(format!("{} ({})", r.path.display(), r.format.name()));
                ui.end_row();
                ui.label("File size");
                ui.label(format!(
                    "{}, {:.2}x smaller than the f32 parameters ({})",
                    bytes(r.bytes as usize),
                    r.compression(),
                    bytes(r.float_bytes as usize)
                ));
                ui.end_row();
                if let Some((acc, n)) = r.accuracy {
                    ui.label("Accuracy of the file");
                    ui.label(format!(
                        "{} on {n} test images, {}",
                        format::percent(acc),
                        r.measured_by
                    ));
                    ui.end_row();
                    if let Some(sim) = done.simulated {
                        ui.label(if done.rev.is_some() {
                            "Plan (simulated)"
                        } else {
                            "QAT result (simulated)"
                        });
                        let d = (acc - sim) * 100.0;
                        ui.label(format!(
                            "{} on the same images: the file differs by {d:+.2} pp",
                            format::percent(sim)
                        ));
                        ui.end_row();
                    }
                }
            });
        if stale {
            ui.weak("The plan has changed since this export.");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_typed_path_follows_the_format() {
        use ExportFormat::*;
        assert_eq!(
            with_extension("/a/m_qdq.onnx", OnnxQdq, Bundle),
            "/a/m.int.safetensors"
        );
        assert_eq!(
            with_extension("/a/m.int.safetensors", Bundle, OnnxFloat),
            "/a/m_float.onnx"
        );
        assert_eq!(
            with_extension("/a/m.onnx", OnnxQdq, Bundle),
            "/a/m.int.safetensors"
        );
        assert_eq!(
            with_extension("/a/notes.txt", OnnxQdq, Bundle),
            "/a/notes.txt"
        );
    }
}
