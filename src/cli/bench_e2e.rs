//! `qatlas bench e2e`: prints [`crate::bench::e2e`]: end-to-end seed-cnn inference, integer
//! runtime versus the float runtime and the float graph executor (`Graph::infer`) in the same run: images/s at a batch size (default 64) and single-image
//! latency, medians of interleaved repeats.

use super::common::{DataArgs, default_model, print_json};
use crate::bench::e2e::{CALIB_IMAGES, E2eConfig, E2eResult, run_e2e};
use crate::data::{Dataset, Pixels, Split};
use crate::io::load_any;
use crate::quant::Precision;
use clap::Args;
use serde_json::json;
use std::path::{Path, PathBuf};
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
    /// Time on this many random images of the model's input size (uniform 8-bit pixels, for
    /// calibration and timing) instead of a dataset: speed only, the accuracy is meaningless.
    #[arg(long, conflicts_with = "data")]
    pub random_images: Option<usize>,
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

/// Runs the benchmark: loads the model and data, then [`run_e2e`]. Returns the JSON object
/// `qatlas bench e2e --json` prints and the result for the table.
pub fn measure(a: &BenchE2eArgs) -> anyhow::Result<(serde_json::Value, PathBuf, E2eResult)> {
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
    let (calib, test) = match a.random_images {
        Some(n) => {
            let imgs = random_images(&model.graph.input_shape, n.max(a.batch), &path)?;
            (imgs.clone(), imgs)
        }
        None => (
            a.data.load(Split::Train, Some(CALIB_IMAGES))?,
            a.data.load(Split::Test, Some(a.batch))?,
        ),
    };
    norm.validate(calib.c)?;
    let cfg = E2eConfig {
        precision: a.precision,
        batch: a.batch,
        repeats: a.repeats,
        secs: a.secs,
    };
    let r = run_e2e(
        &model.graph,
        &calib,
        &test,
        &norm,
        &cfg,
        &mut |_| {},
        &AtomicBool::new(false),
    )?
    .ok_or_else(|| anyhow::anyhow!("the benchmark was stopped"))?;
    let t = &r.timing;
    let v = json!({
        "model": path.display().to_string(), "precision": r.precision,
        "threads": r.threads, "kernel_path": r.kernel_path, "layers": r.layers,
        "batch": t.batch, "repeats": t.repeats,
        "int_images_per_s": t.int_images_per_s, "float_images_per_s": t.float_images_per_s,
        "images_per_s_ratio": r.images_per_s_ratio(),
        "int_latency_us": t.int_latency_us, "float_latency_us": t.float_latency_us,
        "latency_ratio": r.latency_ratio(), "float_engine": t.float_engine,
        "float_runtime_error": r.float_runtime_error,
        "graph_images_per_s": t.graph_images_per_s, "graph_latency_us": t.graph_latency_us,
    });
    Ok((v, path, r))
}

/// `n` images of uniform random 8-bit pixels in the model's `[c, h, w]` input shape (fixed
/// seed), labelled 0.
fn random_images(shape: &[usize], n: usize, model: &Path) -> anyhow::Result<Dataset> {
    let &[c, h, w] = shape else {
        anyhow::bail!(
            "{}: --random-images needs an image model ([C, H, W] input), not {shape:?}",
            model.display()
        );
    };
    use rand::{RngCore, SeedableRng};
    let mut pixels = vec![0u8; n * c * h * w];
    rand_chacha::ChaCha8Rng::seed_from_u64(0).fill_bytes(&mut pixels);
    Ok(Dataset::new(
        "random",
        Pixels::U8(pixels),
        vec![0; n],
        [c, h, w],
        vec![],
    )?)
}

/// Runs `qatlas bench e2e`.
pub fn run(a: BenchE2eArgs) -> anyhow::Result<()> {
    let (v, path, r) = measure(&a)?;
    if a.json {
        return print_json(&v);
    }
    print_result(&path, &r);
    Ok(())
}

/// Prints the result as the human-readable table.
pub fn print_result(path: &Path, r: &E2eResult) {
    let t = &r.timing;
    println!(
        "{} end to end, {} weights, {} threads, kernel path {} (median of {}):",
        path.display(),
        r.precision,
        r.threads,
        r.kernel_path,
        t.repeats
    );
    if let Some(e) = &r.float_runtime_error {
        println!("  the float runtime cannot run this model ({e}): float = the graph executor");
    }
    println!(
        "  batch {:<3}  integer {:>9.0} img/s   {} {:>9.0} img/s   ratio {:.2}x   graph executor {:>9.0} img/s",
        t.batch,
        t.int_images_per_s,
        t.float_engine.name(),
        t.float_images_per_s,
        r.images_per_s_ratio(),
        t.graph_images_per_s
    );
    println!(
        "  batch 1    integer {:>9.1} us      {} {:>9.1} us      ratio {:.2}x   graph executor {:>9.1} us",
        t.int_latency_us,
        t.float_engine.name(),
        t.float_latency_us,
        r.latency_ratio(),
        t.graph_latency_us
    );
    println!(
        "  ONNX Runtime is not measured by this command; time it in the same sitting with tools/ort_e2e_bench.py"
    );
}
