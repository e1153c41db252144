//! The Search tab: automatic mixed precision. The form (largest accuracy drop, objective, time
//! budget), Run / Stop, a scatter of every plan evaluated (accuracy against weight KiB; the
//! front in colour by estimated latency, the rest grey, all-int8 and float marked; hover shows
//! a plan's per-layer precisions, a click makes the nearest plan the current one), the front as
//! a table with a "Use" button per plan, and the chosen plan with its measured latency.

use crate::analysis::search::{Candidate, Objective};
use crate::app::format;
use crate::app::search_state::SearchSettings;
use crate::app::state::{Command, FrameCtx};
use crate::app::workspace::PlanCommand;
use eframe::egui::{self, Color32, RichText};
use egui_plot::{HLine, Legend, MarkerShape, Plot, PlotPoint, Points};
use serde::{Deserialize, Serialize};

/// The Search tab's form.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct SearchPanel {
    pub form: SearchSettings,
}

fn layers_text(c: &Candidate) -> String {
    c.layers
        .iter()
        .map(|(n, p)| format!("{n}: {}", p.name()))
        .collect::<Vec<_>>()
        .join("\n")
}

/// Green (fast) to red (slow) between `lo` and `hi` microseconds.
fn latency_colour(us: f64, lo: f64, hi: f64) -> Color32 {
    let t = if hi > lo {
        ((us - lo) / (hi - lo)).clamp(0.0, 1.0)
    } else {
        0.0
    };
    Color32::from_rgb((60.0 + 190.0 * t) as u8, (200.0 - 140.0 * t) as u8, 90)
}

impl SearchPanel {
    pub fn ui(&mut self, ui: &mut egui::Ui, cx: &mut FrameCtx<'_>) {
        if cx.live.model.is_none() {
            super::widgets::no_model(ui, cx.live);
            return;
        }
        if let Some(why) = &cx.ws.blocked {
            ui.label(why.as_str());
            return;
        }
        self.form(ui, cx);
        ui.separator();
        let s = &cx.ws.search;
        if let Some(e) = &s.error {
            ui.colored_label(ui.visuals().error_fg_color, e);
        }
        if s.tried.is_empty() {
            ui.weak(
                "Each layer's weights are tried at fp32, fp16, int8 and int4 (activations int8), \
                 guided by per-layer sensitivity and by per-layer latency measured on this \
                 machine's integer kernels; every candidate is evaluated for real on the \
                 evaluation images. Layers excluded in the plan stay fp32.",
            );
            return;
        }
        self.plot(ui, cx);
        self.front_table(ui, cx);
    }

    fn form(&mut self, ui: &mut egui::Ui, cx: &mut FrameCtx<'_>) {
        let running = cx.plan_busy.search;
        egui::Grid::new("search_form")
            .num_columns(2)
            .spacing([12.0, 6.0])
            .show(ui, |ui| {
                ui.label("Largest accuracy drop");
                ui.add(
                    egui::DragValue::new(&mut self.form.max_drop_pp)
                        .range(0.0..=20.0)
                        .speed(0.05)
                        .suffix(" pp"),
                );
                ui.end_row();
                ui.label("Objective");
                ui.horizontal(|ui| {
                    ui.radio_value(
                        &mut self.form.objective,
                        Objective::Size,
                        "smallest weights",
                    );
                    ui.radio_value(
                        &mut self.form.objective,
                        Objective::Latency,
                        "lowest latency",
                    );
                });
                ui.end_row();
                ui.label("Time budget");
                ui.add(
                    egui::DragValue::new(&mut self.form.budget_s)
                        .range(1.0..=3600.0)
                        .suffix(" s"),
                );
                ui.end_row();
            });
        ui.horizontal_wrapped(|ui| {
            let r = ui.add_enabled(!running, egui::Button::new("Run search"));
            if running {
                r.clone().on_disabled_hover_text("a search is running");
            }
            if r.clicked() {
                cx.send(Command::Plan(PlanCommand::Search(self.form)));
            }
            let blocker = cx.ws.resume_blocker(&self.form);
            let r = ui.add_enabled(!running && blocker.is_none(), egui::Button::new("Resume"));
            let r = match (&blocker, running) {
                (_, true) => r.on_disabled_hover_text("a search is running"),
                (Some(why), _) => r.on_disabled_hover_text(why.as_str()),
                (None, _) => r.on_hover_text(
                    "Continue the last search with this budget, drop and objective: \
                     the plans it evaluated are kept and not evaluated again",
                ),
            };
            if r.clicked() {
                cx.send(Command::Plan(PlanCommand::ResumeSearch(self.form)));
            }
            let r = ui.add_enabled(running, egui::Button::new("Stop"));
            if !running {
                r.clone().on_disabled_hover_text("no search is running");
            }
            if r.on_hover_text("Stops after the plan being evaluated; the front stays")
                .clicked()
            {
                cx.send(Command::Plan(PlanCommand::StopSearch));
            }
            let s = &cx.ws.search;
            if running {
                ui.spinner();
                ui.label(format!("{} plans evaluated…", s.tried.len()));
            } else if let Some(r) = &s.report {
                let resumed = match r.resumed_plans {
                    0 => String::new(),
                    n => format!(", {n} kept from the resumed search"),
                };
                ui.label(format!(
                    "{} plans{resumed} in {:.1} s ({}) on {} images",
                    r.tried.len(),
                    r.seconds,
                    if r.stopped_early {
                        "budget reached or stopped"
                    } else {
                        "complete"
                    },
                    format::thousands(r.eval_images as u64)
                ));
            }
        });
    }

