//! `qatlas bench e2e`: end-to-end seed-cnn inference, integer runtime versus the float graph
//! (`Graph::infer`) in the same run: images/s at a batch size (default 64) and single-image
//! latency, medians of interleaved repeats, with the targets and ONNX Runtime's quoted
//! figures for context (quoted, not measured here).

use super::common::{DataArgs, default_model, print_json};
use crate::data::{Loader, Split};
use crate::io::load_any;
use crate::kernels::int8::selected_kernel;
use crate::quant::{Precision, QuantPlan, ptq};
use crate::runtime::throughput::measure;
use crate::runtime::{ConvertOptions, IntModel};
use clap::Args;
use serde_json::json;
use std::path::PathBuf;
use std::sync::atomic::AtomicBool;

/// Flags of `qatlas bench e2e`.
#[derive(Args, Debug)]
pub struct BenchE2eArgs {
    /// Float model to quantize (default: the built-in pretrained seed-cnn).
    #[arg(long)]
    pub model: Option<PathBuf>,
    /// Weight precision of every layer (int8 or int4; activations u8).
    #[arg(long, value_enum, default_value = "int8")]
    pub precision: Precision,
    #[command(flatten)]
    pub data: DataArgs,
    #[arg(long, default_value_t = 64)]
    pub batch: usize,
    /// Measurements per configuration (interleaved; medians reported).
    #[arg(long, default_value_t = 5)]
    pub repeats: usize,
    /// Seconds per measurement.
    #[arg(long, default_value_t = 0.4)]
    pub secs: f64,
    #[arg(long)]
    pub json: bool,
}

/// The targets (seed-cnn, 2 threads) and ONNX Runtime's figures it quotes.
const TARGET_IMAGES_PER_S: f64 = 150_000.0;
const TARGET_LATENCY_US: f64 = 25.0;
const ORT_QUOTED: [(&str, f64, f64); 2] = [("float", 74_400.0, 49.0), ("int8", 44_200.0, 58.0)];

/// Runs `qatlas bench e2e`.
pub fn run(a: BenchE2eArgs) -> anyhow::Result<()> {
    anyhow::ensure!(
        a.batch > 0 && a.repeats > 0 && a.secs > 0.0,
        "--batch, --repeats and --secs must be positive"
    );
    anyhow::ensure!(
        matches!(a.precision, Precision::Int8 | Precision::Int4),
        "--precision must be int8 or int4"
    );
    let path = a.model.clone().unwrap_or_else(default_model);
    let model = load_any(&path)?;
    let norm = a.data.normalization(&model.meta.normalization)?;
    let calib = a.data.load(Split::Train, Some(1000))?;
    let test = a.data.load(Split::Test, Some(a.batch))?;
    norm.validate(calib.c)?;
    let plan = QuantPlan::default_for(&model.graph, a.precision);
    let batches = Loader::new(&calib, &norm, 250, None, false).map(|(x, _)| x);
    let res = ptq(
        &model.graph,
        &plan,
        batches,
        &AtomicBool::new(false),
        &mut |_| {},
    )?;
    let m = IntModel::convert(&res.prepared.graph, &ConvertOptions::default())?;
    let x = Loader::new(&test, &norm, a.batch, None, false)
        .next()
        .map(|(x, _)| x)
        .ok_or_else(|| anyhow::anyhow!("no test images"))?;
    anyhow::ensure!(x.shape()[0] == a.batch, "fewer than --batch test images");
    let t = measure(&m, &model.graph, &x, a.repeats, a.secs)?;
    let threads = rayon::current_num_threads();
    let kernel = selected_kernel().map(|k| k.path.name()).unwrap_or("?");
    let layers = m.layers();
    if a.json {
        return print_json(&json!({
            "model": path.display().to_string(), "precision": a.precision.name(),
            "threads": threads, "kernel_path": kernel, "layers": layers,
            "batch": t.batch, "repeats": t.repeats,
            "int_images_per_s": t.int_images_per_s, "float_images_per_s": t.float_images_per_s,
            "images_per_s_ratio": t.int_images_per_s / t.float_images_per_s,
            "int_latency_us": t.int_latency_us, "float_latency_us": t.float_latency_us,
            "latency_ratio": t.float_latency_us / t.int_latency_us,
            "target_images_per_s_2_threads": TARGET_IMAGES_PER_S,
            "target_latency_us": TARGET_LATENCY_US,
            "ort_quoted": ORT_QUOTED.iter().map(|(k, ips, us)| json!({"runtime": k, "images_per_s": ips, "latency_us": us})).collect::<Vec<_>>(),
        }));
    }
    println!(
        "{} end to end, {} weights, {} threads, kernel path {} (median of {}):",
        path.display(),
        a.precision.name(),
        threads,
        kernel,
        t.repeats
    );
    println!(
        "  batch {:<3}  integer {:>9.0} img/s   float {:>9.0} img/s   ratio {:.2}x   (target {:.0} img/s at 2 threads)",
        t.batch,
        t.int_images_per_s,
        t.float_images_per_s,
        t.int_images_per_s / t.float_images_per_s,
        TARGET_IMAGES_PER_S
    );
    println!(
        "  batch 1    integer {:>9.1} us      float {:>9.1} us      ratio {:.2}x   (target {:.0} us)",
        t.int_latency_us,
        t.float_latency_us,
        t.float_latency_us / t.int_latency_us,
        TARGET_LATENCY_US
    );
    for (k, ips, us) in ORT_QUOTED {
        println!("  ONNX Runtime {k} (quoted, not measured here): {ips:.0} img/s, {us:.0} us");
    }
    Ok(())
}
