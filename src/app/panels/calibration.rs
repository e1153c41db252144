//! The Calibration (PTQ) tab: the observer, percentile and granularity for every layer, the
//! number of calibration and evaluation images, and "Calibrate", which calibrates the plan on a
//! worker (progress bar and ETA) and then shows float vs quantized accuracy and the per-layer
//! SQNR and clipped fractions that `qatlas ptq` prints. The calibrated ranges are the plan's for
//! every other panel (the what-if re-uses the same calibration cache).

use super::widgets::{choice, granularity_label, observer_choices, observer_label};
use crate::app::format;
use crate::app::state::{Command, FrameCtx};
use crate::app::workspace::{PlanCommand, PlanEdit, Target};
use crate::quant::plan::Granularity;
use crate::quant::{Observer, RangeMethod};
use eframe::egui::{self, RichText};
use egui_extras::{Column, TableBuilder};
use serde::{Deserialize, Serialize};
use std::time::Instant;

/// The tab's form.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct CalibrationPanel {
    pub observer: usize,
    pub percentile: f64,
    pub granularity: Granularity,
    pub calib: usize,
    pub eval: usize,
    /// When the calibration on screen started and at how many images (for the ETA).
    #[serde(skip)]
    progress_start: Option<(Instant, usize)>,
}

impl Default for CalibrationPanel {
    fn default() -> Self {
        CalibrationPanel {
            observer: 0,
            percentile: 99.99,
            granularity: Granularity::PerChannel,
            calib: crate::app::workspace::DEFAULT_CALIB_SAMPLES,
            eval: crate::app::workspace::DEFAULT_EVAL_SAMPLES,
            progress_start: None,
        }
    }
}

impl CalibrationPanel {
    fn observer(&self) -> Observer {
        let mut o = observer_choices()[self.observer.min(4)];
        if let Observer::Histogram {
            method: RangeMethod::Percentile(p),
            ..
        } = &mut o
        {
            *p = self.percentile;
        }
        o
    }

