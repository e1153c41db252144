//! The quantization-aware training panel (the centre's "Quantization-aware training" tab): the
//! form (precision int8 / W4A8 / W4A4, epochs, learning rate, LSQ, BatchNorm and observer
//! freezing, an optional training-image limit) with Start, then the run: progress with Pause,
//! Resume and Stop, the float / PTQ-start / QAT accuracies, freeze and checkpoint notices, the
//! live loss curve, fake-quant test accuracy per epoch, and every quantizer's current scale;
//! once finished, "Save quantized model…". Its own state is the form, which a session would
//! persist; everything it shows comes from [`crate::app::qat_run::QatRun`], and every action is a
//! [`Command`]. This file only draws.

use super::curves::{epoch_table, live_loss_series, live_stats, loss_plot};
use super::qat_recipe::{self, RecipeForm};
use crate::app::format;
use crate::app::qat_run::{
    BATCH, CALIB_SAMPLES, QatCommand, QatPhase, QatPrecision, QatRequest, QatRun,
};
use crate::app::state::{Command, FrameCtx};
use crate::jobs::QatEvent;
use eframe::egui::{self, Color32, RichText};
use egui_plot::{Corner, HLine, Legend, Line, LineStyle, MarkerShape, Plot, PlotPoints, Points};
use serde::{Deserialize, Serialize};
use std::time::Duration;

const FLOAT: Color32 = Color32::from_rgb(150, 150, 150);
const QAT: Color32 = Color32::from_rgb(240, 150, 40);

/// The QAT panel and its form.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct QatPanel {
    pub precision: QatPrecision,
    pub epochs: usize,
    pub lr: f32,
    pub lsq: bool,
    pub freeze_bn: bool,
    pub freeze_bn_after: usize,
    pub freeze_observers: bool,
    pub freeze_observers_after: usize,
    pub limit_data: bool,
    pub limit: usize,
    /// Draw the reported step losses under the smoothed curve.
    pub show_raw: bool,
    /// The recipe's other settings (damping, re-estimation, plan shaping).
    #[serde(default)]
    pub recipe: RecipeForm,
}

impl Default for QatPanel {
    /// The defaults of `qatlas qat`: int8, one epoch, AdamW at 1e-4, observers, no freezing.
    fn default() -> Self {
        QatPanel {
            precision: QatPrecision::Int8,
            epochs: 1,
            lr: 1e-4,
            lsq: false,
            freeze_bn: false,
            freeze_bn_after: 1,
            freeze_observers: false,
            freeze_observers_after: 1,
            limit_data: false,
            limit: 10_000,
            show_raw: true,
            recipe: RecipeForm::default(),
        }
    }
}

impl QatPanel {
    /// The request the form describes.
    pub fn request(&self) -> QatRequest {
        let mut r = QatRequest {
            precision: self.precision,
            epochs: self.epochs,
            lr: self.lr,
            lsq: self.lsq,
            freeze_bn_after: self.freeze_bn.then_some(self.freeze_bn_after),
            freeze_observers_after: self.freeze_observers.then_some(self.freeze_observers_after),
            limit: self.limit_data.then_some(self.limit),
            ..QatRequest::default()
        };
        self.recipe.fill(&mut r);
        r
    }

    /// Sets the form to the recipe the defaults choose for its precision and epochs on the
    /// model on screen (`plan`: the studio's plan).
    pub fn choose_recipe(
        &mut self,
        g: &crate::graph::Graph,
        plan: Option<&crate::quant::QuantPlan>,
    ) {
        let (r, name) = qat_recipe::recommended(&self.request(), g, plan);
        let limit = (self.limit_data, self.limit);
        self.set_request(&r);
        (self.limit_data, self.limit) = limit;
        self.recipe.name = name;
    }

    /// Sets the form to a saved request (an opened project).
    pub fn set_request(&mut self, r: &QatRequest) {
        self.precision = r.precision;
        self.epochs = r.epochs;
        self.lr = r.lr;
        self.lsq = r.lsq;
        self.freeze_bn = r.freeze_bn_after.is_some();
        self.freeze_bn_after = r.freeze_bn_after.unwrap_or(self.freeze_bn_after);
        self.freeze_observers = r.freeze_observers_after.is_some();
        self.freeze_observers_after = r
            .freeze_observers_after
            .unwrap_or(self.freeze_observers_after);
        self.limit_data = r.limit.is_some();
        self.limit = r.limit.unwrap_or(self.limit);
        self.recipe.take(r);
    }

