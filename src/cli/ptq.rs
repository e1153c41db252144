//! `qatlas ptq`: post-training quantization. Calibrates a plan on training images, compares the
//! fake-quant model with the float one on the test split (accuracy, per-layer SQNR and clipped
//! fractions) and writes the plan with its ranges (`.ron`) or the fake-quant model
//! (`.safetensors`, runnable by `qatlas eval`).

use super::common::{DataArgs, batch_for, default_model, print_json, progress};
use crate::analysis::compare;
use crate::data::Split;
use crate::io::atomic::write_atomic;
use crate::io::{Model, load_any, save_model};
use crate::jobs::rounding::learn_rounding;
use crate::quant::adaround::AdaRoundOptions;
use crate::quant::{Granularity, Observer, Precision, QuantPlan, ptq};
use anyhow::Context;
use clap::{Args, ValueEnum};
use serde_json::json;
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;
use std::time::Instant;

/// Weight granularity on the command line.
#[derive(Clone, Copy, Debug, ValueEnum, PartialEq, Eq)]
pub enum GranularityArg {
    PerChannel,
    PerTensor,
}

/// Plan-shaping flags shared by `ptq` and `sensitivity`.
#[derive(Args, Debug, Clone)]
pub struct PlanArgs {
    /// Plan file (RON); overrides --precision.
    #[arg(long, conflicts_with = "precision")]
    pub plan: Option<PathBuf>,
    /// Precision of every quantizable layer (int4 means int4 weights, int8 activations);
    /// default int8 for `ptq`, int4 for `sensitivity`.
    #[arg(long, value_enum)]
    pub precision: Option<Precision>,
    /// Activation precision of every layer (e.g. int4 with --precision int4 for W4A4).
    #[arg(long, value_enum)]
    pub activations: Option<Precision>,
    /// Activation observer: minmax, moving-average[:m], mse[:bins], percentile:P[:bins],
    /// entropy[:bins] (default: mse, PyTorch's histogram criterion).
    #[arg(long)]
    pub observer: Option<String>,
    /// Weight observer (default: minmax, per channel).
    #[arg(long)]
    pub weight_observer: Option<String>,
    #[arg(long, value_enum)]
    pub weight_granularity: Option<GranularityArg>,
}

impl PlanArgs {
    /// The plan: from the file, or the defaults at `--precision` (`default` if absent), with
    /// the overrides applied to every layer.
    pub fn plan(&self, g: &crate::graph::Graph, default: Precision) -> anyhow::Result<QuantPlan> {
        let mut plan = match &self.plan {
            Some(p) => QuantPlan::load(p, Some(g))?,
            None => QuantPlan::default_for(g, self.precision.unwrap_or(default)),
        };
        let obs = |s: &Option<String>, flag: &str| -> anyhow::Result<Option<Observer>> {
            s.as_deref()
                .map(|s| s.parse::<Observer>().with_context(|| format!("--{flag}")))
                .transpose()
        };
        let (ao, wo) = (
            obs(&self.observer, "observer")?,
            obs(&self.weight_observer, "weight-observer")?,
        );
        for l in &mut plan.layers {
            if let Some(a) = self.activations {
                l.activations = a;
            }
            if let Some(o) = ao {
                l.activation_observer = o;
            }
            if let Some(o) = wo {
                l.weight_observer = o;
            }
            match self.weight_granularity {
                Some(GranularityArg::PerChannel) => l.weight_granularity = Granularity::PerChannel,
                Some(GranularityArg::PerTensor) => l.weight_granularity = Granularity::PerTensor,
                None => {}
            }
        }
        Ok(plan)
    }
}

