//! The curves panel: the loss curve and per-epoch accuracy, with egui_plot. While a training run
//! is under way (or has failed) it shows the run's live curve from its step events, with a
//! progress bar, throughput, learning rate, ETA and a Stop button; otherwise it shows the history
//! stored in the model on screen. All points come from [`crate::app::progress`]; this file only draws.

use crate::app::format;
use crate::app::progress::{history_loss, test_accuracy, train_accuracy};
use crate::app::state::{Command, FrameCtx, RunPhase, TrainRun};
use crate::train::EpochRecord;
use eframe::egui::{self, Color32, RichText};
use egui_plot::{Corner, Legend, Line, MarkerShape, Plot, PlotPoints, Points};
use serde::{Deserialize, Serialize};

const RAW_LOSS: Color32 = Color32::from_rgba_premultiplied(70, 95, 130, 130);
const LOSS: Color32 = Color32::from_rgb(60, 140, 240);
const TEST_ACC: Color32 = Color32::from_rgb(240, 150, 40);
const TRAIN_ACC: Color32 = Color32::from_rgb(120, 190, 120);

/// The curves panel and its display options.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct CurvesPanel {
    /// Draw the reported step losses under the smoothed curve.
    pub show_raw: bool,
}

impl Default for CurvesPanel {
    fn default() -> Self {
        CurvesPanel { show_raw: true }
    }
}

/// One line of the loss plot.
pub(super) struct Series {
    pub name: &'static str,
    pub points: Vec<[f64; 2]>,
    pub color: Color32,
    pub width: f32,
}

/// The raw and smoothed loss lines of a live run (the raw one only if `show_raw`).
pub(super) fn live_loss_series(
    p: &crate::app::progress::TrainProgress,
    show_raw: bool,
) -> Vec<Series> {
    let mut s = Vec::new();
    if show_raw {
        s.push(Series {
            name: "step loss",
            points: p.loss.clone(),
            color: RAW_LOSS,
            width: 1.0,
        });
    }
    s.push(Series {
        name: "loss, smoothed",
        points: p.smoothed.clone(),
        color: LOSS,
        width: 2.0,
    });
    s
}

impl CurvesPanel {
    pub fn ui(&mut self, ui: &mut egui::Ui, cx: &mut FrameCtx<'_>) {
        // A run under way (or one that failed) is shown live; otherwise the model's own history.
        let live_run = cx
            .live
            .training
            .as_ref()
            .filter(|r| r.is_active() || matches!(r.phase, RunPhase::Failed(_)));
        // The studio's tab bar above names the panel.
        if live_run.is_some() {
            ui.horizontal(|ui| {
                ui.with_layout(egui::Layout::right_to_left(egui::Align::Center), |ui| {
                    ui.checkbox(&mut self.show_raw, "step loss");
                });
            });
        }
        if let Some(run) = &cx.live.training {
            run_header(ui, run, cx);
            ui.separator();
        }
        let history = cx
            .live
            .model
            .as_ref()
            .and_then(|v| v.model.meta.history.as_ref());
        let (series, epochs, epoch_span, caption) = match (live_run, history) {
            (Some(run), _) => {
                let p = &run.progress;
                (
                    live_loss_series(p, self.show_raw),
                    &p.epochs[..],
                    run.request.epochs,
                    "Live run: training loss at the steps reported so far (up to ~50 per second)",
                )
            }
            (None, Some(h)) => {
                let s = vec![Series {
                    name: "loss (stored history)",
                    points: history_loss(h),
                    color: LOSS,
                    width: 2.0,
                }];
                (
                    s,
                    &h.epochs[..],
                    h.epochs.len(),
                    "Stored with the model: mean training loss between recorded steps",
                )
            }
            (None, None) => {
                ui.label(if cx.live.model.is_some() {
                    "This model has no stored training history. Train from scratch to see live curves."
                } else {
                    "No model and no training run yet."
                });
                return;
            }
        };
        ui.weak(caption);

        let table_h = if epochs.is_empty() {
            0.0
        } else {
            24.0 + 20.0 * epochs.len().min(8) as f32
        };
        let avail = (ui.available_height() - table_h - 40.0).max(240.0);
        loss_plot(ui, "loss_plot", &series, avail * 0.6);
        accuracy_plot(ui, epochs, epoch_span, avail * 0.4 - 8.0);
        if !epochs.is_empty() {
            epoch_table(ui, "epochs", epochs);
        }
    }
}

