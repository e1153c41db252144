//! The Benchmarks panel (the centre's "Benchmarks" tab): the CPU's int8-relevant features and the
//! kernel path in use (so a user sees why the VNNI/AMX paths are absent), "Run kernel benchmark"
//! (quick by default; a checkbox asks for the full five-shape run) with a table that fills as
//! each shape finishes and a bar chart of GOP/s per shape and kernel, "Run end-to-end" (integer
//! vs float images/s at batch 64 and batch-1 latency, with ratios) and Stop. Everything shown
//! comes from [`crate::app::bench_run::BenchState`]; every action is a [`Command`]. Only draws.

use crate::app::bench_run::{BenchCommand, BenchKind, BenchState, E2eView, GemmView};
use crate::app::format;
use crate::app::state::{Command, FrameCtx};
use crate::bench::{CpuFeatures, E2eConfig, GemmConfig};
use eframe::egui::{self, Color32, RichText};
use egui_plot::{Bar, BarChart, Legend, Plot};
use serde::{Deserialize, Serialize};

const YES: Color32 = Color32::from_rgb(90, 180, 90);
const NO: Color32 = Color32::from_rgb(200, 110, 90);
const F32: Color32 = Color32::from_rgb(150, 150, 150);
/// Colours of the int8 kernels' bars, in table order.
const PALETTE: [Color32; 6] = [
    Color32::from_rgb(90, 140, 220),
    Color32::from_rgb(240, 150, 40),
    Color32::from_rgb(120, 190, 110),
    Color32::from_rgb(200, 100, 180),
    Color32::from_rgb(230, 200, 70),
    Color32::from_rgb(90, 200, 200),
];

/// The Benchmarks panel and its one setting.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct BenchPanel {
    /// The full kernel run (five shapes up to 2048³, 5 repeats, waits for a quiet machine)
    /// instead of the quick one.
    pub full_kernel_run: bool,
}

impl BenchPanel {
    pub fn ui(&mut self, ui: &mut egui::Ui, cx: &mut FrameCtx) {
        let b = &cx.live.bench;
        egui::ScrollArea::both()
            .auto_shrink([false, false])
            .show(ui, |ui| {
                ui.label(
                    RichText::new(
                        "Numbers are measured on this machine, now. Shared machines are noisy: \
                         compare the ratios measured in the same run, not absolute figures \
                         across runs.",
                    )
                    .color(ui.visuals().warn_fg_color),
                );
                ui.add_space(4.0);
                features_ui(ui, &b.features);
                ui.separator();
                self.buttons(ui, cx);
                let b = &cx.live.bench;
                if let Some(e) = &b.error {
                    ui.colored_label(ui.visuals().error_fg_color, e);
                }
                ui.add_space(6.0);
                ui.heading("int8 GEMM kernels");
                match &b.gemm {
                    Some(g) => gemm_ui(ui, g, b.running == Some(BenchKind::Gemm)),
                    None => {
                        ui.weak("Not run yet.");
                    }
                }
                ui.add_space(10.0);
                ui.heading("End to end (inference of the open model)");
                match &b.e2e {
                    Some(v) => e2e_ui(ui, v),
                    None => {
                        ui.weak("Not run yet.");
                    }
                }
            });
    }

