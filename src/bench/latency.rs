//! Per-layer latency of a quantization plan on this machine's integer kernels, against the same
//! model computed in f32 by the same engine: what the studio's summary strip and layers table
//! show ("latency per image of the current plan, and vs float; per-layer time").
//!
//! Both the fake-quant graph of the plan and the float graph are converted to the runtime (the
//! float one has no fake quantizers, so every layer runs in f32) and profiled with
//! [`IntModel::profile`] on the same seeded random input, interleaved round by round (integer,
//! float, integer, float, ...), so both see the same machine load. Each round takes the median
//! of a few runs; the result is the median over rounds of each step.
//!
//! Steps become layers this way: a layer's time is its layer step plus the non-layer steps that
//! follow it up to the next layer step (its pooling, Add, requantization, dequantization, the
//! final reorder), so the rows add up to the whole; the steps before the first layer (input
//! layout change and quantization) are `other`. Depends on `runtime` and `quant` (folding);
//! knows nothing of files, printing or egui.

use super::{BenchError, CpuFeatures, median};
use crate::graph::Graph;
use crate::ops::OpKind;
use crate::quant::fold_batchnorm;
use crate::runtime::profile::layer_compute;
use crate::runtime::{ConvertOptions, IntModel, Profile};
use rand::{Rng, SeedableRng};
use serde::Serialize;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

/// Most interleaved rounds a measurement takes, whatever `min_seconds` asks.
pub const MAX_ROUNDS: usize = 2000;
/// Longest `min_seconds` accepted.
pub const MAX_SECONDS: f64 = 60.0;
/// Each round profiles each model for about this long (at least one run, at most
/// [`MAX_RUNS_PER_ROUND`]).
const ROUND_SECONDS: f64 = 2e-3;
const MAX_RUNS_PER_ROUND: usize = 50;

/// How to measure.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct LatencyConfig {
    /// Images per run (default 1: single-image latency).
    pub batch: usize,
    /// Interleaved rounds at least (default 20).
    pub repeats: usize,
    /// Keep adding rounds until the measurement took at least this long (at most
    /// [`MAX_ROUNDS`] rounds; default 0.3 s).
    pub min_seconds: f64,
}

impl Default for LatencyConfig {
    fn default() -> Self {
        LatencyConfig {
            batch: 1,
            repeats: 20,
            min_seconds: 0.3,
        }
    }
}

impl LatencyConfig {
    /// Checks the values are usable.
    pub fn validate(&self) -> Result<(), BenchError> {
        if self.batch == 0 || self.repeats == 0 || self.repeats > MAX_ROUNDS {
            return Err(BenchError::Config(format!(
                "batch must be positive and repeats between 1 and {MAX_ROUNDS}"
            )));
        }
        if !(self.min_seconds >= 0.0 && self.min_seconds <= MAX_SECONDS) {
            return Err(BenchError::Config(format!(
                "min_seconds must be between 0 and {MAX_SECONDS}, found {}",
                self.min_seconds
            )));
        }
        Ok(())
    }
}

/// One layer's time per image, microseconds (its layer step plus the non-layer steps after it).
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct LayerLatency {
    /// The plan's layer name (the Conv2d/Linear node).
    pub layer: String,
    /// How the plan's layer computes: "int8 GEMM", "int4 GEMM", "f32", "f16 weights, f32".
    pub compute: String,
    /// The int8 micro-kernel its weights were packed for (integer layers).
    pub kernel: Option<&'static str>,
    pub int_us: f64,
    pub float_us: f64,
}

/// The plan's latency per image against float, per layer and in total (microseconds).
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct PlanLatency {
    /// In program order.
    pub layers: Vec<LayerLatency>,
    /// Steps before the first layer (input reorder and quantization).
    pub other_int_us: f64,
    pub other_float_us: f64,
    /// Sum of the rows and `other`: the median step times added up.
    pub int_us: f64,
    pub float_us: f64,
    /// `float_us / int_us` (above 1: the plan is faster than float).
    pub ratio: f64,
    /// Median wall time of whole runs per image (includes the output copy; close to `int_us`).
    pub int_run_us: f64,
    pub float_run_us: f64,
    pub batch: usize,
    /// Interleaved rounds measured.
    pub rounds: usize,
    pub threads: usize,
    /// The int8 kernel path in use, as [`CpuFeatures::kernel_in_use`] reports it.
    pub kernel_path: String,
}

fn step(step: &'static str) -> impl Fn(String) -> BenchError {
    move |message| BenchError::Step { step, message }
}

