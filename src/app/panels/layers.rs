//! The layers table, always on the left: one row per layer (fake quantizers of a quantized
//! model are folded into their layer's row) with op, output shape, parameters, MACs, weight
//! bytes at the plan's precision, and for Conv/Linear/MatMul the precision, activation,
//! granularity and observer selectors, then the layer's SQNR, clipped fraction, sensitivity bar
//! and measured latency once known. Sortable by any column; clicking a row selects the layer
//! everywhere; checked rows take bulk edits. Unsupported nodes are red with the reason on hover.

use super::widgets::{self, ACT_CHOICES, WEIGHT_CHOICES, observer_choices, observer_label};
use crate::app::format;
use crate::app::state::{Command, FrameCtx};
use crate::app::workspace::{PlanCommand, PlanEdit, Target, Workspace};
use crate::graph::LayerSummary;
use crate::quant::plan::{Granularity, LayerPlan, Precision};
use eframe::egui::{self, Color32, RichText};
use egui_extras::{Column, TableBuilder};
use serde::{Deserialize, Serialize};
use std::collections::BTreeSet;

/// Columns the table can be sorted by.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum SortBy {
    #[default]
    Order,
    Name,
    Op,
    Params,
    Macs,
    Bytes,
    Sqnr,
    Clipped,
    Sensitivity,
    Latency,
}

/// The table's own state: sorting and the rows checked for bulk edits.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct LayersPanel {
    pub sort: SortBy,
    pub descending: bool,
    #[serde(skip)]
    pub checked: BTreeSet<String>,
    /// The precision the bulk buttons set.
    pub bulk: Option<Precision>,
}

/// Everything a row shows, gathered once per frame.
struct Row<'a> {
    order: usize,
    s: &'a LayerSummary,
    plan: Option<&'a LayerPlan>,
    /// The precision of a layer of an already-quantized model.
    fixed: Option<&'a str>,
    bytes: Option<usize>,
    sqnr: Option<f64>,
    clipped: Option<f64>,
    sens: Option<f64>,
    latency_us: Option<f64>,
}

fn gather<'a>(
    ws: &'a Workspace,
    layers: &'a [LayerSummary],
    fixed: &'a [(String, String)],
) -> Vec<Row<'a>> {
    let ev = ws.eval.as_ref().map(|t| &t.value);
    let lat = ws.latency.as_ref().map(|t| &t.value);
    layers
        .iter()
        .enumerate()
        .filter(|(_, s)| s.op != "FakeQuant")
        .map(|(order, s)| {
            let name = s.name.as_str();
            let report = ev.and_then(|e| e.eval.comparison.layers.iter().find(|l| l.layer == name));
            Row {
                order,
                s,
                plan: ws.layer_plan(name),
                fixed: fixed
                    .iter()
                    .find(|(l, _)| l == name)
                    .map(|(_, p)| p.as_str()),
                bytes: ev.and_then(|e| {
                    e.eval
                        .size
                        .layers
                        .iter()
                        .find(|l| l.layer == name)
                        .map(|l| l.bytes)
                }),
                sqnr: report.and_then(|l| l.sqnr_db),
                clipped: report.and_then(|l| l.clipped_fraction),
                sens: ws
                    .sweep
                    .rows
                    .get(name)
                    .and_then(|r| r.only_drop_pp.or(r.all_but_gain_pp)),
                latency_us: lat
                    .and_then(|l| l.layers.iter().find(|r| r.layer == name).map(|r| r.int_us)),
            }
        })
        .collect()
}

fn sort_rows(rows: &mut [Row<'_>], by: SortBy, descending: bool) {
    let key = |r: &Row<'_>| -> f64 {
        match by {
            SortBy::Order | SortBy::Name | SortBy::Op => 0.0,
            SortBy::Params => r.s.params as f64,
            SortBy::Macs => r.s.macs as f64,
            SortBy::Bytes => r.bytes.map_or(-1.0, |b| b as f64),
            SortBy::Sqnr => r.sqnr.unwrap_or(f64::NEG_INFINITY),
            SortBy::Clipped => r.clipped.unwrap_or(-1.0),
            SortBy::Sensitivity => r.sens.unwrap_or(f64::NEG_INFINITY),
            SortBy::Latency => r.latency_us.unwrap_or(-1.0),
        }
    };
    rows.sort_by(|a, b| {
        let o = match by {
            SortBy::Order => a.order.cmp(&b.order),
            SortBy::Name => a.s.name.cmp(&b.s.name),
            SortBy::Op => a.s.op.cmp(&b.s.op).then(a.order.cmp(&b.order)),
            _ => key(a).total_cmp(&key(b)).then(a.order.cmp(&b.order)),
        };
        if descending { o.reverse() } else { o }
    });
}