    fn plot(&self, ui: &mut egui::Ui, cx: &mut FrameCtx<'_>) {
        let s = &cx.ws.search;
        let (lo, hi) = s.tried.iter().fold((f64::MAX, 0.0f64), |(lo, hi), c| {
            (lo.min(c.latency_est_us), hi.max(c.latency_est_us))
        });
        let chosen = s.report.as_ref().map(|r| r.chosen);
        let point = |c: &Candidate| [c.weight_bytes as f64 / 1024.0, c.accuracy * 100.0];
        let tried = s.tried.clone();
        let resp = Plot::new("search_front")
            .height(300.0)
            .legend(Legend::default().position(egui_plot::Corner::RightBottom))
            .x_axis_label("weight KiB")
            .y_axis_label("accuracy %")
            .allow_scroll(false)
            .label_formatter(move |h| match h {
                egui_plot::HoverPosition::NearDataPoint { position, .. } => {
                    let c = tried.iter().min_by(|a, b| {
                        let d = |c: &Candidate| {
                            let [x, y] = point(c);
                            (x - position.x).powi(2) + (y - position.y).powi(2)
                        };
                        d(a).total_cmp(&d(b))
                    })?;
                    Some(format!(
                        "{:.2} %, {:.1} KiB, ~{:.1} µs\n{}",
                        c.accuracy * 100.0,
                        c.weight_bytes as f64 / 1024.0,
                        c.latency_est_us,
                        layers_text(c)
                    ))
                }
                _ => None,
            })
            .show(ui, |plot| {
                let others: Vec<[f64; 2]> =
                    s.tried.iter().filter(|c| !c.on_front).map(point).collect();
                plot.points(
                    Points::new("other plans", others)
                        .color(Color32::GRAY)
                        .radius(3.0),
                );
                for c in s.tried.iter().filter(|c| c.on_front) {
                    plot.points(
                        Points::new("front (colour: latency)", vec![point(c)])
                            .color(latency_colour(c.latency_est_us, lo, hi))
                            .radius(5.0),
                    );
                }
                if let Some(i) = &s.int8 {
                    plot.points(
                        Points::new("all int8", vec![point(i)])
                            .shape(MarkerShape::Diamond)
                            .color(Color32::LIGHT_BLUE)
                            .radius(7.0),
                    );
                }
                if let Some(c) = chosen.and_then(|i| s.tried.get(i)) {
                    plot.points(
                        Points::new("chosen", vec![point(c)])
                            .shape(MarkerShape::Asterisk)
                            .color(Color32::YELLOW)
                            .radius(9.0),
                    );
                }
                if let Some(f) = s.float_accuracy {
                    plot.hline(HLine::new("float accuracy", f * 100.0).color(Color32::WHITE));
                    if let Some(st) = s.settings {
                        plot.hline(
                            HLine::new("float − max drop", f * 100.0 - st.max_drop_pp)
                                .color(Color32::DARK_GRAY),
                        );
                    }
                }
            });
        if resp.response.clicked()
            && let Some(pos) = resp.response.interact_pointer_pos()
        {
            let t = &resp.transform;
            let nearest = s
                .tried
                .iter()
                .enumerate()
                .map(|(i, c)| {
                    let [x, y] = point(c);
                    let p = t.position_from_point(&PlotPoint::new(x, y));
                    (i, p.distance(pos))
                })
                .min_by(|a, b| a.1.total_cmp(&b.1));
            if let Some((i, d)) = nearest
                && d < 12.0
            {
                cx.send(Command::Plan(PlanCommand::UseSearched(i)));
            }
        }
        ui.weak(
            "Hover a point for its per-layer precisions; click one to make it the current plan.",
        );
    }

