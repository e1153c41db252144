//! The Histograms tab: for the selected layer, its weight, input-activation and
//! output-activation histograms (linear or log counts) with the quantization range, the grid's
//! levels and the clipped tails drawn over them, the ranges each observer kind would choose,
//! and the per-output-channel weight ranges. The range bounds can be dragged: the worker
//! recomputes SQNR and clipped fraction for the dragged range while dragging, and "Apply" pins
//! it into the plan (which is then evaluated again).

use crate::analysis::layer_stats::{LayerStats, TensorView};
use crate::app::state::{Command, FrameCtx};
use crate::app::workspace::{PlanCommand, RangeView};
use crate::jobs::analysis::TensorRole;
use crate::quant::plan::Granularity;
use eframe::egui::{self, Color32, RichText};
use egui_plot::{Bar, BarChart, Plot, PlotPoint, Span, VLine};
use serde::{Deserialize, Serialize};

const RANGE: Color32 = Color32::from_rgb(230, 160, 40);
const CLIP: Color32 = Color32::from_rgba_premultiplied(120, 30, 30, 60);
const LEVEL: Color32 = Color32::from_rgba_premultiplied(90, 160, 230, 90);
const DRAG: Color32 = Color32::from_rgb(90, 220, 120);

/// The tab's own state: log scale, which tensor is being dragged and the dragged bounds.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct HistogramsPanel {
    pub log_y: bool,
    #[serde(skip)]
    drag: Option<Drag>,
}

#[derive(Clone, Debug, PartialEq)]
struct Drag {
    layer: String,
    role: TensorRole,
    lo: f32,
    hi: f32,
    /// Which bound the pointer holds (false: the lower one).
    holding_hi: Option<bool>,
}