    pub fn ui(&mut self, ui: &mut egui::Ui, cx: &mut FrameCtx<'_>) {
        let ws = cx.ws;
        if let Some(reason) = &ws.blocked {
            ui.label(reason);
            return;
        }
        egui::Grid::new("calib_form").num_columns(2).show(ui, |ui| {
            ui.label("Activation observer");
            let choices = observer_choices();
            self.observer = self.observer.min(choices.len() - 1);
            choice(
                ui,
                "calib_observer",
                "activation observer",
                0.0,
                &mut self.observer,
                &[0, 1, 2, 3, 4],
                |i| observer_label(&choices[i]),
            );
            ui.end_row();
            if matches!(
                self.observer(),
                Observer::Histogram {
                    method: RangeMethod::Percentile(_),
                    ..
                }
            ) {
                ui.label("Percentile");
                ui.add(
                    egui::DragValue::new(&mut self.percentile)
                        .range(90.0..=100.0)
                        .speed(0.001),
                );
                ui.end_row();
            }
            ui.label("Weights");
            choice(
                ui,
                "calib_gran",
                "weight granularity",
                0.0,
                &mut self.granularity,
                &[Granularity::PerChannel, Granularity::PerTensor],
                |g| granularity_label(g).to_string(),
            );
            ui.end_row();
            ui.label("Calibration images");
            ui.add(
                egui::DragValue::new(&mut self.calib)
                    .range(16..=60_000)
                    .speed(10),
            );
            ui.end_row();
            ui.label("Evaluation images");
            ui.add(
                egui::DragValue::new(&mut self.eval)
                    .range(100..=10_000)
                    .speed(10),
            );
            ui.end_row();
        });
        let busy = ws.is_evaluating();
        ui.horizontal(|ui| {
            if ui
                .add_enabled(!busy, egui::Button::new(RichText::new("Calibrate").strong()))
                .on_hover_text("apply these settings to every layer, calibrate on the training split, evaluate on the test split")
                .on_disabled_hover_text("a calibration is running; a new edit cancels it")
                .clicked()
            {
                let all = Target::All;
                cx.send(Command::Plan(PlanCommand::Edit(all.clone(), PlanEdit::ActivationObserver(self.observer()))));
                cx.send(Command::Plan(PlanCommand::Edit(all, PlanEdit::Granularity(self.granularity))));
                cx.send(Command::Plan(PlanCommand::Samples {
                    eval: self.eval,
                    calib: self.calib,
                }));
                cx.send(Command::Plan(PlanCommand::Recalibrate));
            }
            ui.weak(format!(
                "the plan is calibrated on {} training images and measured on {} test images",
                ws.calib_samples, ws.eval_samples
            ));
        });
        match ws.calibrating {
            Some((done, total)) if busy => {
                let start = *self.progress_start.get_or_insert((cx.now, done));
                let f = done as f32 / total.max(1) as f32;
                let rate = (done - start.1.min(done)) as f64
                    / cx.now.duration_since(start.0).as_secs_f64().max(1e-3);
                let eta = if rate > 0.0 {
                    format!(" · ETA {:.1} s", (total - done) as f64 / rate)
                } else {
                    String::new()
                };
                ui.add(egui::ProgressBar::new(f).text(format!("calibrating {done}/{total}{eta}")));
            }
            _ if busy => {
                ui.horizontal(|ui| {
                    ui.spinner();
                    ui.label("evaluating…");
                });
            }
            _ => self.progress_start = None,
        }
        if let Some(e) = &ws.eval_error {
            ui.colored_label(ui.visuals().error_fg_color, e);
        }
        let Some(ev) = ws.eval.as_ref().map(|t| &t.value) else {
            return;
        };
        let c = &ev.eval.comparison;
        ui.separator();
        ui.label(RichText::new(format!(
            "Float {} · quantized {} ({:+.2} pp) on {} images · logits SQNR {} · calibration {:.2} s{}",
            format::percent(c.float_accuracy),
            format::percent(c.quantized_accuracy),
            (c.quantized_accuracy - c.float_accuracy) * 100.0,
            c.images,
            c.output_sqnr_db.map_or("–".into(), |v| format!("{v:.1} dB")),
            ev.seconds,
            if ev.recalibrated == 0 { " (observers cached)" } else { "" }
        )).strong());
        super::adaround::section(ui, cx);
        let fmt_db = |v: Option<f64>| v.map_or("–".into(), |v| format!("{v:.1}"));
        let fmt_pc = |v: Option<f64>| v.map_or("–".into(), |v| format!("{:.3}", v * 100.0));
        TableBuilder::new(ui)
            .id_salt("calib_table")
            .striped(true)
            .column(Column::auto().at_least(90.0))
            .columns(Column::auto(), 7)
            .header(20.0, |mut h| {
                for t in [
                    "Layer",
                    "W",
                    "A",
                    "SQNR dB",
                    "weight SQNR",
                    "clipped in %",
                    "clipped out %",
                    "weights clipped %",
                ] {
                    h.col(|ui| {
                        ui.strong(t);
                    });
                }
            })
            .body(|mut body| {
                for l in &c.layers {
                    body.row(20.0, |mut row| {
                        row.col(|ui| {
                            ui.label(&l.layer);
                        });
                        row.col(|ui| {
                            ui.label(l.precision.name());
                        });
                        row.col(|ui| {
                            ui.label(l.activations.name());
                        });
                        row.col(|ui| {
                            ui.label(fmt_db(l.sqnr_db));
                        });
                        row.col(|ui| {
                            ui.label(fmt_db(l.weight_sqnr_db));
                        });
                        row.col(|ui| {
                            ui.label(fmt_pc(l.input_clipped_fraction));
                        });
                        row.col(|ui| {
                            ui.label(fmt_pc(l.clipped_fraction));
                        });
                        row.col(|ui| {
                            ui.label(fmt_pc(l.weight_clipped_fraction));
                        });
                    });
                }
            });
    }
}