/// Per-layer sums of a profile's steps (see the module doc): (layer name, seconds) in program
/// order, and the seconds of the steps before the first layer.
fn by_layer(p: &Profile) -> (Vec<(String, f64)>, f64) {
    let (mut rows, mut other) = (Vec::<(String, f64)>::new(), 0.0);
    for s in &p.steps {
        match (&s.layer, rows.last_mut()) {
            (Some(l), _) => rows.push((l.clone(), s.seconds_per_image)),
            (None, Some(r)) => r.1 += s.seconds_per_image,
            (None, None) => other += s.seconds_per_image,
        }
    }
    (rows, other)
}

/// Median over rounds of each step: a profile with the shape of `rounds[0]`.
fn median_profile(rounds: &[Profile]) -> Option<Profile> {
    let first = rounds.first()?;
    let mut p = first.clone();
    for (i, s) in p.steps.iter_mut().enumerate() {
        let mut v: Vec<f64> = rounds
            .iter()
            .filter_map(|r| r.steps.get(i).map(|s| s.seconds_per_image))
            .collect();
        s.seconds_per_image = median(&mut v);
    }
    let mut t: Vec<f64> = rounds.iter().map(|r| r.total_s).collect();
    p.total_s = median(&mut t);
    Some(p)
}

/// Measures the plan's latency: `float` is the float graph (BatchNorm is folded here if it is
/// not already), `prepared` the fake-quant graph of the plan (`quant::PtqResult::prepared.graph`,
/// or `prepare_from_plan`'s). Both run on the same seeded random input of `cfg.batch` images,
/// interleaved. [`BenchError::Stopped`] if `stop` was raised (checked between rounds).
pub fn plan_latency(
    float: &Graph,
    prepared: &Graph,
    cfg: &LatencyConfig,
    stop: &AtomicBool,
) -> Result<PlanLatency, BenchError> {
    cfg.validate()?;
    if let Some(n) = float
        .nodes
        .iter()
        .find(|n| matches!(n.op, OpKind::FakeQuant(_)))
    {
        return Err(step("float model")(format!(
            "it holds fake quantizer '{}': give the float model",
            n.name
        )));
    }
    let (folded, _) =
        fold_batchnorm(float).map_err(|e| step("folding BatchNorm")(e.to_string()))?;
    let opts = ConvertOptions::default();
    let int = IntModel::convert(prepared, &opts)
        .map_err(|e| step("converting the plan")(e.to_string()))?;
    let flt = IntModel::convert(&folded, &opts)
        .map_err(|e| step("converting the float model")(e.to_string()))?;
    if int.spec().input_shape != flt.spec().input_shape {
        return Err(step("models")(format!(
            "the plan's input {:?} differs from the float model's {:?}",
            int.spec().input_shape,
            flt.spec().input_shape
        )));
    }
    let (ie, _) = int.io_elems();
    let n = cfg.batch;
    let len = ie
        .checked_mul(n)
        .ok_or_else(|| BenchError::Config(format!("a batch of {n} images is too large")))?;
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(0);
    let x: Vec<f32> = (0..len).map(|_| rng.random_range(-1.0f32..2.0)).collect();
    let prof = |m: &IntModel, runs: usize, what: &'static str| {
        m.profile(&x, n, runs)
            .map_err(|e| step(what)(e.to_string()))
    };
    // Runs per round from one run of each.
    let once =
        prof(&int, 1, "profiling the plan")?.total_s + prof(&flt, 1, "profiling float")?.total_s;
    let runs =
        ((ROUND_SECONDS / (once * n as f64).max(1e-9)) as usize).clamp(1, MAX_RUNS_PER_ROUND);
    let (mut ir, mut fr) = (Vec::new(), Vec::new());
    let t = Instant::now();
    while ir.len() < cfg.repeats
        || (t.elapsed().as_secs_f64() < cfg.min_seconds && ir.len() < MAX_ROUNDS)
    {
        if stop.load(Ordering::Relaxed) {
            return Err(BenchError::Stopped);
        }
        ir.push(prof(&int, runs, "profiling the plan")?);
        fr.push(prof(&flt, runs, "profiling float")?);
    }
    let (Some(ip), Some(fp)) = (median_profile(&ir), median_profile(&fr)) else {
        return Err(step("profiling")("no rounds ran".into()));
    };
    let ((irows, iother), (frows, fother)) = (by_layer(&ip), by_layer(&fp));
    let infos = int.layers();
    let us = 1e6;
    let mut layers = Vec::with_capacity(irows.len());
    for (name, secs) in irows {
        let f = frows
            .iter()
            .find(|(l, _)| *l == name)
            .ok_or_else(|| step("models")(format!("layer '{name}' is not in the float model")))?;
        let (compute, kernel) = int
            .spec()
            .layers
            .iter()
            .zip(&infos)
            .find(|(l, _)| l.name == name)
            .map_or(("?", None), |(l, i)| (layer_compute(l), i.kernel));
        layers.push(LayerLatency {
            layer: name,
            compute: compute.to_string(),
            kernel,
            int_us: secs * us,
            float_us: f.1 * us,
        });
    }
    let int_us = layers.iter().map(|l| l.int_us).sum::<f64>() + iother * us;
    let float_us = frows.iter().map(|r| r.1).sum::<f64>() * us + fother * us;
    Ok(PlanLatency {
        layers,
        other_int_us: iother * us,
        other_float_us: fother * us,
        int_us,
        float_us,
        ratio: float_us / int_us,
        int_run_us: ip.total_s * us,
        float_run_us: fp.total_s * us,
        batch: n,
        rounds: ir.len(),
        threads: rayon::current_num_threads(),
        kernel_path: CpuFeatures::detect().kernel_in_use,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::quant::{Precision, QuantPlan, ptq};
    use crate::tensor::from_vec;
    use crate::zoo::Arch;

    fn quick() -> LatencyConfig {
        LatencyConfig {
            batch: 1,
            repeats: 3,
            min_seconds: 0.0,
        }
    }

    fn seed_cnn(plan: impl Fn(&Graph) -> QuantPlan) -> (Graph, Graph, QuantPlan) {
        let g = Arch::SeedCnn.build([1, 28, 28], 10, 0).unwrap();
        let x: Vec<f32> = (0..8 * 784)
            .map(|i| (i * 37 % 251) as f32 / 100.0 - 0.5)
            .collect();
        let x = from_vec(&[8, 1, 28, 28], x);
        let res = ptq(&g, &plan(&g), [x], &AtomicBool::new(false), &mut |_| {}).unwrap();
        (res.folded, res.prepared.graph, res.plan)
    }

    #[test]
    fn one_row_per_layer_and_rows_add_up() {
        let (float, prepared, plan) = seed_cnn(|g| QuantPlan::default_for(g, Precision::Int8));
        let r = plan_latency(&float, &prepared, &quick(), &AtomicBool::new(false)).unwrap();
        let names: Vec<&str> = r.layers.iter().map(|l| l.layer.as_str()).collect();
        let planned: Vec<&str> = plan.layers.iter().map(|l| l.layer.as_str()).collect();
        assert_eq!(names, planned);
        assert!(
            r.layers.iter().all(|l| l.int_us > 0.0 && l.float_us > 0.0),
            "{r:?}"
        );
        assert!(
            r.layers
                .iter()
                .all(|l| l.compute == "int8 GEMM" && l.kernel.is_some())
        );
        assert!(r.int_us > 0.0 && r.float_us > 0.0 && r.ratio > 0.0 && r.ratio.is_finite());
        assert!(r.int_run_us > 0.0 && r.float_run_us > 0.0);
        let sum = |f: fn(&LayerLatency) -> f64| r.layers.iter().map(f).sum::<f64>();
        let close = |a: f64, b: f64| (a - b).abs() <= 1e-9 * a.abs().max(b.abs());
        assert!(close(r.int_us, sum(|l| l.int_us) + r.other_int_us), "{r:?}");
        assert!(
            close(r.float_us, sum(|l| l.float_us) + r.other_float_us),
            "{r:?}"
        );
        // Quantizing the input happens before the first layer, only in the plan.
        assert!(r.other_int_us > 0.0);
        assert_eq!((r.batch, r.rounds), (1, 3));
        assert!(!r.kernel_path.is_empty());
    }

    #[test]
    fn mixed_plan_and_errors() {
        let (float, prepared, _) = seed_cnn(|g| {
            let mut p = QuantPlan::default_for(g, Precision::Int8);
            p.layers[1].precision = Precision::Int4;
            p.layers[2].precision = Precision::Fp32;
            p
        });
        let r = plan_latency(&float, &prepared, &quick(), &AtomicBool::new(false)).unwrap();
        let compute: Vec<&str> = r.layers.iter().map(|l| l.compute.as_str()).collect();
        assert_eq!(compute, ["int8 GEMM", "int4 GEMM", "f32"]);
        assert!(r.layers[2].kernel.is_none());
        // A stop before the first round, a bad setting, a fake-quant "float" model.
        let stopped = plan_latency(&float, &prepared, &quick(), &AtomicBool::new(true));
        assert!(matches!(stopped, Err(BenchError::Stopped)));
        let bad = LatencyConfig {
            batch: 0,
            ..quick()
        };
        let no = AtomicBool::new(false);
        assert!(matches!(
            plan_latency(&float, &prepared, &bad, &no),
            Err(BenchError::Config(_))
        ));
        let e = plan_latency(&prepared, &prepared, &quick(), &no).unwrap_err();
        assert!(e.to_string().contains("fake quantizer"), "{e}");
    }
}