fn run_header(ui: &mut egui::Ui, run: &TrainRun, cx: &mut FrameCtx<'_>) {
    let p = &run.progress;
    let arch = run.request.arch.name();
    match &run.phase {
        RunPhase::Preparing => {
            ui.horizontal(|ui| {
                ui.spinner();
                ui.label(format!("Building a fresh {arch}…"));
                if ui.button("Stop").clicked() {
                    cx.send(Command::StopTraining);
                }
            });
        }
        RunPhase::Running | RunPhase::Stopping => {
            ui.horizontal(|ui| {
                ui.strong(format!("Training {arch}"));
                if p.total_steps > 0 {
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
            });
            let eta = p
                .eta(cx.now)
                .map(format::clock)
                .unwrap_or_else(|| "–".to_string());
            ui.add(
                egui::ProgressBar::new(p.fraction())
                    .text(format!("{:.1} % · ETA {eta}", p.fraction() * 100.0))
                    .animate(p.total_steps == 0),
            );
            ui.horizontal(|ui| {
                let stopping = run.phase == RunPhase::Stopping;
                let label = if stopping { "Stopping…" } else { "Stop" };
                if ui
                    .add_enabled(!stopping, egui::Button::new(label))
                    .on_hover_text("Stop after the current step; the model trained so far is kept")
                    .clicked()
                {
                    cx.send(Command::StopTraining);
                }
                live_stats(ui, p, run.started, cx.now);
            });
        }
        RunPhase::Finished {
            stopped_early,
            steps,
            seconds,
        } => {
            let how = if *stopped_early {
                " (stopped early)"
            } else {
                ""
            };
            ui.label(format!(
                "Last run: {arch}, {} steps in {}{how}. Its model is on screen.",
                format::thousands(*steps as u64),
                format::clock(std::time::Duration::from_secs_f64(seconds.max(0.0)))
            ));
        }
        RunPhase::Failed(msg) => {
            ui.colored_label(
                ui.visuals().error_fg_color,
                format!("Training failed: {msg}"),
            );
        }
    }
}

/// The loss plot; `id` tells plots in different panels apart (each keeps its own zoom).
pub(super) fn loss_plot(ui: &mut egui::Ui, id: &str, series: &[Series], height: f32) {
    Plot::new(id)
        .height(height)
        .legend(Legend::default())
        .x_axis_label("step")
        .y_axis_label("loss")
        .include_y(0.0)
        // The QAT panel scrolls: the wheel must scroll it, not pan the plot.
        .allow_scroll(false)
        .show(ui, |plot| {
            for s in series {
                plot.line(
                    Line::new(s.name, PlotPoints::from(s.points.clone()))
                        .color(s.color)
                        .width(s.width),
                );
            }
        });
}

fn accuracy_plot(ui: &mut egui::Ui, epochs: &[EpochRecord], epoch_span: usize, height: f32) {
    let test = test_accuracy(epochs);
    let train = train_accuracy(epochs);
    if train.is_empty() {
        ui.weak("Accuracy appears here after each epoch.");
        return;
    }
    Plot::new("accuracy_plot")
        .height(height.max(100.0))
        .legend(Legend::default().position(Corner::RightBottom))
        .x_axis_label("epoch")
        .y_axis_label("accuracy (%)")
        // Whole epochs only on the x axis, spanning the whole run.
        .x_axis_formatter(|mark, _| {
            if mark.value.fract() == 0.0 {
                format!("{:.0}", mark.value)
            } else {
                String::new()
            }
        })
        .include_x(0.5)
        .include_x(epoch_span.max(1) as f64 + 0.5)
        .include_y(100.0)
        .show(ui, |plot| {
            plot.line(
                Line::new("train accuracy", PlotPoints::from(train.clone())).color(TRAIN_ACC),
            );
            plot.points(
                Points::new("train accuracy", PlotPoints::from(train))
                    .color(TRAIN_ACC)
                    .radius(3.0)
                    .shape(MarkerShape::Circle),
            );
            if !test.is_empty() {
                plot.line(
                    Line::new("test accuracy", PlotPoints::from(test.clone()))
                        .color(TEST_ACC)
                        .width(2.0),
                );
                plot.points(
                    Points::new("test accuracy", PlotPoints::from(test))
                        .color(TEST_ACC)
                        .radius(4.0)
                        .shape(MarkerShape::Diamond),
                );
            }
        });
}

/// The per-epoch table (train loss and accuracy, test accuracy and loss, throughput).
pub(super) fn epoch_table(ui: &mut egui::Ui, id: &str, epochs: &[EpochRecord]) {
    egui::ScrollArea::both()
        .id_salt(id)
        .max_height(24.0 + 20.0 * 8.0)
        .show(ui, |ui| {
            egui::Grid::new((id, "grid"))
                .num_columns(6)
                .striped(true)
                .spacing([12.0, 2.0])
                .show(ui, |ui| {
                    for h in [
                        "Epoch",
                        "Train loss",
                        "Train acc.",
                        "Test acc.",
                        "Test loss",
                        "img/s",
                    ] {
                        ui.strong(h);
                    }
                    ui.end_row();
                    for r in epochs {
                        ui.label((r.epoch + 1).to_string());
                        ui.label(format!("{:.4}", r.train_loss));
                        ui.label(format::percent(r.train_accuracy));
                        match &r.eval {
                            Some(e) => {
                                ui.label(RichText::new(format::percent(e.accuracy)).strong());
                                ui.label(format!("{:.4}", e.loss));
                            }
                            None => {
                                ui.weak("–");
                                ui.weak("–");
                            }
                        }
                        ui.label(format::thousands(r.images_per_s.round().max(0.0) as u64));
                        ui.end_row();
                    }
                });
        });
}

/// The numbers beside a live run's buttons: images/s, learning rate and last loss (once a step
/// was reported), and the elapsed time; shared by the training and QAT views.
pub fn live_stats(
    ui: &mut egui::Ui,
    p: &crate::app::progress::TrainProgress,
    started: std::time::Instant,
    now: std::time::Instant,
) {
    if p.step > 0 {
        ui.separator();
        ui.label(format::images_per_s(p.images_per_s));
        ui.separator();
        ui.label(format!("lr {}", format::small(p.lr)));
        if let Some(l) = p.last_loss {
            ui.separator();
            ui.label(format!("loss {l:.4}"));
        }
    }
    ui.separator();
    ui.label(format!(
        "elapsed {}",
        format::clock(now.saturating_duration_since(started))
    ));
}