    pub fn ui(&mut self, ui: &mut egui::Ui, cx: &mut FrameCtx<'_>) {
        egui::ScrollArea::vertical()
            .id_salt("qat_scroll")
            .auto_shrink([false, false])
            .show(ui, |ui| {
                self.form(ui, cx);
                ui.separator();
                let Some(run) = &cx.live.qat else {
                    ui.weak(
                        "Fine-tunes the float model on screen with fake quantization (the \
                         straight-through estimator), starting from PTQ ranges, as `qatlas qat` \
                         does. The loss, the accuracies and every quantizer's scale appear here \
                         while it runs.",
                    );
                    return;
                };
                run_header(ui, run, cx);
                ui.add_space(4.0);
                accuracy_summary(ui, run);
                finish_actions(ui, run, cx);
                notes(ui, run);
                ui.separator();
                ui.horizontal(|ui| {
                    ui.strong("Training loss");
                    ui.checkbox(&mut self.show_raw, "step loss");
                });
                let series = live_loss_series(&run.progress, self.show_raw);
                loss_plot(ui, "qat_loss_plot", &series, 220.0);
                accuracy_plot(ui, run);
                super::qat_flips::flips(ui, run);
                if !run.progress.epochs.is_empty() {
                    ui.weak("Test accuracy here is the fake-quant model's.");
                    epoch_table(ui, "qat_epochs", &run.progress.epochs);
                }
                ui.separator();
                super::qat_scales::scale_table(ui, run);
            });
    }

    fn form(&mut self, ui: &mut egui::Ui, cx: &mut FrameCtx<'_>) {
        let blocker = cx.live.qat_blocker();
        let active = cx.live.qat.as_ref().is_some_and(QatRun::is_active);
        // Folded while a run is under way (the run's header names its settings), so the live
        // curves are in view; the user can still unfold it. Its own open state per mode.
        egui::CollapsingHeader::new(RichText::new("Settings").strong())
            .id_salt(("qat_settings", active))
            .default_open(!active)
            .show(ui, |ui| self.settings(ui, active, cx));
        let start = ui
            .add_enabled(
                blocker.is_ok(),
                egui::Button::new(RichText::new("Start QAT").strong()),
            )
            .on_hover_text("Fine-tune the model on screen with fake quantization")
            .on_disabled_hover_text(blocker.as_ref().err().cloned().unwrap_or_default());
        if start.clicked() {
            cx.send(Command::Qat(QatCommand::Start(self.request())));
        }
        if let (Err(reason), false) = (&blocker, active) {
            ui.weak(format!("Cannot start: {reason}."));
        }
    }

    fn settings(&mut self, ui: &mut egui::Ui, active: bool, cx: &FrameCtx<'_>) {
        let graph = cx.live.model.as_ref().map(|m| &m.model.graph);
        if let Some(g) = graph
            && !active
            && qat_recipe::needs_choice(&self.recipe, &self.request())
        {
            self.choose_recipe(g, cx.ws.plan.as_ref());
        }
        let before = self.request();
        ui.add_enabled_ui(!active, |ui| {
            egui::Grid::new("qat_form")
                .num_columns(2)
                .spacing([12.0, 4.0])
                .show(ui, |ui| {
                    ui.label("Recipe");
                    ui.horizontal(|ui| {
                        ui.label(RichText::new(&self.recipe.name).strong());
                        let b = ui
                            .add_enabled(graph.is_some(), egui::Button::new("Recommended"))
                            .on_hover_text(
                                "The settings the defaults choose for this precision and model",
                            )
                            .on_disabled_hover_text("Open a model first");
                        if b.clicked()
                            && let Some(g) = graph
                        {
                            self.choose_recipe(g, cx.ws.plan.as_ref());
                        }
                    });
                    ui.end_row();
                    ui.label("Precision");
                    super::widgets::choice(
                        ui,
                        "qat_precision",
                        "QAT precision",
                        300.0,
                        &mut self.precision,
                        &QatPrecision::ALL,
                        |p| p.label().to_string(),
                    );
                    ui.end_row();
                    ui.label("Epochs");
                    ui.add(egui::DragValue::new(&mut self.epochs).range(1..=50));
                    ui.end_row();
                    ui.label("Learning rate");
                    let speed = (self.lr as f64 * 0.01).max(1e-8);
                    ui.add(
                        egui::DragValue::new(&mut self.lr)
                            .range(1e-7..=1e-1)
                            .speed(speed)
                            .custom_formatter(|v, _| format::small(v as f32)),
                    )
                    .on_hover_text("Peak learning rate of AdamW; cosine decay to 0");
                    ui.end_row();
                    ui.label("Scales");
                    ui.checkbox(&mut self.lsq, "learnable (LSQ)").on_hover_text(
                        "Train the scales and zero points by gradient (LSQ) instead of \
                         moving-average min/max observers",
                    );
                    ui.end_row();
                    let four_bit =
                        matches!(self.precision, QatPrecision::W4A8 | QatPrecision::W4A4);
                    qat_recipe::rows(ui, &mut self.recipe, self.lsq, four_bit);
                    after_row(
                        ui,
                        "Freeze BatchNorm",
                        &mut self.freeze_bn,
                        &mut self.freeze_bn_after,
                        self.epochs,
                    );
                    after_row(
                        ui,
                        "Freeze observers",
                        &mut self.freeze_observers,
                        &mut self.freeze_observers_after,
                        self.epochs,
                    );
                    ui.label("Training images");
                    ui.horizontal(|ui| {
                        ui.checkbox(&mut self.limit_data, "only the first");
                        ui.add_enabled(
                            self.limit_data,
                            egui::DragValue::new(&mut self.limit)
                                .range(64..=10_000_000)
                                .speed(100.0),
                        );
                    });
                    ui.end_row();
                });
        });
        let now = self.request();
        // The image limit is not part of the recipe.
        let recipe_changed = QatRequest { limit: None, ..now }
            != QatRequest {
                limit: None,
                ..before
            };
        if recipe_changed && !qat_recipe::needs_choice(&self.recipe, &now) {
            self.recipe.name = "custom".into();
        }
        let start = if self.precision == QatPrecision::Plan {
            "starts from the current plan as calibrated (layers table, Calibration tab)".to_string()
        } else {
            format!(
                "PTQ start from {} calibration images",
                format::thousands(CALIB_SAMPLES as u64)
            )
        };
        ui.weak(format!(
            "{start} · batch {BATCH} · AdamW, cosine decay · fake-quant test accuracy after \
             each epoch · best epoch kept as a checkpoint"
        ));
    }
}

