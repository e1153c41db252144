//! `qatlas bench`: throughput benchmarks that report ratios against a baseline measured in the
//! same run (these machines are shared and noisy; only same-run ratios are meaningful).
//!
//! `qatlas bench` alone runs `bench gemm` and `bench e2e` (defaults; `--quick` shortens the
//! kernel part) and prints both, or one JSON object holding both.
//!
//! `bench train`: images/s of full training steps on real data with the engine's float GEMM
//! (the `gemm` crate) versus the baseline engine configuration using `matrixmultiply` (the GEMM
//! behind `ndarray::dot`), runs interleaved, medians reported.

use super::common::{DataArgs, print_json};
use crate::bench::median;
use crate::data::{Normalization, Split};
use crate::kernels::{FloatBackend, set_float_backend};
use crate::train::throughput::train_images_per_s;
use crate::zoo::Arch;
use clap::{Args, Subcommand};
use serde_json::json;

/// Flags of `qatlas bench`. Without a subcommand: the kernel benchmark (`bench gemm`) and the
/// end-to-end benchmark (`bench e2e`) in one run, with their default settings.
#[derive(Args, Debug)]
#[command(args_conflicts_with_subcommands = true)]
pub struct BenchArgs {
    #[command(subcommand)]
    pub what: Option<BenchWhat>,
    /// One JSON object `{"gemm": ..., "e2e": ...}` (the objects `bench gemm --json` and
    /// `bench e2e --json` print).
    #[arg(long)]
    pub json: bool,
    /// The kernel benchmark on 256^3 and 6272x144x32 only.
    #[arg(long)]
    pub quick: bool,
}

/// Which benchmark.
#[derive(Subcommand, Debug)]
pub enum BenchWhat {
    /// Training throughput (images/s) of a built-in architecture.
    Train(BenchTrainArgs),
    /// int8 GEMM GOP/s per kernel path vs the f32 GEMM, with % of peak.
    Gemm(super::bench_gemm::BenchGemmArgs),
    /// Full per-layer sensitivity sweep time vs float evaluation of the same images.
    Sensitivity(super::sensitivity::BenchSensitivityArgs),
    /// End-to-end seed-cnn inference: integer runtime vs float, images/s and batch-1 latency.
    E2e(super::bench_e2e::BenchE2eArgs),
    /// Quantization-aware-training throughput vs float training of the same model.
    Qat(super::bench_qat::BenchQatArgs),
    /// A plan's latency per image on the integer kernels vs float, per layer and in total.
    Latency(super::bench_latency::BenchLatencyArgs),
}

/// Flags of `qatlas bench train`.
#[derive(Args, Debug)]
pub struct BenchTrainArgs {
    #[arg(long, value_enum, default_value = "seed-cnn")]
    pub arch: Arch,
    #[command(flatten)]
    pub data: DataArgs,
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

/// Runs `qatlas bench`.
pub fn run(a: BenchArgs) -> anyhow::Result<()> {
    match a.what {
        None => bench_all(a.json, a.quick),
        Some(BenchWhat::Train(t)) => bench_train(t),
        Some(BenchWhat::Gemm(g)) => super::bench_gemm::run(g),
        Some(BenchWhat::Sensitivity(s)) => super::sensitivity::bench(s),
        Some(BenchWhat::E2e(e)) => super::bench_e2e::run(e),
        Some(BenchWhat::Qat(q)) => super::bench_qat::run(q),
        Some(BenchWhat::Latency(l)) => super::bench_latency::run(l),
    }
}

/// A subcommand's flags with every default, as if given no flags.
fn defaults<T: clap::FromArgMatches + Args>() -> anyhow::Result<T> {
    let m = T::augment_args(clap::Command::new("bench")).try_get_matches_from(["bench"])?;
    Ok(T::from_arg_matches(&m)?)
}

/// `qatlas bench` alone: the kernel benchmark, then the end-to-end one, in the same run.
fn bench_all(json: bool, quick: bool) -> anyhow::Result<()> {
    let mut gemm: super::bench_gemm::BenchGemmArgs = defaults()?;
    gemm.quick = quick;
    let e2e: super::bench_e2e::BenchE2eArgs = defaults()?;
    let g = super::bench_gemm::measure(&gemm, json)?;
    let (e2e_json, path, e) = super::bench_e2e::measure(&e2e)?;
    if json {
        return print_json(&json!({"gemm": serde_json::to_value(&g)?, "e2e": e2e_json}));
    }
    super::bench_gemm::print_report(&g);
    println!();
    super::bench_e2e::print_result(&path, &e);
    Ok(())
}

fn bench_train(a: BenchTrainArgs) -> anyhow::Result<()> {
    anyhow::ensure!(
        a.batch > 0 && a.steps > 0 && a.repeats > 0,
        "--batch, --steps and --repeats must be positive"
    );
    let norm = a.data.normalization(&Normalization::mnist())?;
    let ds = a.data.load(Split::Train, Some(a.batch * 64))?;
    let threads = rayon::current_num_threads();
    let mut engine = Vec::new();
    let mut baseline = Vec::new();
    for r in 0..a.repeats {
        for backend in [FloatBackend::Gemm, FloatBackend::MatrixMultiply] {
            set_float_backend(backend);
            let mut g = a
                .arch
                .build(ds.image_shape(), ds.num_classes.max(2), r as u64)?;
            let ips = train_images_per_s(&mut g, &ds, &norm, a.batch, 10, a.steps)?;
            if backend == FloatBackend::Gemm {
                engine.push(ips)
            } else {
                baseline.push(ips)
            }
            eprintln!("  run {}: {:?} {:.0} img/s", r + 1, backend, ips);
        }
    }
    set_float_backend(FloatBackend::Gemm);
    let (e, b) = (median(&mut engine), median(&mut baseline));
    if a.json {
        print_json(&json!({
            "arch": a.arch.name(), "batch": a.batch, "threads": threads,
            "images_per_s": e, "baseline_images_per_s": b, "baseline": "matrixmultiply (ndarray dot) GEMM",
            "ratio": e / b,
        }))?;
    } else {
        println!(
            "{} training, batch {}, {} threads (median of {}):",
            a.arch.name(),
            a.batch,
            threads,
            a.repeats
        );
        println!("  qatlas (gemm crate)        {e:>9.0} img/s");
        println!(
            "  baseline (matrixmultiply)  {b:>9.0} img/s   ratio {:.2}x",
            e / b
        );
    }
    Ok(())
}