    fn buttons(&mut self, ui: &mut egui::Ui, cx: &mut FrameCtx) {
        let b: &BenchState = &cx.live.bench;
        let blocker = cx.live.bench_blocker();
        let e2e_blocker = cx.live.e2e_blocker();
        let mut cmd = None;
        ui.horizontal(|ui| {
            let r = ui.add_enabled(blocker.is_ok(), egui::Button::new("Run kernel benchmark"));
            if r.clicked() {
                let cfg = if self.full_kernel_run {
                    GemmConfig::default()
                } else {
                    GemmConfig::quick()
                };
                cmd = Some(BenchCommand::RunGemm(cfg));
            }
            if let Err(why) = &blocker {
                r.on_disabled_hover_text(why);
            }
            ui.checkbox(&mut self.full_kernel_run, "full run")
                .on_hover_text(
                    "All five shapes (256³ … 2048³, 6272×144×32), 5 repeats of 150 ms, waiting \
                     for a quiet machine before each round: several minutes. Unchecked: 256³ \
                     and 6272×144×32, 3 repeats of 60 ms.",
                );
            ui.separator();
            let r = ui.add_enabled(e2e_blocker.is_ok(), egui::Button::new("Run end-to-end"));
            if r.clicked() {
                cmd = Some(BenchCommand::RunE2e(E2eConfig::quick()));
            }
            if let Err(why) = &e2e_blocker {
                r.on_disabled_hover_text(why);
            }
            ui.separator();
            if ui
                .add_enabled(
                    b.running.is_some() && !b.stopping,
                    egui::Button::new("Stop"),
                )
                .clicked()
            {
                cmd = Some(BenchCommand::Stop);
            }
            if let Some(label) = b.busy_label() {
                ui.spinner();
                let secs = b
                    .started
                    .map_or(0.0, |t| cx.now.duration_since(t).as_secs_f64());
                ui.label(format!("{label} {secs:.0} s"));
            }
        });
        if let Some(c) = cmd {
            cx.send(Command::Bench(c));
        }
    }
}

fn mark(ui: &mut egui::Ui, name: &str, on: bool) {
    let (sym, c) = if on { ("yes", YES) } else { ("no", NO) };
    ui.label(RichText::new(format!("{sym} {name}")).color(c));
}

fn features_ui(ui: &mut egui::Ui, f: &CpuFeatures) {
    ui.horizontal_wrapped(|ui| {
        ui.label(RichText::new("This CPU:").strong());
        mark(ui, "AVX2", f.avx2);
        mark(ui, "FMA", f.fma);
        mark(ui, "AVX-512 VNNI", f.avx512_vnni);
        mark(ui, "AVX-VNNI", f.avx_vnni);
        mark(ui, "AMX-INT8", f.amx);
    });
    ui.horizontal_wrapped(|ui| {
        ui.label(RichText::new("int8 kernel path in use:").strong());
        ui.monospace(&f.kernel_in_use);
    });
    egui::CollapsingHeader::new(format!(
        "Why {} path(s) are not run here",
        f.unavailable_paths.len()
    ))
    .id_salt("bench_unavailable")
    .show(ui, |ui| {
        for p in &f.unavailable_paths {
            ui.label(RichText::new(p).small());
        }
    });
}

fn shape_name(m: usize, k: usize, n: usize) -> String {
    if m == k && k == n {
        format!("{m}³")
    } else {
        format!("{m}×{k}×{n}")
    }
}

/// A kernel's short label: `avx2_mmm_u8s7i32_6x16` -> `avx2 u8s7` (path and operand types).
fn short(kernel: &str) -> String {
    let parts: Vec<&str> = kernel.split('_').collect();
    match parts[..] {
        [isa, _, types, _] => format!("{isa} {}", types.trim_end_matches("i32")),
        _ => kernel.to_string(),
    }
}