    fn front_table(&self, ui: &mut egui::Ui, cx: &mut FrameCtx<'_>) {
        let s = &cx.ws.search;
        let float_bytes = s.report.as_ref().map(|r| r.float_bytes);
        if let Some(r) = &s.report {
            let b = r.best();
            let verdict = if r.constraint_met {
                RichText::new(format!(
                    "Chosen: {:.2} % ({:+.2} pp), {:.1} KiB ({:.2}x smaller than float)",
                    b.accuracy * 100.0,
                    -b.drop_pp,
                    b.weight_bytes as f64 / 1024.0,
                    r.float_bytes as f64 / b.weight_bytes.max(1) as f64
                ))
                .strong()
            } else {
                RichText::new(format!(
                    "No plan is within {:.2} pp: the most accurate one is chosen ({:.2} %)",
                    s.settings.map_or(0.0, |s| s.max_drop_pp),
                    b.accuracy * 100.0
                ))
                .color(ui.visuals().warn_fg_color)
            };
            ui.horizontal_wrapped(|ui| {
                ui.label(verdict);
                if ui
                    .button("Fine-tune with QAT…")
                    .on_hover_text(
                        "Make the chosen plan the current plan and open the QAT tab set to train \
                         it (a short QAT often wins back the accuracy 4-bit layers lose)",
                    )
                    .clicked()
                {
                    cx.send(Command::Plan(PlanCommand::UseSearched(r.chosen)));
                    cx.send(Command::QatOnPlan);
                }
            });
            if let (Some(c), Some(i), Some((vs8, vsf))) =
                (&r.chosen_latency, &r.int8_latency, r.speedups())
            {
                ui.label(format!(
                    "Measured latency per image (batch {}): {:.1} µs; all-int8 {:.1} µs; float {:.1} µs; \
                     {:.2}x all-int8's speed, {:.2}x float's ({})",
                    c.batch,
                    c.int_us,
                    i.int_us,
                    c.float_us,
                    vs8,
                    vsf,
                    c.kernel_path
                ))
                .on_hover_text(
                    "Each plan is timed interleaved with the float model; the speed-ups are taken \
                     against the float time of the same run, so drift of a busy machine between \
                     the two runs cancels",
                );
            }
        }
        ui.strong("Pareto front");
        egui::Grid::new("search_front_table")
            .num_columns(6)
            .striped(true)
            .spacing([12.0, 3.0])
            .show(ui, |ui| {
                for h in [
                    "accuracy",
                    "drop",
                    "weights",
                    "vs float",
                    "latency (est.)",
                    "",
                ] {
                    ui.strong(h);
                }
                ui.end_row();
                for (i, c) in s.tried.iter().enumerate().filter(|(_, c)| c.on_front) {
                    ui.label(format!("{:.2} %", c.accuracy * 100.0))
                        .on_hover_text(layers_text(c));
                    ui.label(format!("{:+.2} pp", -c.drop_pp));
                    ui.label(format!("{:.1} KiB", c.weight_bytes as f64 / 1024.0));
                    ui.label(float_bytes.map_or("—".into(), |f| {
                        format!("{:.2}x", f as f64 / c.weight_bytes.max(1) as f64)
                    }));
                    ui.label(format!("{:.1} µs", c.latency_est_us));
                    if ui
                        .small_button(format!("Use plan {i}"))
                        .on_hover_text(layers_text(c))
                        .clicked()
                    {
                        cx.send(Command::Plan(PlanCommand::UseSearched(i)));
                    }
                    ui.end_row();
                }
            });
    }
}
