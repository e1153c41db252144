//! `qatlas bench latency`: prints [`crate::bench::latency`]: a plan's latency per image on this
//! machine's integer kernels against the same model in f32 on the same engine, per layer (each
//! layer with the pooling / Add / conversion steps that follow it) and in total, measured
//! interleaved in the same run. The headless twin of the studio's latency column and strip.
//!
//! The plan: `--plan` (a plan with ranges is applied with `quant::prepare_from_plan`; one without
//! ranges is calibrated), or the default int8 plan; calibration uses the first
//! [`CALIB_IMAGES`] training images of `--data` (default: the built-in MNIST).

use super::common::{DataArgs, default_model, print_json};
use crate::bench::latency::{LatencyConfig, PlanLatency, plan_latency};
use crate::data::{Loader, Split};
use crate::graph::Graph;
use crate::io::load_any;
use crate::ops::OpKind;
use crate::quant::{Precision, QuantPlan, prepare_from_plan, ptq};
use anyhow::Context;
use clap::Args;
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;

/// Calibration images for a plan without ranges (the first ones of the training split).
pub const CALIB_IMAGES: usize = 256;

/// Flags of `qatlas bench latency`.
#[derive(Args, Debug)]
pub struct BenchLatencyArgs {
    /// Float model (default: the built-in pretrained seed-cnn).
    #[arg(long)]
    pub model: Option<PathBuf>,
    /// Plan file (RON); with ranges (`qatlas ptq --out plan.ron`) no data is read. Default:
    /// int8 everywhere, calibrated.
    #[arg(long)]
    pub plan: Option<PathBuf>,
    /// Calibration data (used when the plan has no ranges).
    #[command(flatten)]
    pub data: DataArgs,
    /// Images per run.
    #[arg(long, default_value_t = 1)]
    pub batch: usize,
    /// Interleaved rounds (integer, float) at least; medians reported.
    #[arg(long, default_value_t = 20)]
    pub repeats: usize,
    /// Keep adding rounds until the measurement took this long (bounded).
    #[arg(long, default_value_t = 0.3)]
    pub min_seconds: f64,
    #[arg(long)]
    pub json: bool,
}

/// The float graph and the plan's fake-quant graph, and a description of the plan.
fn graphs(a: &BenchLatencyArgs, path: &Path) -> anyhow::Result<(Graph, Graph, String)> {
    let model = load_any(path)?;
    let g = &model.graph;
    if let Some(n) = g
        .nodes
        .iter()
        .find(|n| matches!(n.op, OpKind::FakeQuant(_)))
    {
        anyhow::bail!(
            "{} is already quantized (it holds fake quantizer '{}'): give the float model and --plan",
            path.display(),
            n.name
        );
    }
    let (plan, what) = match &a.plan {
        Some(p) => (QuantPlan::load(p, Some(g))?, p.display().to_string()),
        None => (
            QuantPlan::default_for(g, Precision::Int8),
            "int8 (default plan)".to_string(),
        ),
    };
    if !plan.ranges.is_empty() {
        let (folded, prepared) =
            prepare_from_plan(g, &plan).with_context(|| format!("applying {what}"))?;
        return Ok((folded, prepared.graph, what));
    }
    let norm = a.data.normalization(&model.meta.normalization)?;
    let calib = a.data.load(Split::Train, Some(CALIB_IMAGES))?;
    norm.validate(calib.c)?;
    let batches = Loader::new(&calib, &norm, 128, None, false).map(|(x, _)| x);
    let res = ptq(g, &plan, batches, &AtomicBool::new(false), &mut |_| {})
        .with_context(|| format!("calibrating {what}"))?;
    let what = format!("{what}, calibrated on {} images", calib.len());
    Ok((res.folded, res.prepared.graph, what))
}

/// Runs `qatlas bench latency`.
pub fn run(a: BenchLatencyArgs) -> anyhow::Result<()> {
    let cfg = LatencyConfig {
        batch: a.batch,
        repeats: a.repeats,
        min_seconds: a.min_seconds,
    };
    cfg.validate()?;
    let path = a.model.clone().unwrap_or_else(default_model);
    let (float, prepared, what) = graphs(&a, &path)?;
    let r = plan_latency(&float, &prepared, &cfg, &AtomicBool::new(false))?;
    if a.json {
        let mut v = serde_json::to_value(&r)?;
        if let Some(o) = v.as_object_mut() {
            o.insert("model".into(), path.display().to_string().into());
            o.insert("plan".into(), what.into());
        }
        return print_json(&v);
    }
    print_result(&path, &what, &r);
    Ok(())
}

/// Prints the per-layer table and the totals.
pub fn print_result(path: &Path, plan: &str, r: &PlanLatency) {
    let ratio = |f: f64, i: f64| {
        if i > 0.0 {
            format!("{:.2}x", f / i)
        } else {
            String::new()
        }
    };
    println!(
        "{}, plan {plan}: latency per image, batch {}, {} threads, kernel path {} (medians of {} interleaved rounds)",
        path.display(),
        r.batch,
        r.threads,
        r.kernel_path,
        r.rounds
    );
    println!(
        "  {:<14} {:<18} {:>10} {:>10} {:>8}  int8 kernel",
        "layer", "compute", "int us", "float us", "speedup"
    );
    println!(
        "  {:<14} {:<18} {:>10.2} {:>10.2}",
        "(input)", "", r.other_int_us, r.other_float_us
    );
    for l in &r.layers {
        println!(
            "  {:<14} {:<18} {:>10.2} {:>10.2} {:>8}  {}",
            l.layer,
            l.compute,
            l.int_us,
            l.float_us,
            ratio(l.float_us, l.int_us),
            l.kernel.unwrap_or("")
        );
    }
    println!(
        "  {:<14} {:<18} {:>10.2} {:>10.2} {:>8}",
        "total",
        "",
        r.int_us,
        r.float_us,
        ratio(r.float_us, r.int_us)
    );
    println!(
        "  whole runs: integer {:.2} us, float {:.2} us per image; each layer includes the pooling / add / conversion steps after it",
        r.int_run_us, r.float_run_us
    );
}