impl LayersPanel {
    pub fn ui(&mut self, ui: &mut egui::Ui, cx: &mut FrameCtx<'_>) {
        ui.add_space(4.0);
        ui.horizontal(|ui| {
            ui.heading("Layers");
            if let Some(v) = &cx.live.model {
                ui.weak(format!(
                    "{} · {}",
                    v.model.graph.name,
                    format::si(v.total_macs())
                ))
                .on_hover_text("model name · multiply-accumulates per image");
            }
        });
        let Some(view) = &cx.live.model else {
            widgets::no_model(ui, cx.live);
            return;
        };
        let layers = match &view.layers {
            Ok(l) => l,
            Err(e) => {
                ui.colored_label(ui.visuals().error_fg_color, e);
                return;
            }
        };
        if let Some(reason) = &cx.ws.blocked {
            ui.label(RichText::new(reason).color(ui.visuals().warn_fg_color));
        }
        self.bulk_bar(ui, cx);
        ui.separator();
        let mut rows = gather(cx.ws, layers, &view.fixed_precision);
        sort_rows(&mut rows, self.sort, self.descending);
        let current = cx.ws.current_eval().is_some();
        let lat_current = cx.ws.latency.as_ref().is_some_and(|l| l.rev == cx.ws.rev);
        let max_sens = rows
            .iter()
            .filter_map(|r| r.sens)
            .fold(0.0f64, f64::max)
            .max(0.1);
        let selected = cx.ws.selected.clone();
        let mut out: Vec<Command> = Vec::new();
        let unsupported_tip = |op: &str| {
            format!(
                "qatlas cannot run the ONNX op '{op}': the model opens, but evaluation, \
                 calibration and training stop at this node"
            )
        };
        egui::ScrollArea::horizontal().show(ui, |ui| {
            let mut table = TableBuilder::new(ui)
                .id_salt("layers_table")
                .striped(true)
                .resizable(true)
                .sense(egui::Sense::click())
                .cell_layout(egui::Layout::left_to_right(egui::Align::Center))
                .column(Column::exact(18.0))
                .column(Column::initial(110.0).at_least(60.0).clip(true))
                .column(Column::initial(70.0).at_least(40.0).clip(true))
                .column(Column::auto())
                .column(Column::auto())
                .column(Column::auto())
                .column(Column::auto())
                .columns(Column::auto(), 4)
                .columns(Column::auto(), 4)
                .min_scrolled_height(0.0);
            table = table.auto_shrink([false, false]);
            let headers: [(&str, SortBy, &str); 15] = [
                ("", SortBy::Order, "check rows for bulk edits"),
                ("Layer", SortBy::Name, "node name (click a header to sort)"),
                ("Op", SortBy::Op, "operation"),
                ("W", SortBy::Order, "weight precision"),
                ("A", SortBy::Order, "activation precision"),
                (
                    "Bytes",
                    SortBy::Bytes,
                    "weight bytes as the plan stores them",
                ),
                (
                    "SQNR",
                    SortBy::Sqnr,
                    "SQNR (dB) of the layer output, plan vs float",
                ),
                (
                    "Clip",
                    SortBy::Clipped,
                    "fraction of output values outside the grid",
                ),
                (
                    "Sens.",
                    SortBy::Sensitivity,
                    "accuracy drop (pp) when only this layer is quantized",
                ),
                (
                    "µs",
                    SortBy::Latency,
                    "measured time per image on the integer runtime",
                ),
                ("Output", SortBy::Order, "output shape per image"),
                ("Params", SortBy::Params, "trainable parameters"),
                ("MACs", SortBy::Macs, "multiply-accumulates per image"),
                (
                    "Gran.",
                    SortBy::Order,
                    "weight scales per tensor or per output channel",
                ),
                (
                    "Observer",
                    SortBy::Order,
                    "how activation ranges are chosen",
                ),
            ];
            table
                .header(20.0, |mut h| {
                    for (label, by, tip) in headers {
                        h.col(|ui| {
                            let arrow = if self.sort == by && by != SortBy::Order {
                                if self.descending { " v" } else { " ^" }
                            } else {
                                ""
                            };
                            let r = ui
                                .add(
                                    egui::Button::new(
                                        RichText::new(format!("{label}{arrow}")).strong(),
                                    )
                                    .frame(false),
                                )
                                .on_hover_text(tip);
                            if r.clicked() {
                                if self.sort == by {
                                    self.descending = !self.descending;
                                } else {
                                    self.sort = by;
                                    self.descending = matches!(
                                        by,
                                        SortBy::Params
                                            | SortBy::Macs
                                            | SortBy::Bytes
                                            | SortBy::Sensitivity
                                            | SortBy::Latency
                                            | SortBy::Clipped
                                    );
                                }
                            }
                        });
                    }
                })
                .body(|mut body| {
                    for r in &rows {
                        let name = r.s.name.clone();
                        body.row(22.0, |mut row| {
                            row.set_selected(selected.as_deref() == Some(name.as_str()));
                            row.col(|ui| {
                                if r.plan.is_some() {
                                    let mut on = self.checked.contains(&name);
                                    if ui
                                        .checkbox(&mut on, "")
                                        .on_hover_text("include in bulk edits")
                                        .changed()
                                    {
                                        if on {
                                            self.checked.insert(name.clone());
                                        } else {
                                            self.checked.remove(&name);
                                        }
                                    }
                                }
                            });
                            row.col(|ui| {
                                let on = selected.as_deref() == Some(name.as_str());
                                if ui
                                    .selectable_label(on, &r.s.name)
                                    .on_hover_text(format!("{}: select it everywhere", r.s.name))
                                    .clicked()
                                {
                                    out.push(Command::Plan(PlanCommand::Select(name.clone())));
                                }
                            });
                            row.col(|ui| {
                                if view.unsupported.contains(&r.s.name) {
                                    ui.label(
                                        RichText::new(&r.s.op)
                                            .color(Color32::from_rgb(230, 80, 80)),
                                    )
                                    .on_hover_text(unsupported_tip(&r.s.op));
                                } else {
                                    ui.label(&r.s.op);
                                }
                            });
                            match r.plan {
                                Some(p) => precision_selectors(&mut row, p, &mut out),
                                None => {
                                    row.col(|ui| {
                                        if let Some(f) = r.fixed {
                                            ui.label(f)
                                                .on_hover_text("quantized in the file (read only)");
                                        }
                                    });
                                    row.col(|_| {});
                                }
                            }
                            row.col(|ui| {
                                if let Some(b) = r.bytes {
                                    ui.label(widgets::value(widgets::bytes(b), current));
                                }
                            });
                            row.col(|ui| {
                                if let Some(s) = r.sqnr {
                                    ui.label(widgets::value(format!("{s:.1}"), current));
                                }
                            });
                            row.col(|ui| {
                                if let Some(c) = r.clipped {
                                    ui.label(widgets::value(format!("{:.2}%", c * 100.0), current));
                                }
                            });
                            row.col(|ui| {
                                if let Some(d) = r.sens {
                                    widgets::bar(
                                        ui,
                                        (d / max_sens) as f32,
                                        40.0,
                                        Color32::from_rgb(220, 120, 60),
                                    )
                                    .on_hover_text(format!("{d:.2} pp"));
                                    ui.label(format!("{d:.2}"));
                                }
                            });
                            row.col(|ui| {
                                if let Some(us) = r.latency_us {
                                    ui.label(widgets::value(widgets::micros(us), lat_current));
                                }
                            });
                            row.col(|ui| {
                                ui.label(format::shape(&r.s.output_shape));
                            });
                            row.col(|ui| {
                                ui.label(if r.s.params > 0 {
                                    format::si(r.s.params as u64)
                                } else {
                                    String::new()
                                });
                            });
                            row.col(|ui| {
                                ui.label(if r.s.macs > 0 {
                                    format::si(r.s.macs)
                                } else {
                                    String::new()
                                });
                            });
                            match r.plan {
                                Some(p) => setting_selectors(&mut row, p, &mut out),
                                None => {
                                    row.col(|_| {});
                                    row.col(|_| {});
                                }
                            }
                            if row.response().clicked() {
                                out.push(Command::Plan(PlanCommand::Select(name.clone())));
                            }
                        });
                    }
                });
        });
        for c in out {
            cx.send(c);
        }
    }

