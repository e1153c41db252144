//! `qatlas sensitivity`: per-layer ablation at one precision (only this layer quantized / all
//! but this layer), printed as a table as the rows arrive, or as one JSON object.
//! Also `qatlas bench sensitivity`: the time of a full sweep against the float evaluation of
//! the same images, once per configuration, measured in the same run.

use super::common::{DataArgs, default_model, print_json};
use super::ptq::PlanArgs;
use crate::analysis::sensitivity::{
    LayerSensitivity, SensitivityCache, SensitivityEvent, SensitivityReport, SweepConfig,
    SweepData, SweepMode, sensitivity,
};
use crate::bench::median;
use crate::data::Split;
use crate::io::load_any;
use crate::train::evaluate;
use clap::Args;
use serde_json::json;
use std::path::PathBuf;
use std::sync::Mutex;
use std::sync::atomic::AtomicBool;
use std::time::Instant;

/// Flags of `qatlas sensitivity`.
#[derive(Args, Debug)]
pub struct SensitivityArgs {
    /// Model file, .safetensors or .onnx (default: the built-in pretrained seed-cnn).
    #[arg(long)]
    pub model: Option<PathBuf>,
    #[command(flatten)]
    pub data: DataArgs,
    #[command(flatten)]
    pub plan: PlanArgs,
    #[arg(long, value_enum, default_value = "both")]
    pub mode: SweepMode,
    /// Evaluation images (the first N of the test split).
    #[arg(long, default_value_t = 1000)]
    pub samples: usize,
    /// Calibration images (the first N of the training split).
    #[arg(long, default_value_t = 1000)]
    pub calib_samples: usize,
    #[arg(long, default_value_t = 250)]
    pub batch: usize,
    #[arg(long)]
    pub json: bool,
}

fn cell(o: Option<f64>, prec: usize) -> String {
    o.map_or("-".into(), |v| format!("{v:.prec$}"))
}

fn print_header() {
    println!(
        "{:<16} {:<8} {:>9} {:>9} {:>10} {:>10} {:>9} {:>10} {:>11}",
        "layer",
        "op",
        "only acc",
        "drop pp",
        "out SQNR",
        "all-but",
        "gain pp",
        "out SQNR",
        "layer SQNR"
    );
}

fn print_row(l: &LayerSensitivity) {
    println!(
        "{:<16} {:<8} {:>9} {:>9} {:>10} {:>10} {:>9} {:>10} {:>11}",
        l.layer,
        l.op,
        cell(l.only.map(|o| o.accuracy * 100.0), 2),
        cell(l.only_drop_pp, 2),
        cell(l.only.and_then(|o| o.output_sqnr_db), 1),
        cell(l.all_but.map(|o| o.accuracy * 100.0), 2),
        cell(l.all_but_gain_pp, 2),
        cell(l.all_but.and_then(|o| o.output_sqnr_db), 1),
        cell(l.layer_sqnr_db, 1),
    );
}

/// The data a sweep reads: normalisation, calibration images (train split), evaluation images
/// (test split), loaded and checked the same way by the command and its benchmark.
struct SweepInputs {
    norm: crate::data::Normalization,
    calib: crate::data::Dataset,
    eval: crate::data::Dataset,
}

impl SweepInputs {
    fn load(
        data: &DataArgs,
        model: &crate::io::Model,
        calib_samples: usize,
        samples: usize,
    ) -> anyhow::Result<Self> {
        let norm = data.normalization(&model.meta.normalization)?;
        let calib = data.load(Split::Train, Some(calib_samples))?;
        let eval = data.load(Split::Test, Some(samples))?;
        norm.validate(calib.c)?;
        Ok(SweepInputs { norm, calib, eval })
    }

    fn data<'a>(
        &'a self,
        model: &'a crate::io::Model,
        plan: &'a crate::quant::QuantPlan,
    ) -> SweepData<'a> {
        SweepData {
            model: &model.graph,
            plan,
            calib: &self.calib,
            eval: &self.eval,
            norm: &self.norm,
        }
    }
}

/// Runs `qatlas sensitivity`.
pub fn run(a: SensitivityArgs) -> anyhow::Result<()> {
    anyhow::ensure!(
        a.batch > 0 && a.samples > 0 && a.calib_samples > 0,
        "--batch, --samples and --calib-samples must be positive"
    );
    let path = a.model.clone().unwrap_or_else(default_model);
    let model = load_any(&path)?;
    let plan = a.plan.plan(&model.graph, crate::quant::Precision::Int4)?;
    let inputs = SweepInputs::load(&a.data, &model, a.calib_samples, a.samples)?;
    let cfg = SweepConfig {
        mode: a.mode,
        samples: a.samples,
        calib_samples: a.calib_samples,
        batch: a.batch,
    };
    let d = inputs.data(&model, &plan);
    let printing = !a.json;
    let out = Mutex::new(());
    let on_event = |e: SensitivityEvent| {
        if !printing {
            return;
        }
        let _guard = out.lock();
        match e {
            SensitivityEvent::Baseline {
                float_accuracy,
                quantized,
            } => {
                println!(
                    "{}: float {:.2}%, all layers quantized {:.2}% (logits SQNR {} dB)",
                    path.display(),
                    float_accuracy * 100.0,
                    quantized.accuracy * 100.0,
                    cell(quantized.output_sqnr_db, 1)
                );
                eprintln!("(rows print as variants finish; the full table follows)");
            }
            SensitivityEvent::Layer(l) => eprintln!(
                "  {}: only {} / all-but {}",
                l.layer,
                cell(l.only.map(|o| o.accuracy * 100.0), 2),
                cell(l.all_but.map(|o| o.accuracy * 100.0), 2)
            ),
        }
    };
    let sweep = sensitivity(&d, &cfg, None, &AtomicBool::new(false), &on_event)?;
    let r = &sweep.report;
    if a.json {
        return print_json(&report_json(r, &path.display().to_string(), &plan));
    }
    let p = plan
        .layers
        .first()
        .map(|l| l.precision.name())
        .unwrap_or("-");
    println!(
        "\nper-layer sensitivity at {p} ({} eval images, {} calibration images, {:.2} s):",
        r.images, r.calib_images, r.seconds
    );
    print_header();
    r.layers.iter().for_each(print_row);
    Ok(())
}