fn gemm_ui(ui: &mut egui::Ui, g: &GemmView, running: bool) {
    // The visible width, before the table may widen the scrolled content.
    let width = ui.available_width();
    let total = g.config.shapes.len();
    let mut status = format!(
        "{} of {total} shape(s), {} repeat(s) of ≥{} ms, interleaved, medians.",
        g.rows.len(),
        g.config.repeats,
        g.config.min_ms
    );
    match (running, &g.machine, g.finished) {
        (true, None, _) => status += " Measuring the clock and instruction ceilings…",
        (true, Some(_), _) => {
            if let Some(&(m, k, n)) = g.config.shapes.get(g.rows.len()) {
                status += &format!(" Measuring {}…", shape_name(m, k, n));
            }
        }
        (false, _, Some(true)) => status += " Stopped.",
        (false, _, Some(false)) => status += " Done.",
        _ => {}
    }
    ui.label(status);
    if let Some(m) = &g.machine {
        ui.label(
            RichText::new(format!(
                "{} thread(s); % of peak = GOP/s ÷ (the path's peak measured on this CPU × threads){}",
                m.threads,
                m.path_peaks
                    .iter()
                    .chain(&m.f32_peak)
                    .map(|p| format!("; {} {:.0} GOP/s/core", p.path, p.gops_per_core))
                    .collect::<String>()
            ))
            .small(),
        );
    }
    if g.rows.is_empty() {
        return;
    }
    egui::Grid::new("bench_gemm_table")
        .striped(true)
        .num_columns(6)
        .show(ui, |ui| {
            for h in [
                "shape",
                "kernel",
                "GOP/s",
                "f32 GOP/s",
                "int8 / f32",
                "% of peak",
            ] {
                ui.label(RichText::new(h).strong());
            }
            ui.end_row();
            for r in &g.rows {
                let shape = shape_name(r.m, r.k, r.n);
                for p in &r.paths {
                    ui.label(&shape);
                    ui.monospace(short(p.kernel)).on_hover_text(format!(
                        "{} ({} path), weights {}",
                        p.kernel, p.path, p.weights
                    ));
                    ui.label(format!("{:.1}", p.gops));
                    ui.label(format!("{:.1}", r.f32.gops));
                    ui.label(format!("{:.2}×", p.ratio_to_f32));
                    ui.label(p.pct_of_peak.map_or("–".into(), |x| format!("{x:.0} %")));
                    ui.end_row();
                }
                ui.label(&shape);
                ui.monospace("f32")
                    .on_hover_text("the gemm crate (kernels::sgemm)");
                ui.label(format!("{:.1}", r.f32.gops));
                ui.label(format!("{:.1}", r.f32.gops));
                ui.label("1.00×");
                ui.label(format!("{:.0} %", r.f32.pct_of_peak));
                ui.end_row();
            }
        });
    let noisy: Vec<String> = g
        .rows
        .iter()
        .filter(|r| r.noisy_runs > 0)
        .map(|r| {
            format!(
                "{}: {} of {} runs disturbed by other processes{}",
                shape_name(r.m, r.k, r.n),
                r.noisy_runs,
                r.runs,
                if r.median_used_noisy_runs {
                    " (median includes them)"
                } else {
                    ""
                }
            )
        })
        .collect();
    let cut: Vec<String> = g
        .rows
        .iter()
        .filter(|r| r.stopped_early)
        .map(|r| format!("{} ({} runs)", shape_name(r.m, r.k, r.n), r.runs))
        .collect();
    if !cut.is_empty() {
        ui.label(
            RichText::new(format!(
                "Stopped part way: {} kept the rounds it finished, fewer than the repeats asked for",
                cut.join(", ")
            ))
            .small()
            .color(ui.visuals().warn_fg_color),
        );
    }
    if !noisy.is_empty() {
        ui.label(
            RichText::new(noisy.join("; "))
                .small()
                .color(ui.visuals().warn_fg_color),
        );
    }
    ui.add_space(6.0);
    gemm_chart(ui, g, width);
}

