//! `qatlas search`: automatic mixed precision (`analysis::search`). Prints the plans as they
//! are evaluated, then the Pareto front and the chosen plan with its latency measured beside
//! all-int8 and float; `--out plan.ron` writes the chosen plan with its calibrated ranges
//! (even when the constraint is not met, which it then says); `--json` prints the report.
//! `--qat-epochs N` then fine-tunes the chosen plan with QAT and reports its accuracy before
//! and after on the same evaluation images (`--qat-out` keeps the model).

use super::common::{DataArgs, default_model, print_json};
use super::ptq::PlanArgs;
use crate::analysis::search::{
    Candidate, Objective, SearchConfig, SearchData, SearchEvent, search,
};
use crate::data::Split;
use crate::io::load_any;
use crate::quant::Precision;
use clap::Args;
use std::path::PathBuf;
use std::sync::atomic::AtomicBool;
use std::time::Duration;

/// Flags of `qatlas search`.
#[derive(Args, Debug)]
pub struct SearchArgs {
    #[arg(long)]
    pub model: Option<PathBuf>,
    #[command(flatten)]
    pub data: DataArgs,
    /// Observers and granularity of every candidate (a plan file's excluded layers stay fp32).
    #[command(flatten)]
    pub plan: PlanArgs,
    /// Largest accuracy drop against float, percentage points.
    #[arg(long, default_value_t = 0.3)]
    pub max_drop: f64,
    #[arg(long, value_enum, default_value = "size")]
    pub objective: Objective,
    /// Time budget: 90, 90s, 2m.
    #[arg(long, default_value = "60s")]
    pub budget: String,
    #[arg(long, default_value_t = 1000)]
    pub calib_samples: usize,
    /// Test images each candidate is measured on.
    #[arg(long, default_value_t = 1000)]
    pub samples: usize,
    /// Keep a layer at a precision: --pin conv1=fp32 (repeatable).
    #[arg(long)]
    pub pin: Vec<String>,
    /// Write the chosen plan with its calibrated ranges (RON).
    #[arg(long)]
    pub out: Option<PathBuf>,
    #[arg(long)]
    pub json: bool,
    /// Fine-tune the chosen plan with this many epochs of QAT (0: none).
    #[arg(long, default_value_t = 0)]
    pub qat_epochs: usize,
    /// Peak learning rate of that QAT (AdamW, cosine to 0).
    #[arg(long, default_value_t = 1e-4)]
    pub qat_lr: f32,
    /// Train that QAT on the first N training images only.
    #[arg(long)]
    pub qat_limit: Option<usize>,
    /// Write the fine-tuned fake-quant model (.safetensors).
    #[arg(long)]
    pub qat_out: Option<PathBuf>,
}

/// The chosen plan before and after the short QAT (`--qat-epochs`).
#[derive(serde::Serialize)]
struct QatAfter {
    epochs: usize,
    train_images: usize,
    /// The searched plan's accuracy (fake quant, the search's evaluation images).
    before: f64,
    /// QAT's starting point measured by the QAT run (same plan and ranges).
    start: Option<f64>,
    after: Option<f64>,
    drop_pp_after: Option<f64>,
    seconds: f64,
    error: Option<String>,
}

fn fine_tune(
    a: &SearchArgs,
    model: &crate::io::Model,
    plan: &crate::quant::QuantPlan,
    eval: &crate::data::Dataset,
    norm: &crate::data::Normalization,
) -> anyhow::Result<(crate::jobs::QatOutcome, usize)> {
    use crate::jobs::qat_request::{QatPrecision, QatRequest};
    let train = a.data.load(Split::Train, a.qat_limit)?;
    let req = QatRequest {
        precision: QatPrecision::Plan,
        epochs: a.qat_epochs,
        lr: a.qat_lr,
        lsq: false,
        freeze_bn_after: None,
        freeze_observers_after: None,
        limit: a.qat_limit,
        ..QatRequest::default()
    };
    let mut m = model.clone();
    m.meta.normalization = norm.clone();
    let command = std::env::args().collect::<Vec<_>>().join(" ");
    let spec = req.spec(&m, command, None, Some(plan.clone()));
    let pb = super::common::progress(0, "QAT of the chosen plan");
    let out = crate::jobs::run_qat(
        &spec,
        &train,
        Some(eval),
        &crate::train::Control::new(),
        &|e| {
            if let crate::jobs::JobEvent::Train(crate::train::TrainEvent::Step {
                step,
                total_steps,
                ..
            }) = e
            {
                pb.set_length(total_steps as u64);
                pb.set_position(step as u64);
            }
        },
    )?;
    pb.finish_and_clear();
    Ok((out, train.len()))
}

