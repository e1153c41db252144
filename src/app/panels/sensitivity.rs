//! The Sensitivity tab: settings (only-this-layer / all-but-this-layer / both; int8, int4 or
//! W4A4; number of images), Run and Cancel, a bar per layer that fills in as each result
//! arrives (accuracy drop in pp) with the layer's SQNR as a second chart, click a bar to select
//! the layer, and "keep the N most sensitive layers at int8 / fp16" which writes a plan.

use super::widgets::choice;
use crate::analysis::sensitivity::SweepMode;
use crate::app::state::{Command, FrameCtx};
use crate::app::workspace::{PlanCommand, SweepSettings};
use crate::quant::plan::Precision;
use eframe::egui::{self, Color32, RichText};
use egui_plot::{Bar, BarChart, Legend, Plot};
use serde::{Deserialize, Serialize};

/// The tab's own state: the form and the rule's settings.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct SensitivityPanel {
    #[serde(skip)]
    pub form: SweepSettings,
    pub keep_n: usize,
    pub keep_at: Precision,
}

impl Default for SensitivityPanel {
    fn default() -> Self {
        SensitivityPanel {
            form: SweepSettings::default(),
            keep_n: 1,
            keep_at: Precision::Int8,
        }
    }
}

fn mode_label(m: SweepMode) -> &'static str {
    match m {
        SweepMode::Only => "only this layer",
        SweepMode::AllBut => "all but this layer",
        SweepMode::Both => "both",
    }
}