    fn bulk_bar(&mut self, ui: &mut egui::Ui, cx: &mut FrameCtx<'_>) {
        let Some(plan) = &cx.ws.plan else { return };
        ui.horizontal_wrapped(|ui| {
            let p = self.bulk.get_or_insert(Precision::Int8);
            widgets::choice(
                ui,
                "bulk_precision",
                "bulk precision",
                60.0,
                p,
                &WEIGHT_CHOICES,
                |c| c.name().to_string(),
            );
            let p = *p;
            if ui
                .button("Set all")
                .on_hover_text(format!("every layer's weights to {}", p.name()))
                .clicked()
            {
                cx.send(Command::Plan(PlanCommand::Edit(
                    Target::All,
                    PlanEdit::Weights(p),
                )));
            }
            let checked: Vec<String> = plan
                .layers
                .iter()
                .filter(|l| self.checked.contains(&l.layer))
                .map(|l| l.layer.clone())
                .collect();
            let r = ui.add_enabled(
                !checked.is_empty(),
                egui::Button::new(format!("Set checked ({})", checked.len())),
            );
            if checked.is_empty() {
                r.on_disabled_hover_text("check rows in the first column first");
            } else if r.clicked() {
                cx.send(Command::Plan(PlanCommand::Edit(
                    Target::Layers(checked),
                    PlanEdit::Weights(p),
                )));
            }
            let is_default = cx.ws.plan == cx.ws.default_plan;
            let r = ui.add_enabled(!is_default, egui::Button::new("Reset plan"));
            if is_default {
                r.on_disabled_hover_text(
                    "the plan is the default (int8 per-channel weights, u8 activations)",
                );
            } else if r.on_hover_text("back to the default int8 plan").clicked() {
                cx.send(Command::Plan(PlanCommand::Reset));
            }
        });
    }
}

