//! `qatlas bench qat`: quantization-aware-training throughput. Full training steps (forward,
//! backward, optimizer, observer updates) of the QAT training graph versus float training of the
//! same pretrained model, interleaved in one run, medians reported; the ratio float/QAT is the
//! QAT epoch-time factor.

use super::common::{DataArgs, default_model, print_json};
use super::ptq::PlanArgs;
use crate::bench::median;
use crate::data::{Loader, Split};
use crate::io::load_any;
use crate::quant::{Precision, QatOptions, prepare_qat};
use crate::train::throughput::train_images_per_s;
use clap::Args;
use serde_json::json;
use std::path::PathBuf;
use std::sync::atomic::AtomicBool;

/// Flags of `qatlas bench qat`.
#[derive(Args, Debug)]
pub struct BenchQatArgs {
    /// Float model (default: the built-in pretrained seed-cnn).
    #[arg(long)]
    pub model: Option<PathBuf>,
    #[command(flatten)]
    pub data: DataArgs,
    #[command(flatten)]
    pub plan: PlanArgs,
    /// Learnable scales (LSQ) instead of observers.
    #[arg(long)]
    pub lsq: bool,
    #[arg(long, default_value_t = 64)]
    pub batch: usize,
    /// Timed steps per measurement.
    #[arg(long, default_value_t = 150)]
    pub steps: usize,
    /// Measurements per configuration (interleaved; the median is reported).
    #[arg(long, default_value_t = 5)]
    pub repeats: usize,
    #[arg(long)]
    pub json: bool,
}

/// Runs `qatlas bench qat`.
pub fn run(a: BenchQatArgs) -> anyhow::Result<()> {
    anyhow::ensure!(
        a.batch > 0 && a.steps > 0 && a.repeats > 0,
        "--batch, --steps and --repeats must be positive"
    );
    let path = a.model.clone().unwrap_or_else(default_model);
    let model = load_any(&path)?;
    let norm = a.data.normalization(&model.meta.normalization)?;
    let ds = a.data.load(Split::Train, Some(a.batch * 64))?;
    norm.validate(ds.c)?;
    let plan = a.plan.plan(&model.graph, Precision::Int8)?;
    let calib = Loader::new(&ds, &norm, 256, None, false).map(|(x, _)| x);
    let opts = QatOptions {
        lsq: a.lsq,
        ..QatOptions::default()
    };
    let q = prepare_qat(
        &model.graph,
        &plan,
        calib,
        &AtomicBool::new(false),
        &mut |_| {},
        &opts,
    )?;
    let threads = rayon::current_num_threads();
    let (mut qat, mut float) = (Vec::new(), Vec::new());
    for r in 0..a.repeats {
        let mut g = q.graph.clone();
        let ips_q = train_images_per_s(&mut g, &ds, &norm, a.batch, 10, a.steps)?;
        let mut f = model.graph.clone();
        let ips_f = train_images_per_s(&mut f, &ds, &norm, a.batch, 10, a.steps)?;
        eprintln!(
            "  run {}: QAT {ips_q:.0} img/s, float {ips_f:.0} img/s",
            r + 1
        );
        qat.push(ips_q);
        float.push(ips_f);
    }
    let (q, f) = (median(&mut qat), median(&mut float));
    if a.json {
        return print_json(&json!({
            "model": path.display().to_string(), "batch": a.batch, "threads": threads,
            "lsq": a.lsq,
            "qat_images_per_s": q, "float_images_per_s": f,
            "epoch_time_ratio": f / q,
        }));
    }
    println!(
        "{} QAT training, batch {}, {} threads (median of {}):",
        path.display(),
        a.batch,
        threads,
        a.repeats
    );
    println!("  QAT    {q:>9.0} img/s");
    println!(
        "  float  {f:>9.0} img/s   QAT epoch time = {:.2}x float",
        f / q
    );
    Ok(())
}
