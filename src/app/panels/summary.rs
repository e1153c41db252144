//! The summary strip under the top bar: always true for the current plan. Float accuracy and
//! the plan's simulated accuracy (with the number of images each came from), weight bytes and
//! the compression against float, and the latency per image of the plan measured on this
//! machine's integer kernels against float on the same runtime. A number being recomputed goes
//! grey; the evaluation's progress and the click-to-result time of the last what-if are shown.

use super::widgets::{self, value};
use crate::app::format;
use crate::app::state::{Command, FrameCtx};
use crate::app::workspace::PlanCommand;
use eframe::egui::{self, RichText};

/// Draws the strip (it has no state of its own).
pub fn ui(ui: &mut egui::Ui, cx: &mut FrameCtx<'_>) {
    let ws = cx.ws;
    if ws.plan.is_none() {
        return;
    }
    let current = ws.current_eval().is_some();
    let last = ws.eval.as_ref().map(|t| &t.value);
    ui.horizontal_wrapped(|ui| {
        ui.spacing_mut().item_spacing.x = 14.0;
        match last {
            Some(e) => {
                let c = &e.eval.comparison;
                metric(
                    ui,
                    &format!("Float ({} img)", c.images),
                    value(format::percent(c.float_accuracy), current),
                    &format!("float model, {} test images", c.images),
                );
                // Adding 0.0 turns -0.0 into +0.0: "+0.00 pp" when the plan loses nothing.
                let delta = (c.quantized_accuracy - c.float_accuracy) * 100.0 + 0.0;
                metric(
                    ui,
                    "Plan (sim.)",
                    value(
                        format!("{} ({:+.2} pp)", format::percent(c.quantized_accuracy), delta),
                        current,
                    ),
                    &format!(
                        "fake-quant simulation of the plan (= the integer runtime's arithmetic), {} test images, calibrated on {} training images",
                        c.images,
                        e.eval.ptq.calibrator.images()
                    ),
                );
                if let Some(t) = &ws.integer {
                    let fresh = t.rev == ws.rev;
                    match &t.value {
                        Ok((acc, n)) => metric(
                            ui,
                            "Int runtime",
                            value(format::percent(*acc), fresh),
                            &format!(
                                "the plan converted to qatlas's integer runtime (the bundle `qatlas convert` writes), {n} test images"
                            ),
                        ),
                        Err(e) => {
                            ui.colored_label(ui.visuals().error_fg_color, "integer runtime: not convertible")
                                .on_hover_text(e);
                        }
                    }
                }
                let s = &e.eval.size;
                metric(
                    ui,
                    "Weights",
                    value(
                        format!("{} ({:.2}×)", widgets::bytes(s.bytes), s.ratio()),
                        current,
                    ),
                    &format!(
                        "bytes the integer bundle stores for this plan; float: {}",
                        widgets::bytes(s.float_bytes)
                    ),
                );
            }
            None => {
                ui.weak("Plan not evaluated yet");
            }
        }
        match ws.latency.as_ref() {
            Some(l) => {
                let fresh = l.rev == ws.rev;
                let v = &l.value;
                metric(
                    ui,
                    "Latency/img",
                    value(
                        format!(
                            "{} ({:.2}× float)",
                            widgets::micros(v.int_us),
                            v.ratio,
                        ),
                        fresh,
                    ),
                    &format!(
                        "measured on this machine's integer runtime, batch {}, kernel path {}; float = the same runtime with every layer in f32",
                        v.batch, v.kernel_path
                    ),
                );
            }
            None if cx.plan_busy.latency => {
                ui.weak("Latency: measuring…");
            }
            None => {}
        }
        if let Some(e) = &ws.latency_error {
            ui.colored_label(ui.visuals().error_fg_color, "latency: not measured")
                .on_hover_text(e);
        }
        let can_measure = current && !cx.plan_busy.latency;
        let r = ui.add_enabled(can_measure, egui::Button::new("Measure"));
        if !can_measure {
            r.on_disabled_hover_text(if cx.plan_busy.latency {
                "a latency measurement is running"
            } else {
                "wait for the plan's evaluation"
            });
        } else if r
            .on_hover_text("time every layer of the plan on the integer runtime again")
            .clicked()
        {
            cx.send(Command::Plan(PlanCommand::MeasureLatency));
        }
        ui.separator();
        if let Some((done, total)) = ws.calibrating {
            ui.spinner();
            ui.label(format!("calibrating {done}/{total} images"));
        } else if ws.is_evaluating() {
            ui.spinner();
            ui.label("evaluating the plan…");
        } else if let Some(e) = &ws.eval_error {
            ui.colored_label(ui.visuals().error_fg_color, e);
        } else if let Some((p50, p90, n)) = ws.whatif_percentiles() {
            ui.weak(format!(
                "what-if {:.2} s (p50 {p50:.2}, p90 {p90:.2}, n={n})",
                ws.whatif_seconds.last().copied().unwrap_or(0.0),
            ))
            .on_hover_text("time from a plan change to its accuracy on screen");
        }
    });
}

fn metric(ui: &mut egui::Ui, name: &str, v: RichText, tip: &str) {
    ui.horizontal(|ui| {
        ui.spacing_mut().item_spacing.x = 4.0;
        ui.label(RichText::new(format!("{name}:")).weak());
        ui.label(v.strong()).on_hover_text(tip);
    });
}