fn budget(s: &str) -> anyhow::Result<Duration> {
    let t = s.trim();
    let (num, mult) = if let Some(m) = t.strip_suffix('m') {
        (m, 60.0)
    } else {
        (t.strip_suffix('s').unwrap_or(t), 1.0)
    };
    let v: f64 = num.parse().map_err(|_| {
        anyhow::anyhow!("--budget: expected seconds such as 60s or 2m, found '{s}'")
    })?;
    anyhow::ensure!(
        v > 0.0 && v * mult <= 86_400.0,
        "--budget must be between 0 and 24 h"
    );
    Ok(Duration::from_secs_f64(v * mult))
}

fn pins(v: &[String]) -> anyhow::Result<std::collections::BTreeMap<String, Precision>> {
    v.iter()
        .map(|p| {
            let (layer, prec) = p
                .split_once('=')
                .ok_or_else(|| anyhow::anyhow!("--pin: expected layer=precision, found '{p}'"))?;
            let prec = <Precision as clap::ValueEnum>::from_str(prec, true)
                .map_err(|_| anyhow::anyhow!("--pin {p}: precision is fp32, fp16, int8 or int4"))?;
            Ok((layer.to_string(), prec))
        })
        .collect()
}

fn line(c: &Candidate) -> String {
    let layers: Vec<String> = c
        .layers
        .iter()
        .map(|(n, p)| format!("{n}:{}", p.name()))
        .collect();
    let measured = c
        .latency_us
        .map_or(String::new(), |us| format!(" (measured {us:.1} µs)"));
    format!(
        "{:.2} % ({:+.2} pp)  {:>9} B  ~{:.1} µs{measured}  {}",
        c.accuracy * 100.0,
        -c.drop_pp,
        c.weight_bytes,
        c.latency_est_us,
        layers.join(" ")
    )
}