impl SensitivityPanel {
    pub fn ui(&mut self, ui: &mut egui::Ui, cx: &mut FrameCtx<'_>) {
        let ws = cx.ws;
        if let Some(reason) = &ws.blocked {
            ui.label(reason);
            return;
        }
        let running = cx.plan_busy.sweep;
        ui.horizontal_wrapped(|ui| {
            ui.label("Mode");
            let modes = [SweepMode::Only, SweepMode::AllBut, SweepMode::Both];
            choice(
                ui,
                "sweep_mode",
                "sweep mode",
                0.0,
                &mut self.form.mode,
                &modes,
                |m| mode_label(m).to_string(),
            );
            ui.label("precision");
            let mut prec = (self.form.weights, self.form.a4);
            let precs = [
                (Precision::Int8, false),
                (Precision::Int4, false),
                (Precision::Int4, true),
            ];
            choice(
                ui,
                "sweep_precision",
                "sweep precision",
                0.0,
                &mut prec,
                &precs,
                |p| {
                    SweepSettings {
                        weights: p.0,
                        a4: p.1,
                        ..self.form
                    }
                    .label()
                },
            );
            (self.form.weights, self.form.a4) = prec;
            ui.label("images");
            ui.add(
                egui::DragValue::new(&mut self.form.samples)
                    .range(50..=10_000)
                    .speed(10),
            );
            if running {
                if ui.button("Cancel").clicked() {
                    cx.send(Command::Plan(PlanCommand::CancelSweep));
                }
                ui.spinner();
            } else if ui
                .button("Run sweep")
                .on_hover_text("quantize the layers one at a time (one shared calibration)")
                .clicked()
            {
                cx.send(Command::Plan(PlanCommand::Sweep(self.form)));
            }
        });
        let sw = &ws.sweep;
        if let Some(e) = &sw.error {
            ui.colored_label(ui.visuals().error_fg_color, e);
        }
        let Some(settings) = sw.settings else {
            ui.weak(
                "No sweep yet. Run one to see which layers lose the most accuracy when quantized.",
            );
            return;
        };
        ui.horizontal_wrapped(|ui| {
            ui.label(format!(
                "{} · {}",
                settings.label(),
                mode_label(settings.mode)
            ));
            if let (Some(f), Some(q)) = (sw.float_accuracy, sw.quantized_accuracy) {
                ui.label(format!(
                    "float {:.2} % · all layers quantized {:.2} % · {} of {} layers done{}",
                    f * 100.0,
                    q * 100.0,
                    sw.rows.len(),
                    ws.plan.as_ref().map_or(0, |p| p.layers.len()),
                    if sw.cached { " (cached)" } else { "" }
                ));
            }
        });
        // Bars in plan order; missing rows stay empty until they arrive.
        let order: Vec<String> = ws
            .plan
            .as_ref()
            .map(|p| p.layers.iter().map(|l| l.layer.clone()).collect())
            .unwrap_or_default();
        let mut only = Vec::new();
        let mut allbut = Vec::new();
        let mut sqnr = Vec::new();
        for (i, name) in order.iter().enumerate() {
            let Some(r) = sw.rows.get(name) else { continue };
            let sel = ws.selected.as_deref() == Some(name.as_str());
            let stroke = |b: Bar| {
                if sel {
                    b.fill(Color32::from_rgb(250, 220, 90))
                } else {
                    b
                }
            };
            if let Some(d) = r.only_drop_pp {
                only.push(stroke(Bar::new(i as f64 - 0.2, d).width(0.38).name(name)));
            }
            if let Some(g) = r.all_but_gain_pp {
                allbut.push(stroke(Bar::new(i as f64 + 0.2, g).width(0.38).name(name)));
            }
            if let Some(s) = r.layer_sqnr_db {
                sqnr.push(stroke(Bar::new(i as f64, s).width(0.6).name(name)));
            }
        }
        let h = ((ui.available_height() - 90.0) * 0.55).clamp(120.0, 320.0);
        let labels = order.clone();
        let fmt_x = move |m: egui_plot::GridMark, _r: &std::ops::RangeInclusive<f64>| {
            let i = m.value.round();
            if (m.value - i).abs() < 1e-6 && i >= 0.0 {
                labels.get(i as usize).cloned().unwrap_or_default()
            } else {
                String::new()
            }
        };
        let mut clicked = None;
        Plot::new("sensitivity_bars")
            .height(h)
            .legend(Legend::default())
            .allow_drag(false)
            .allow_zoom(false)
            .allow_scroll(false)
            .y_axis_label("accuracy (pp)")
            .x_axis_formatter(fmt_x.clone())
            .show(ui, |p| {
                p.bar_chart(
                    BarChart::new("drop, only this layer quantized", only)
                        .color(Color32::from_rgb(220, 120, 60)),
                );
                p.bar_chart(
                    BarChart::new("gain, all but this layer quantized", allbut)
                        .color(Color32::from_rgb(90, 160, 220)),
                );
                if p.response().clicked()
                    && let Some(pt) = p.pointer_coordinate()
                {
                    clicked = Some(pt.x.round());
                }
            });
        Plot::new("sensitivity_sqnr")
            .height(h * 0.6)
            .allow_drag(false)
            .allow_zoom(false)
            .allow_scroll(false)
            .y_axis_label("SQNR (dB)")
            .x_axis_formatter(fmt_x)
            .show(ui, |p| {
                p.bar_chart(
                    BarChart::new("layer output SQNR, only this layer quantized", sqnr)
                        .color(Color32::from_rgb(120, 190, 120)),
                );
                if p.response().clicked()
                    && let Some(pt) = p.pointer_coordinate()
                {
                    clicked = Some(pt.x.round());
                }
            });
        if let Some(x) = clicked
            && x >= 0.0
            && let Some(name) = order.get(x as usize)
        {
            cx.send(Command::Plan(PlanCommand::Select(name.clone())));
        }
        ui.separator();
        ui.horizontal_wrapped(|ui| {
            ui.label("Keep the");
            ui.add(egui::DragValue::new(&mut self.keep_n).range(0..=order.len().max(1)));
            ui.label("most sensitive layers at");
            let keep = [Precision::Int8, Precision::Fp16, Precision::Fp32];
            choice(
                ui,
                "keep_at",
                "keep at precision",
                0.0,
                &mut self.keep_at,
                &keep,
                |p| p.name().to_string(),
            );
            ui.label(format!("and the rest at {}", settings.label()));
            let ready = !sw.rows.is_empty() && !running;
            let r = ui.add_enabled(ready, egui::Button::new("Write plan"));
            if !ready {
                r.on_disabled_hover_text("wait for the sweep to finish");
            } else if r.clicked() {
                cx.send(Command::Plan(PlanCommand::KeepSensitive {
                    n: self.keep_n,
                    keep: self.keep_at,
                }));
            }
        });
        let ranked = ws.ranked_layers();
        if !ranked.is_empty() {
            let top: Vec<String> = ranked
                .iter()
                .take(self.keep_n.max(1))
                .map(|(n, d)| format!("{n} ({d:.2} pp)"))
                .collect();
            ui.label(RichText::new(format!("Most sensitive: {}", top.join(", "))).weak());
        }
    }
}