/// Grouped bars: one group per shape, one bar per kernel (the f32 GEMM last, grey).
fn gemm_chart(ui: &mut egui::Ui, g: &GemmView, width: f32) {
    let kernels: Vec<&'static str> = g.rows[0].paths.iter().map(|p| p.kernel).collect();
    let n = kernels.len() + 1;
    let w = 0.8 / n as f64;
    let offset = |i: usize| -0.4 + w * (i as f64 + 0.5);
    let mut charts = Vec::new();
    for (i, name) in kernels.iter().enumerate() {
        let bars = g
            .rows
            .iter()
            .enumerate()
            .filter_map(|(s, r)| {
                let p = r.paths.iter().find(|p| p.kernel == *name)?;
                Some(Bar::new(s as f64 + offset(i), p.gops).width(w * 0.95))
            })
            .collect();
        charts.push(BarChart::new(short(name), bars).color(PALETTE[i % PALETTE.len()]));
    }
    let bars = g
        .rows
        .iter()
        .enumerate()
        .map(|(s, r)| Bar::new(s as f64 + offset(n - 1), r.f32.gops).width(w * 0.95))
        .collect();
    charts.push(BarChart::new("f32 (gemm crate)", bars).color(F32));
    let labels: Vec<String> = g.rows.iter().map(|r| shape_name(r.m, r.k, r.n)).collect();
    // Headroom above the tallest bar for the legend.
    let top = g
        .rows
        .iter()
        .flat_map(|r| r.paths.iter().map(|p| p.gops).chain([r.f32.gops]))
        .fold(0.0f64, f64::max);
    Plot::new("bench_gemm_chart")
        .height(260.0)
        .width(width)
        .include_y(top * 1.6)
        .legend(Legend::default().position(egui_plot::Corner::LeftTop))
        .y_axis_label("GOP/s")
        .include_y(0.0)
        .include_x(-0.5)
        .include_x(g.config.shapes.len() as f64 - 0.5)
        .allow_scroll(false)
        .x_axis_formatter(move |mark, _| {
            let i = mark.value.round();
            if (mark.value - i).abs() < 1e-9 && i >= 0.0 {
                labels.get(i as usize).cloned().unwrap_or_default()
            } else {
                String::new()
            }
        })
        .show(ui, |plot| {
            for c in charts {
                plot.bar_chart(c);
            }
        });
}

fn e2e_ui(ui: &mut egui::Ui, v: &E2eView) {
    if let Some(m) = &v.model {
        ui.label(format!("Model: {m}"));
    }
    if let Some(c) = &v.config {
        ui.label(
            RichText::new(format!(
                "PTQ with {} weights on the first 1000 training images, then the integer runtime \
                 against the float runtime (f32 NHWC layers, BatchNorm folded) and the graph \
                 executor (what training runs): {} repeat(s) of {:.2} s each, interleaved, medians.",
                c.precision.name(),
                c.repeats,
                c.secs
            ))
            .small(),
        );
    }
    match (v.finished, &v.progress) {
        (None, Some(p)) => {
            ui.add(
                egui::ProgressBar::new(p.done as f32 / p.total.max(1) as f32)
                    .text(p.label)
                    .desired_width(360.0),
            );
        }
        (None, None) => {
            ui.label("Loading the model…");
        }
        (Some(true), _) => {
            ui.label("Stopped.");
        }
        _ => {}
    }
    let Some(r) = &v.result else { return };
    let t = &r.timing;
    ui.label(format!(
        "{} thread(s), int8 kernel path {}",
        r.threads, r.kernel_path
    ));
    egui::Grid::new("bench_e2e_table")
        .striped(true)
        .num_columns(5)
        .show(ui, |ui| {
            let float = t.float_engine.name();
            for h in ["", "integer", float, "integer vs float", "graph executor"] {
                ui.label(RichText::new(h).strong());
            }
            ui.end_row();
            ui.label(format!("batch {}: images/s", t.batch));
            ui.label(format::images_per_s(t.int_images_per_s));
            ui.label(format::images_per_s(t.float_images_per_s));
            ui.label(format!("{:.2}× the throughput", r.images_per_s_ratio()));
            ui.label(format::images_per_s(t.graph_images_per_s));
            ui.end_row();
            ui.label("batch 1: latency");
            ui.label(format!("{:.1} µs", t.int_latency_us));
            ui.label(format!("{:.1} µs", t.float_latency_us));
            ui.label(format!("{:.2}× faster", r.latency_ratio()));
            ui.label(format!("{:.1} µs", t.graph_latency_us));
            ui.end_row();
        });
    if let Some(e) = &r.float_runtime_error {
        ui.label(format!(
            "The float runtime cannot run this model ({e}); the float figures are the graph executor's."
        ));
    }
}