/// The weight and activation precision selectors of a row.
fn precision_selectors(
    row: &mut egui_extras::TableRow<'_, '_>,
    p: &LayerPlan,
    out: &mut Vec<Command>,
) {
    let target = || Target::Layers(vec![p.layer.clone()]);
    row.col(|ui| {
        let mut w = p.effective();
        let name = format!("{} weights", p.layer);
        if widgets::choice(
            ui,
            (&p.layer, "w"),
            &name,
            52.0,
            &mut w,
            &WEIGHT_CHOICES,
            |c| c.name().to_string(),
        ) {
            out.push(Command::Plan(PlanCommand::Edit(
                target(),
                PlanEdit::Weights(w),
            )));
        }
    });
    row.col(|ui| {
        if !is_integer(p) {
            ui.weak("–")
                .on_hover_text("activations stay in float for fp32/fp16 layers");
            return;
        }
        let mut a = p.activations;
        let name = format!("{} activations", p.layer);
        if widgets::choice(
            ui,
            (&p.layer, "a"),
            &name,
            52.0,
            &mut a,
            &ACT_CHOICES,
            |c| c.name().to_string(),
        ) {
            out.push(Command::Plan(PlanCommand::Edit(
                target(),
                PlanEdit::Activations(a),
            )));
        }
    });
}

fn is_integer(p: &LayerPlan) -> bool {
    matches!(p.effective(), Precision::Int8 | Precision::Int4)
}

/// The granularity and observer selectors of a row.
fn setting_selectors(
    row: &mut egui_extras::TableRow<'_, '_>,
    p: &LayerPlan,
    out: &mut Vec<Command>,
) {
    let target = || Target::Layers(vec![p.layer.clone()]);
    let integer = is_integer(p);
    row.col(|ui| {
        if !integer {
            return;
        }
        let mut g = p.weight_granularity;
        let name = format!("{} granularity", p.layer);
        let all = [Granularity::PerChannel, Granularity::PerTensor];
        if widgets::choice(ui, (&p.layer, "g"), &name, 80.0, &mut g, &all, |c| {
            widgets::granularity_label(c).to_string()
        }) {
            out.push(Command::Plan(PlanCommand::Edit(
                target(),
                PlanEdit::Granularity(g),
            )));
        }
    });
    row.col(|ui| {
        if !integer {
            return;
        }
        let mut o = p.activation_observer;
        let name = format!("{} observer", p.layer);
        if widgets::choice(
            ui,
            (&p.layer, "o"),
            &name,
            76.0,
            &mut o,
            &observer_choices(),
            |c| observer_label(&c),
        ) {
            out.push(Command::Plan(PlanCommand::Edit(
                target(),
                PlanEdit::ActivationObserver(o),
            )));
        }
    });
}