fn report_json(
    r: &SensitivityReport,
    model: &str,
    plan: &crate::quant::QuantPlan,
) -> serde_json::Value {
    json!({
        "model": model,
        "precision": plan.layers.first().map(|l| l.precision.name()),
        "activations": plan.layers.first().map(|l| l.activations.name()),
        "float_accuracy": r.float_accuracy,
        "quantized_accuracy": r.quantized.accuracy,
        "quantized_output_sqnr_db": r.quantized.output_sqnr_db,
        "images": r.images,
        "calib_images": r.calib_images,
        "seconds": r.seconds,
        "layers": r.layers,
    })
}

/// Flags of `qatlas bench sensitivity`.
#[derive(Args, Debug)]
pub struct BenchSensitivityArgs {
    /// Model file (default: the built-in pretrained seed-cnn).
    #[arg(long)]
    pub model: Option<PathBuf>,
    #[command(flatten)]
    pub data: DataArgs,
    #[arg(long, value_enum, default_value = "int4")]
    pub precision: crate::quant::Precision,
    #[arg(long, default_value_t = 1000)]
    pub samples: usize,
    #[arg(long, default_value_t = 1000)]
    pub calib_samples: usize,
    #[arg(long, default_value_t = 250)]
    pub batch: usize,
    /// Timed sweeps (the median is reported).
    #[arg(long, default_value_t = 3)]
    pub repeats: usize,
    #[arg(long)]
    pub json: bool,
}

/// Runs `qatlas bench sensitivity`: full sweeps (both modes, every layer) without cache, the
/// baseline (float evaluation of the same images once per evaluated configuration), and one
/// cached repeat.
pub fn bench(a: BenchSensitivityArgs) -> anyhow::Result<()> {
    anyhow::ensure!(
        a.repeats > 0 && a.samples > 0 && a.batch > 0,
        "--repeats, --samples and --batch must be positive"
    );
    let path = a.model.clone().unwrap_or_else(default_model);
    let model = load_any(&path)?;
    let plan = crate::quant::QuantPlan::default_for(&model.graph, a.precision);
    let inputs = SweepInputs::load(&a.data, &model, a.calib_samples, a.samples)?;
    let cfg = SweepConfig {
        mode: SweepMode::Both,
        samples: a.samples,
        calib_samples: a.calib_samples,
        batch: a.batch,
    };
    let d = inputs.data(&model, &plan);
    let layers = plan.layers.len();
    // float + all quantized + 2 per layer
    let configs = 2 + 2 * layers;
    let stop = AtomicBool::new(false);
    let (mut sweeps, mut baselines) = (Vec::new(), Vec::new());
    let cache = SensitivityCache::default();
    for r in 0..a.repeats {
        let t = Instant::now();
        sensitivity(&d, &cfg, None, &stop, &|_| {})?;
        sweeps.push(t.elapsed().as_secs_f64());
        let t = Instant::now();
        for _ in 0..configs {
            evaluate(&model.graph, &inputs.eval, &inputs.norm, a.batch)?;
        }
        baselines.push(t.elapsed().as_secs_f64());
        eprintln!(
            "  run {}: sweep {:.3} s, baseline {:.3} s",
            r + 1,
            sweeps[r],
            baselines[r]
        );
    }
    sensitivity(&d, &cfg, Some(&cache), &stop, &|_| {})?;
    let t = Instant::now();
    let again = sensitivity(&d, &cfg, Some(&cache), &stop, &|_| {})?;
    let cached_s = t.elapsed().as_secs_f64();
    let (s, b) = (median(&mut sweeps), median(&mut baselines));
    let threads = rayon::current_num_threads();
    let images = (configs * inputs.eval.len()) as f64;
    if a.json {
        return print_json(&json!({
            "model": path.display().to_string(), "precision": a.precision.name(), "layers": layers,
            "configurations": configs, "images": inputs.eval.len(), "calib_images": inputs.calib.len(),
            "threads": threads, "sweep_seconds": s, "baseline_seconds": b, "ratio": s / b,
            "baseline": "float evaluation of the same images once per configuration",
            "images_per_s": images / s, "cached_seconds": cached_s, "cached": again.cached,
        }));
    }
    println!(
        "sensitivity sweep, {} ({} layers, both modes, {} images, {} calibration images, {threads} threads, median of {}):",
        path.display(),
        layers,
        inputs.eval.len(),
        inputs.calib.len(),
        a.repeats
    );
    println!(
        "  sweep                          {s:>8.3} s  ({:.0} images/s over {configs} configurations)",
        images / s
    );
    println!(
        "  baseline (float eval x {configs:>2})      {b:>8.3} s  ratio {:.2}x",
        s / b
    );
    println!(
        "  cached repeat                  {cached_s:>8.6} s  (cached: {})",
        again.cached
    );
    Ok(())
}