impl HistogramsPanel {
    pub fn ui(&mut self, ui: &mut egui::Ui, cx: &mut FrameCtx<'_>) {
        let ws = cx.ws;
        if let Some(reason) = &ws.blocked {
            ui.label(reason);
            return;
        }
        let Some(layer) = ws.selected.clone() else {
            ui.label("Select a layer in the table on the left.");
            return;
        };
        let Some(ev) = ws.eval.as_ref().map(|t| &t.value) else {
            // The evaluation cannot run (no data, a failed worker): say why instead of spinning,
            // unless the data is still arriving.
            let loading = [&cx.live.data.train, &cx.live.data.test]
                .iter()
                .any(|l| matches!(l, crate::app::state::Loadable::Loading));
            if let (Some(why), false) = (&ws.eval_error, loading) {
                let text = format!("No histograms: {why} (see the status line and Model & data).");
                ui.label(RichText::new(text).color(ui.visuals().warn_fg_color));
                return;
            }
            ui.horizontal(|ui| {
                ui.spinner();
                ui.label("Calibrating the plan: the histograms come from its observers…");
            });
            return;
        };
        let current = ws.current_eval().is_some();
        let Some(stats) = ev.stats.iter().find(|s| s.layer == layer) else {
            ui.label(if ws.layer_plan(&layer).is_some() {
                format!(
                    "'{layer}' is not quantized in the current plan (fp32): it has no grid to \
                     show. Choose int8/int4 for it in the table."
                )
            } else {
                format!(
                    "'{layer}' has no weights and no quantizer of its own: select a Conv, \
                     Linear or MatMul layer to see its histograms."
                )
            });
            return;
        };
        ui.horizontal(|ui| {
            ui.heading(&layer);
            ui.weak(&stats.op);
            ui.checkbox(&mut self.log_y, "log counts");
            if !current {
                ui.spinner();
                ui.weak("updating for the changed plan…");
            }
        });
        let per_channel = ws
            .layer_plan(&layer)
            .is_some_and(|p| p.weight_granularity == Granularity::PerChannel);
        if self.drag.as_ref().is_some_and(|d| d.layer != layer) {
            self.drag = None;
        }
        let mut out = Vec::new();
        egui::ScrollArea::vertical()
            .auto_shrink([false, false])
            .show(ui, |ui| {
                let h = ((ui.available_height() - 120.0) / 3.2).clamp(110.0, 220.0);
                for (role, title, view) in [
                    (TensorRole::Weight, "Weights", stats.weight.as_ref()),
                    (TensorRole::Input, "Input activation", stats.input.as_ref()),
                    (TensorRole::Output, "Output activation", stats.activation.as_ref()),
                ] {
                    ui.separator();
                    match view {
                        Some(v) if role == TensorRole::Weight && per_channel => {
                            ui.horizontal_wrapped(|ui| {
                                ui.label(RichText::new(title).strong());
                                ui.weak(format!("{} per channel: each output channel has its own range (plot below); per-tensor shows one range to drag", v.grid));
                            });
                            let plain = TensorView {
                                histogram: v.histogram.clone(),
                                overlay: None,
                                grid: v.grid.clone(),
                            };
                            self.tensor(ui, &layer, role, "", &plain, None, h, &mut out);
                        }
                        Some(v) => self.tensor(ui, &layer, role, title, v, ws.range.as_ref(), h, &mut out),
                        None => {
                            ui.label(RichText::new(title).strong());
                            ui.weak("not quantized in this plan");
                        }
                    }
                }
                ui.separator();
                channel_ranges(ui, stats, h);
            });
        for c in out {
            cx.send(c);
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn tensor(
        &mut self,
        ui: &mut egui::Ui,
        layer: &str,
        role: TensorRole,
        title: &str,
        v: &TensorView,
        range: Option<&RangeView>,
        height: f32,
        out: &mut Vec<Command>,
    ) {
        if !title.is_empty() {
            ui.horizontal(|ui| {
                ui.label(RichText::new(title).strong());
                ui.weak(&v.grid);
            });
        }
        let Some(hist) = &v.histogram else {
            ui.add(egui::Label::new(RichText::new("this observer keeps no histogram (min-max / moving average): choose a histogram observer to see one").weak()).wrap());
            return;
        };
        let width = (hist.hi - hist.lo) / hist.counts.len().max(1) as f64;
        let bars: Vec<Bar> = hist
            .counts
            .iter()
            .enumerate()
            .map(|(i, &c)| {
                let y = if self.log_y {
                    ((c as f64) + 1.0).log10()
                } else {
                    c as f64
                };
                Bar::new(hist.lo + (i as f64 + 0.5) * width, y).width(width)
            })
            .collect();
        let dragging = self
            .drag
            .as_ref()
            .filter(|d| d.role == role && d.layer == layer)
            .cloned();
        let (lo, hi) = match (&dragging, &v.overlay) {
            (Some(d), _) => (d.lo, d.hi),
            (None, Some(o)) => o.range,
            (None, None) => (hist.lo as f32, hist.hi as f32),
        };
        let levels: &[f32] = v.overlay.as_ref().map_or(&[], |o| o.levels.as_slice());
        let xlo = hist.lo.min(lo as f64);
        let xhi = hist.hi.max(hi as f64);
        let mut new_drag = dragging.clone();
        let resp = Plot::new(("hist", layer, role as u8))
            .height(height)
            .allow_drag(false)
            .allow_zoom(false)
            .allow_scroll(false)
            .allow_boxed_zoom(false)
            .show_y(false)
            .y_axis_label(if self.log_y {
                "log10(count+1)"
            } else {
                "count"
            })
            .show(ui, |p| {
                p.set_plot_bounds_x(xlo - (xhi - xlo) * 0.03..=xhi + (xhi - xlo) * 0.03);
                p.bar_chart(BarChart::new("values", bars).color(Color32::from_rgb(120, 140, 170)));
                // Grid levels: every one for 4-bit grids, every 16th for 8-bit ones.
                let step = if levels.len() > 32 { 16 } else { 1 };
                for l in levels.iter().step_by(step) {
                    p.vline(VLine::new("grid levels", *l as f64).color(LEVEL).width(1.0));
                }
                let r = p.response().clone();
                if v.overlay.is_none() {
                    return;
                }
                p.span(Span::new("clipped", xlo - (xhi - xlo)..=lo as f64).fill(CLIP));
                p.span(Span::new("clipped ", hi as f64..=xhi + (xhi - xlo)).fill(CLIP));
                let c = if dragging.is_some() { DRAG } else { RANGE };
                p.vline(VLine::new("range", lo as f64).color(c).width(2.0));
                p.vline(VLine::new("range", hi as f64).color(c).width(2.0));
                // Which bound (if any) lies within 8 points of a screen x.
                let line_x = |x: f32| p.screen_from_plot(PlotPoint::new(x as f64, 0.0)).x;
                let near = |sx: f32, x: f32| (line_x(x) - sx).abs() < 8.0;
                if r.drag_started()
                    && let Some(origin) = p.ctx().input(|i| i.pointer.press_origin())
                    && (near(origin.x, lo) || near(origin.x, hi))
                {
                    // The nearer bound is held.
                    let hold_hi = (line_x(hi) - origin.x).abs() < (line_x(lo) - origin.x).abs();
                    new_drag = Some(Drag {
                        layer: layer.to_string(),
                        role,
                        lo,
                        hi,
                        holding_hi: Some(hold_hi),
                    });
                }
                if let Some(pt) = p.pointer_coordinate() {
                    if r.dragged()
                        && let Some(d) = new_drag.as_mut().filter(|d| d.role == role)
                    {
                        match d.holding_hi {
                            Some(true) => d.hi = (pt.x as f32).max(d.lo + f32::EPSILON),
                            Some(false) => d.lo = (pt.x as f32).min(d.hi - f32::EPSILON),
                            None => {}
                        }
                    }
                    let sx = p.screen_from_plot(pt).x;
                    if near(sx, lo) || near(sx, hi) {
                        p.ctx().set_cursor_icon(egui::CursorIcon::ResizeHorizontal);
                    }
                }
                if r.drag_stopped()
                    && let Some(d) = new_drag.as_mut()
                {
                    d.holding_hi = None;
                }
            });
        let _ = resp;
        if new_drag != dragging
            && let Some(d) = &new_drag
        {
            if dragging
                .as_ref()
                .is_none_or(|o| (o.lo, o.hi) != (d.lo, d.hi))
            {
                out.push(Command::Plan(PlanCommand::DragRange {
                    layer: layer.to_string(),
                    role,
                    min: d.lo,
                    max: d.hi,
                }));
            }
            self.drag = new_drag.clone();
        }
        if v.overlay.is_none() {
            return;
        }
        // Numbers under the plot: the plan's, then the dragged range's.
        let stats = range.filter(|r| r.layer == layer && r.role == role);
        ui.horizontal_wrapped(|ui| {
            if let Some(o) = &v.overlay {
                ui.label(format!(
                    "range [{:.4}, {:.4}] · scale {:.3e} · zero point {}",
                    o.range.0, o.range.1, o.scale, o.zero_point
                ));
            }
            match (&self.drag, stats) {
                (Some(d), Some(s)) if d.role == role => {
                    ui.separator();
                    ui.label(
                        RichText::new(format!(
                            "dragged [{:.4}, {:.4}]: SQNR {} · clipped {:.3} %",
                            d.lo,
                            d.hi,
                            s.stats.sqnr_db.map_or("–".into(), |v| format!("{v:.1} dB")),
                            s.stats.clipped_fraction * 100.0
                        ))
                        .color(DRAG),
                    );
                    if ui.button("Apply").on_hover_text("pin this range into the plan").clicked() {
                        out.push(Command::Plan(PlanCommand::ApplyRange {
                            layer: layer.to_string(),
                            role,
                            min: d.lo,
                            max: d.hi,
                        }));
                        self.drag = None;
                    }
                    if ui.button("Discard").clicked() {
                        self.drag = None;
                    }
                }
                _ => {
                    if ui
                        .small_button("Observer ranges")
                        .on_hover_text("what min-max, percentile, MSE and entropy would pick for this tensor (and its SQNR)")
                        .clicked()
                    {
                        out.push(Command::Plan(PlanCommand::DragRange {
                            layer: layer.to_string(),
                            role,
                            min: lo,
                            max: hi,
                        }));
                    }
                    ui.weak("drag a range bound to try another");
                }
            }
        });
        if let Some(s) = stats
            && self.drag.as_ref().is_none_or(|d| d.role != role)
        {
            ui.horizontal_wrapped(|ui| {
                ui.label(format!(
                    "SQNR {} · clipped {:.3} %",
                    s.stats.sqnr_db.map_or("–".into(), |v| format!("{v:.1} dB")),
                    s.stats.clipped_fraction * 100.0
                ));
                for (name, (a, b)) in &s.observers {
                    ui.separator();
                    let r = ui.button(format!("{name}: [{a:.3}, {b:.3}]"));
                    if r.on_hover_text("drag to this observer's range (then Apply to keep it)")
                        .clicked()
                    {
                        self.drag = Some(Drag {
                            layer: layer.to_string(),
                            role,
                            lo: *a,
                            hi: *b,
                            holding_hi: None,
                        });
                        out.push(Command::Plan(PlanCommand::DragRange {
                            layer: layer.to_string(),
                            role,
                            min: *a,
                            max: *b,
                        }));
                    }
                }
            });
        }
    }
}

/// Min and max of every output channel's weights.
fn channel_ranges(ui: &mut egui::Ui, s: &LayerStats, height: f32) {
    ui.label(RichText::new("Weight range per output channel").strong());
    if s.channel_ranges.is_empty() {
        ui.weak("no weights");
        return;
    }
    let lo: Vec<Bar> = s
        .channel_ranges
        .iter()
        .enumerate()
        .map(|(i, r)| Bar::new(i as f64, r.0 as f64).width(0.8))
        .collect();
    let hi: Vec<Bar> = s
        .channel_ranges
        .iter()
        .enumerate()
        .map(|(i, r)| Bar::new(i as f64, r.1 as f64).width(0.8))
        .collect();
    Plot::new(("channels", &s.layer))
        .height(height)
        .allow_drag(false)
        .allow_zoom(false)
        .allow_scroll(false)
        .x_axis_label("output channel")
        .legend(egui_plot::Legend::default())
        .show(ui, |p| {
            p.bar_chart(BarChart::new("min", lo).color(Color32::from_rgb(90, 150, 220)));
            p.bar_chart(BarChart::new("max", hi).color(Color32::from_rgb(220, 120, 60)));
        });
}