/// A "freeze … after N epochs" row of the form.
fn after_row(ui: &mut egui::Ui, name: &str, on: &mut bool, after: &mut usize, epochs: usize) {
    ui.label(name);
    ui.horizontal(|ui| {
        ui.checkbox(on, "after");
        ui.add_enabled(*on, egui::DragValue::new(after).range(0..=epochs.max(1)));
        ui.label(if *after == 1 { "epoch" } else { "epochs" });
    });
    ui.end_row();
}

fn run_header(ui: &mut egui::Ui, run: &QatRun, cx: &mut FrameCtx<'_>) {
    let p = &run.progress;
    ui.strong(format!(
        "QAT of {} at {}{}",
        run.model_name,
        run.request.precision.label(),
        if run.request.lsq { ", LSQ" } else { "" }
    ));
    match &run.phase {
        QatPhase::Preparing => {
            ui.horizontal(|ui| {
                ui.spinner();
                ui.label("Preparing the model and the data…");
            });
        }
        QatPhase::Running | QatPhase::Stopping => {
            if run.start.is_none() {
                ui.horizontal(|ui| {
                    ui.spinner();
                    ui.label(format!(
                        "Calibrating the PTQ start on {} images and measuring the float and PTQ accuracy…",
                        format::thousands(CALIB_SAMPLES as u64)
                    ));
                });
            } else if p.total_steps > 0 {
                ui.label(format!(
                    "epoch {}/{} · step {}/{}",
                    p.epoch + 1,
                    run.request.epochs,
                    format::thousands(p.step as u64),
                    format::thousands(p.total_steps as u64)
                ));
            } else {
                ui.label("waiting for the first step…");
            }
            let eta = match p.eta(cx.now) {
                _ if run.paused => "paused".to_string(),
                Some(d) => format!("ETA {}", format::clock(d)),
                None => "ETA –".to_string(),
            };
            ui.add(
                egui::ProgressBar::new(p.fraction())
                    .text(format!("{:.1} % · {eta}", p.fraction() * 100.0))
                    .animate(p.total_steps == 0 && !run.paused),
            );
        }
        QatPhase::Finished {
            stopped_early,
            seconds,
        } => {
            let steps = run.result.as_ref().map_or(p.step, |r| r.steps);
            let epochs = &p.epochs;
            let rate = if epochs.is_empty() {
                String::new()
            } else {
                let mean = epochs.iter().map(|r| r.images_per_s).sum::<f64>() / epochs.len() as f64;
                format!(", {}", format::images_per_s(mean))
            };
            ui.label(format!(
                "Finished{}: {} steps in {}{rate}.",
                if *stopped_early {
                    " (stopped early)"
                } else {
                    ""
                },
                format::thousands(steps as u64),
                format::clock(Duration::from_secs_f64(seconds.max(0.0)))
            ));
        }
        QatPhase::Failed(msg) => {
            ui.add(
                egui::Label::new(
                    RichText::new(msg)
                        .color(ui.visuals().error_fg_color)
                        .strong(),
                )
                .wrap(),
            );
            if run.result.is_some() {
                ui.weak("The run kept its last good weights; they are not offered for saving.");
            }
        }
    }
    if !run.is_active() {
        return;
    }
    ui.horizontal_wrapped(|ui| {
        let running = run.phase == QatPhase::Running && run.job.is_some();
        if run.paused {
            if ui
                .add_enabled(running, egui::Button::new("Resume"))
                .clicked()
            {
                cx.send(Command::Qat(QatCommand::Resume));
            }
        } else if ui
            .add_enabled(running, egui::Button::new("Pause"))
            .on_hover_text("Wait before the next step (the worker keeps the model)")
            .clicked()
        {
            cx.send(Command::Qat(QatCommand::Pause));
        }
        let stoppable = matches!(run.phase, QatPhase::Preparing | QatPhase::Running);
        let label = if run.phase == QatPhase::Stopping {
            "Stopping…"
        } else {
            "Stop"
        };
        if ui
            .add_enabled(stoppable, egui::Button::new(label))
            .on_hover_text(
                "Stop after the current step; the model trained so far is still deployed and evaluated",
            )
            .clicked()
        {
            cx.send(Command::Qat(QatCommand::Stop));
        }
        live_stats(ui, p, run.started, cx.now);
    });
}