/// Runs `qatlas search`.
pub fn run(a: SearchArgs) -> anyhow::Result<()> {
    anyhow::ensure!(
        a.samples > 0 && a.calib_samples > 0,
        "--samples and --calib-samples must be positive"
    );
    anyhow::ensure!(a.max_drop >= 0.0, "--max-drop must be at least 0");
    if let Some(p) = &a.qat_out {
        anyhow::ensure!(
            a.qat_epochs > 0,
            "--qat-out {}: it needs --qat-epochs N (N > 0)",
            p.display()
        );
        anyhow::ensure!(
            p.extension().is_some_and(|e| e == "safetensors"),
            "--qat-out {}: the fine-tuned model is written as .safetensors",
            p.display()
        );
    }
    let path = a.model.clone().unwrap_or_else(default_model);
    let model = load_any(&path)?;
    let base = a.plan.plan(&model.graph, Precision::Int8)?;
    let norm = a.data.normalization(&model.meta.normalization)?;
    let calib = a.data.load(Split::Train, Some(a.calib_samples))?;
    let eval = a.data.load(Split::Test, Some(a.samples))?;
    norm.validate(calib.c)?;
    let cfg = SearchConfig {
        max_drop_pp: a.max_drop,
        objective: a.objective,
        budget: budget(&a.budget)?,
        calib_samples: a.calib_samples,
        eval_samples: a.samples,
        pinned: pins(&a.pin)?,
        ..SearchConfig::default()
    };
    let d = SearchData {
        model: &model.graph,
        base: &base,
        calib: &calib,
        eval: &eval,
        norm: &norm,
        resume: None,
    };
    let quiet = a.json;
    let r = search(&d, &cfg, &AtomicBool::new(false), &mut |e| {
        if quiet {
            return;
        }
        match e {
            SearchEvent::Baseline {
                float_accuracy,
                int8,
            } => {
                eprintln!(
                    "float {:.2} %; all int8: {}",
                    float_accuracy * 100.0,
                    line(&int8)
                );
            }
            SearchEvent::Resumed { tried, .. } => eprintln!("resuming from {} plans", tried.len()),
            SearchEvent::Tried { index, candidate } => {
                eprintln!("#{index:<3} {}", line(&candidate))
            }
        }
    })?;
    if let Some(out) = &a.out {
        let text = r.chosen_plan.to_ron()?;
        crate::io::atomic::write_atomic(out, text.as_bytes())
            .map_err(|e| anyhow::anyhow!("{}: {e}", out.display()))?;
    }
    let qat = if a.qat_epochs > 0 {
        let t = std::time::Instant::now();
        let (out, n) = fine_tune(&a, &model, &r.chosen_plan, &eval, &norm)?;
        if let (Some(path), None) = (&a.qat_out, &out.error) {
            crate::io::save_model(&out.model, path)?;
        }
        Some(QatAfter {
            epochs: a.qat_epochs,
            train_images: n,
            before: r.best().accuracy,
            start: out.start_accuracy,
            after: out.quantized_accuracy,
            drop_pp_after: out
                .quantized_accuracy
                .map(|q| (r.float_accuracy - q) * 100.0),
            seconds: t.elapsed().as_secs_f64(),
            error: out.error,
        })
    } else {
        None
    };
    if a.json {
        let mut v = serde_json::to_value(&r)?;
        v["qat"] = serde_json::to_value(&qat)?;
        v["summary"] = summary(&r);
        return print_json(&v);
    }
    let best = r.best();
    println!(
        "{}: {} plans in {:.1} s ({}), float {:.2} % on {} images",
        path.display(),
        r.tried.len(),
        r.seconds,
        if r.stopped_early {
            "budget reached"
        } else {
            "search complete"
        },
        r.float_accuracy * 100.0,
        r.eval_images
    );
    println!("Pareto front (accuracy, weight bytes, estimated latency):");
    for c in r.tried.iter().filter(|c| c.on_front) {
        println!("  {}", line(c));
    }
    println!(
        "chosen ({}{}): {}",
        match a.objective {
            Objective::Size => "smallest",
            Objective::Latency => "fastest",
        },
        if r.constraint_met {
            format!(" within {} pp", a.max_drop)
        } else {
            format!(
                "; NO plan is within {} pp, this is the most accurate",
                a.max_drop
            )
        },
        line(best)
    );
    println!(
        "  weights {} B = {:.2}x smaller than float ({} B), all-int8 {} B ({:.2}x)",
        best.weight_bytes,
        r.float_bytes as f64 / best.weight_bytes.max(1) as f64,
        r.float_bytes,
        r.int8.weight_bytes,
        r.float_bytes as f64 / r.int8.weight_bytes.max(1) as f64
    );
    if let (Some(c), Some(i), Some((vs8, vsf))) = (&r.chosen_latency, &r.int8_latency, r.speedups())
    {
        println!(
            "  latency (measured, batch {}): {:.1} µs; all-int8 {:.1} µs; float {:.1} µs; \
             speed-up vs all-int8 {:.2}x, vs float {:.2}x (each against the float model timed \
             in its own run); {}",
            c.batch, c.int_us, i.int_us, c.float_us, vs8, vsf, c.kernel_path
        );
    }
    if let Some(out) = &a.out {
        println!("plan written to {}", out.display());
    }
    if let Some(q) = &qat {
        let pct = |v: Option<f64>| v.map_or("—".into(), |v| format!("{:.2} %", v * 100.0));
        println!(
            "QAT of the chosen plan, {} epoch(s) on {} images in {:.1} s: {:.2} % before, {} at the start, {} after ({} pp vs float)",
            q.epochs,
            q.train_images,
            q.seconds,
            q.before * 100.0,
            pct(q.start),
            pct(q.after),
            q.drop_pp_after
                .map_or("—".into(), |d| format!("{:+.2}", -d))
        );
        if let Some(e) = &q.error {
            println!("  QAT ended early: {e}");
        }
        if let (Some(path), None) = (&a.qat_out, &q.error) {
            println!("fine-tuned model written to {}", path.display());
        }
    }
    Ok(())
}

/// The chosen plan in the figures a user compares: accuracy, drop, bytes and size ratio vs
/// float, measured latency and its ratios vs all-int8 and float (same run), the front's plans.
fn summary(r: &crate::analysis::search::SearchReport) -> serde_json::Value {
    let b = r.best();
    let lat = r.chosen_latency.as_ref();
    let int8 = r.int8_latency.as_ref();
    serde_json::json!({
        "accuracy": b.accuracy,
        "drop_pp": b.drop_pp,
        "weight_bytes": b.weight_bytes,
        "size_ratio_vs_float": r.float_bytes as f64 / b.weight_bytes.max(1) as f64,
        "latency_us": lat.map(|l| l.int_us),
        "int8_latency_us": int8.map(|l| l.int_us),
        "float_latency_us": lat.map(|l| l.float_us),
        "int8_float_latency_us": int8.map(|l| l.float_us),
        "speedup_vs_int8": r.speedups().map(|s| s.0),
        "speedup_vs_float": r.speedups().map(|s| s.1),
        "front": r.tried.iter().enumerate().filter(|(_, c)| c.on_front).map(|(i, _)| i).collect::<Vec<_>>(),
        "plans": r.tried.len(),
        "constraint_met": r.constraint_met,
    })
}