/// Flags of `qatlas ptq`.
#[derive(Args, Debug)]
pub struct PtqArgs {
    /// Model file, .safetensors or .onnx (default: the built-in pretrained seed-cnn).
    #[arg(long)]
    pub model: Option<PathBuf>,
    #[command(flatten)]
    pub data: DataArgs,
    #[command(flatten)]
    pub plan: PlanArgs,
    /// Calibration images (the first N of the training split).
    #[arg(long, default_value_t = 1000)]
    pub calib_samples: usize,
    /// Evaluate on the first N test images (default: all).
    #[arg(long)]
    pub limit: Option<usize>,
    /// Images per batch (default: up to 250, fewer for large images: about 4M input values).
    #[arg(long)]
    pub batch: Option<usize>,
    /// Output: a plan with ranges (.ron) or the fake-quant model (.safetensors).
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Learned rounding (AdaRound) with bias correction for every integer weight, on the
    /// calibration images (the rounded weights are the model's: write it as .safetensors).
    #[arg(long)]
    pub adaround: bool,
    /// AdaRound: optimisation steps per layer.
    #[arg(long, default_value_t = AdaRoundOptions::default().iterations)]
    pub adaround_iterations: usize,
    /// AdaRound: calibration images used for the layer statistics (the first N of
    /// --calib-samples).
    #[arg(long, default_value_t = 1024)]
    pub adaround_samples: usize,
    #[arg(long)]
    pub json: bool,
}

fn out_kind(p: &Path) -> anyhow::Result<bool> {
    match p
        .extension()
        .and_then(|e| e.to_str())
        .map(str::to_ascii_lowercase)
        .as_deref()
    {
        Some("ron") => Ok(false),
        Some("safetensors") => Ok(true),
        _ => anyhow::bail!(
            "--out must end in .ron (plan with ranges) or .safetensors (fake-quant model): {}",
            p.display()
        ),
    }
}

/// Runs `qatlas ptq`.
pub fn run(a: PtqArgs) -> anyhow::Result<()> {
    anyhow::ensure!(a.batch != Some(0), "--batch must be at least 1");
    anyhow::ensure!(a.calib_samples > 0, "--calib-samples must be at least 1");
    let model_out = a.out.as_deref().map(out_kind).transpose()?;
    anyhow::ensure!(
        !(a.adaround && model_out == Some(false)),
        "--adaround changes the weights, which a plan file cannot hold: write the fake-quant \
         model with --out FILE.safetensors"
    );
    let path = a.model.clone().unwrap_or_else(default_model);
    let model = load_any(&path)?;
    let plan = a.plan.plan(&model.graph, Precision::Int8)?;
    let norm = a.data.normalization(&model.meta.normalization)?;
    let calib = a.data.load(Split::Train, Some(a.calib_samples))?;
    let test = a.data.load(Split::Test, a.limit)?;
    norm.validate(calib.c)?;
    let stop = AtomicBool::new(false);
    let t0 = Instant::now();
    let pb = progress(calib.len() as u64, "calibrating");
    let batch = batch_for(a.batch, &calib);
    let batches = crate::data::Loader::new(&calib, &norm, batch, None, false).map(|(x, _)| x);
    let mut res = ptq(&model.graph, &plan, batches, &stop, &mut |n| {
        pb.set_position(n as u64)
    })?;
    calib.check()?;
    pb.finish_and_clear();
    let calib_s = t0.elapsed().as_secs_f64();
    let rounding = if a.adaround {
        Some(learned_rounding(
            &a, &mut res, &calib, &norm, batch, &test, &stop,
        )?)
    } else {
        None
    };
    let cmp = compare(
        &res.folded,
        &res.points,
        &res.prepared,
        &test,
        &norm,
        batch,
        &stop,
    )?;
    if let (Some(out), Some(as_model)) = (&a.out, model_out) {
        if as_model {
            let mut meta = model.meta.clone();
            meta.command = Some(std::env::args().collect::<Vec<_>>().join(" "));
            save_model(
                &Model {
                    graph: res.prepared.graph.clone(),
                    meta,
                },
                out,
            )?;
        } else {
            let text = res.plan.to_ron().context("encoding the plan")?;
            write_atomic(out, text.as_bytes())
                .with_context(|| format!("writing {}", out.display()))?;
        }
    }
    let drop_pp = (cmp.float_accuracy - cmp.quantized_accuracy) * 100.0;
    if a.json {
        return print_json(&json!({
            "model": path.display().to_string(),
            "float_accuracy": cmp.float_accuracy,
            "quantized_accuracy": cmp.quantized_accuracy,
            "drop_pp": drop_pp,
            "images": cmp.images,
            "calib_images": res.calibrator.images(),
            "calibration_seconds": calib_s,
            "observer_bytes": res.calibrator.memory_bytes(),
            "output_sqnr_db": cmp.output_sqnr_db,
            "folded": res.fold.folded,
            "layers": cmp.layers,
            "adaround": rounding,
            "out": a.out.as_ref().map(|p| p.display().to_string()),
        }));
    }
    println!(
        "{}: float {:.2}%, quantized {:.2}% (drop {:+.2} pp) on {} test images; calibrated on {} images in {:.1} s",
        path.display(),
        cmp.float_accuracy * 100.0,
        cmp.quantized_accuracy * 100.0,
        -drop_pp,
        cmp.images,
        res.calibrator.images(),
        calib_s
    );
    let f = |v: Option<f64>, pct: bool| match v {
        Some(x) if pct => format!("{:.3}%", x * 100.0),
        Some(x) => format!("{x:.1}"),
        None => "-".into(),
    };
    println!(
        "{:<16} {:<8} {:>5} {:>5} {:>9} {:>9} {:>9} {:>9} {:>9}",
        "layer", "op", "w", "act", "SQNR dB", "clipped", "in clip", "w SQNR", "w clip"
    );
    for l in &cmp.layers {
        println!(
            "{:<16} {:<8} {:>5} {:>5} {:>9} {:>9} {:>9} {:>9} {:>9}",
            l.layer,
            l.op,
            l.precision.name(),
            l.activations.name(),
            f(l.sqnr_db, false),
            f(l.clipped_fraction, true),
            f(l.input_clipped_fraction, true),
            f(l.weight_sqnr_db, false),
            f(l.weight_clipped_fraction, true),
        );
    }
    println!("logits SQNR {} dB", f(cmp.output_sqnr_db, false));
    if let Some(r) = &rounding {
        println!(
            "learned rounding: nearest rounding {:.2}%, learned {:.2}% ({:+.2} pp), {:.1} s",
            r.nearest_accuracy * 100.0,
            cmp.quantized_accuracy * 100.0,
            (cmp.quantized_accuracy - r.nearest_accuracy) * 100.0,
            r.seconds
        );
        println!(
            "{:<16} {:>8} {:>8} {:>10} {:>10}",
            "layer", "weights", "flipped", "rel. err", "bias shift"
        );
        for l in &r.layers {
            println!(
                "{:<16} {:>8} {:>8} {:>10.3} {:>10.2e}",
                l.layer, l.weights, l.flipped, l.relative_error, l.bias_shift
            );
        }
    }
    if let Some(out) = &a.out {
        println!("wrote {}", out.display());
    }
    Ok(())
}