/// Float, PTQ start and QAT accuracy side by side, with the QAT drop against float.
fn accuracy_summary(ui: &mut egui::Ui, run: &QatRun) {
    let float = run.start.as_ref().and_then(|s| s.float_accuracy);
    let start = run.start.as_ref().and_then(|s| s.start_accuracy);
    let latest_epoch = run
        .progress
        .epochs
        .iter()
        .rev()
        .find_map(|r| r.eval.as_ref().map(|e| (r.epoch + 1, e.accuracy)));
    let (qat, qat_caption) = match (&run.result, latest_epoch) {
        (Some(r), _) if r.quantized_accuracy.is_some() => {
            (r.quantized_accuracy, "deployable model".to_string())
        }
        (_, Some((e, a))) => (Some(a), format!("fake-quant, epoch {e}")),
        _ => (None, String::new()),
    };
    let pct = |v: Option<f64>| v.map_or("–".to_string(), format::percent);
    let drop = |v: Option<f64>| match (v, float) {
        (Some(a), Some(f)) => format!("{:+.2} pp vs float", (a - f) * 100.0),
        _ => String::new(),
    };
    egui::Grid::new("qat_accuracy")
        .num_columns(3)
        .spacing([32.0, 2.0])
        .show(ui, |ui| {
            ui.label("Float model");
            ui.label("PTQ start");
            ui.label("After QAT");
            ui.end_row();
            ui.label(RichText::new(pct(float)).size(20.0));
            ui.label(RichText::new(pct(start)).size(20.0));
            ui.label(RichText::new(pct(qat)).size(20.0).strong().color(QAT));
            ui.end_row();
            ui.weak("test set");
            ui.weak(drop(start));
            ui.weak(format!("{qat_caption} {}", drop(qat)).trim());
            ui.end_row();
        });
    if run
        .start
        .as_ref()
        .is_some_and(|s| s.float_accuracy.is_none())
    {
        ui.weak("No test set fits the model: accuracies are not measured.");
    }
    if let Some(s) = &run.start {
        ui.weak(if s.calib_images == 0 {
            format!(
                "{} quantizers, starting from the plan's calibrated ranges.",
                s.quantizers
            )
        } else {
            format!(
                "{} quantizers, PTQ ranges from {} training images.",
                s.quantizers,
                format::thousands(s.calib_images as u64)
            )
        });
    }
}

fn finish_actions(ui: &mut egui::Ui, run: &QatRun, cx: &mut FrameCtx<'_>) {
    if run.result.is_none() {
        return;
    }
    ui.horizontal_wrapped(|ui| {
        let save = ui
            .add_enabled(
                run.saveable().is_some(),
                egui::Button::new(RichText::new("Save quantized model…").strong()),
            )
            .on_hover_text("Write the deployable fake-quant model (BatchNorm folded) to a .safetensors file")
            .on_disabled_hover_text("The run failed; its model is not saved");
        if save.clicked() {
            cx.send(Command::Qat(QatCommand::PickSavePath));
        }
        if let Some(path) = &run.saved_to {
            ui.label(format!("saved to {}", path.display()));
            if ui
                .button("Open it")
                .on_hover_text("Show the saved quantized model in the studio (replaces the float model on screen)")
                .clicked()
            {
                cx.send(Command::OpenModel(path.clone()));
            }
        } else if run.saveable().is_some() {
            ui.label(
                RichText::new("not saved yet").color(ui.visuals().warn_fg_color),
            );
        }
    });
}