/// What `--adaround` did: accuracy with nearest rounding (before), per-layer results, time.
#[derive(serde::Serialize)]
struct Rounding {
    nearest_accuracy: f64,
    layers: Vec<crate::quant::adaround::LayerRounding>,
    seconds: f64,
}

/// Evaluates nearest rounding, then replaces `res`'s fake-quant model by its learned rounding.
fn learned_rounding(
    a: &PtqArgs,
    res: &mut crate::quant::PtqResult,
    calib: &crate::data::Dataset,
    norm: &crate::data::Normalization,
    batch: usize,
    test: &crate::data::Dataset,
    stop: &AtomicBool,
) -> anyhow::Result<Rounding> {
    let nearest = crate::train::evaluate(&res.prepared.graph, test, norm, batch)?.accuracy;
    let opts = AdaRoundOptions {
        iterations: a.adaround_iterations,
        ..AdaRoundOptions::default()
    };
    let pb = progress(0, "learned rounding");
    let r = learn_rounding(
        res,
        calib,
        norm,
        a.adaround_samples,
        &opts,
        stop,
        &mut |d, t| {
            pb.set_length(t as u64);
            pb.set_position(d as u64);
        },
    )?;
    pb.finish_and_clear();
    res.prepared.graph = r.graph;
    Ok(Rounding {
        nearest_accuracy: nearest,
        layers: r.layers,
        seconds: r.seconds,
    })
}