fn notes(ui: &mut egui::Ui, run: &QatRun) {
    for n in &run.notes {
        let text = match n {
            QatEvent::Frozen {
                epoch,
                batchnorms,
                observers,
            } => format!(
                "Before epoch {}: froze {batchnorms} BatchNorm layer(s) and {observers} observer(s).",
                epoch + 1
            ),
            QatEvent::Checkpoint {
                epoch,
                accuracy,
                path,
            } => format!(
                "Epoch {epoch} is the best so far ({}): checkpoint {}",
                format::percent(*accuracy),
                path.display()
            ),
            QatEvent::BatchNormReestimated {
                batchnorms,
                batches,
                before,
                after,
            } => format!(
                "Re-estimated {batchnorms} BatchNorm layer(s) on {batches} training batches: {} → {}.",
                before.map_or("–".into(), format::percent),
                after.map_or("–".into(), format::percent)
            ),
            QatEvent::Started { .. } | QatEvent::Scales { .. } | QatEvent::Oscillation { .. } => {
                continue;
            }
        };
        ui.add(egui::Label::new(RichText::new(text).small()).wrap());
    }
}

/// Fake-quant test accuracy per epoch, starting at the PTQ start (epoch 0), against the float
/// model's accuracy.
fn accuracy_plot(ui: &mut egui::Ui, run: &QatRun) {
    let Some(start) = &run.start else { return };
    let mut qat: Vec<[f64; 2]> = start
        .start_accuracy
        .map(|a| [0.0, a * 100.0])
        .into_iter()
        .collect();
    qat.extend(run.progress.epochs.iter().filter_map(|r| {
        r.eval
            .as_ref()
            .map(|e| [(r.epoch + 1) as f64, e.accuracy * 100.0])
    }));
    if qat.is_empty() {
        return;
    }
    // Accuracies differ by tenths of a point: fit the axis to them, with a margin.
    let ys = qat
        .iter()
        .map(|p| p[1])
        .chain(start.float_accuracy.map(|f| f * 100.0));
    let (lo, hi) = ys.fold((f64::INFINITY, f64::NEG_INFINITY), |(l, h), y| {
        (l.min(y), h.max(y))
    });
    let margin = ((hi - lo) * 0.25).max(0.1);
    ui.strong("Test accuracy");
    Plot::new("qat_accuracy_plot")
        .height(160.0)
        .legend(Legend::default().position(Corner::RightBottom))
        .x_axis_label("epoch (0 = PTQ start)")
        .y_axis_label("accuracy (%)")
        .x_axis_formatter(|mark, _| {
            if mark.value.fract() == 0.0 {
                format!("{:.0}", mark.value)
            } else {
                String::new()
            }
        })
        .include_x(-0.25)
        .include_x(run.request.epochs as f64 + 0.25)
        .include_y(lo - margin)
        .include_y(hi + margin)
        // The panel scrolls: the wheel must scroll it, not pan the plot.
        .allow_scroll(false)
        .show(ui, |plot| {
            if let Some(f) = start.float_accuracy {
                plot.hline(
                    HLine::new("float model", f * 100.0)
                        .color(FLOAT)
                        .style(LineStyle::dashed_loose()),
                );
            }
            plot.line(
                Line::new("fake-quant", PlotPoints::from(qat.clone()))
                    .color(QAT)
                    .width(2.0),
            );
            plot.points(
                Points::new("fake-quant", PlotPoints::from(qat))
                    .color(QAT)
                    .radius(4.0)
                    .shape(MarkerShape::Diamond),
            );
        });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_form_sends_the_cli_defaults() {
        let r = QatPanel::default().request();
        assert_eq!(
            (r.precision, r.epochs, r.lr, r.lsq),
            (QatPrecision::Int8, 1, 1e-4, false)
        );
        assert_eq!(
            (r.freeze_bn_after, r.freeze_observers_after, r.limit),
            (None, None, None)
        );
        let p = QatPanel {
            freeze_bn: true,
            freeze_bn_after: 2,
            limit_data: true,
            limit: 500,
            ..QatPanel::default()
        };
        let r = p.request();
        assert_eq!((r.freeze_bn_after, r.limit), (Some(2), Some(500)));
    }
}
