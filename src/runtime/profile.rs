//! Per-step profiling of an [`IntModel`]: the whole batch runs as one chunk on the calling
//! thread (the GEMMs may still use the pool, as for any batch that fits one chunk), so the step
//! times add up to the run's, with an [`Instant`] read after every step through the engine's
//! `StepTimer` hook (the normal `run` path passes `()` and carries no timing code). After one
//! untimed warm-up run, `repeats` timed runs give the median of each step and of the whole run.
//!
//! What a step costs per image is what the studio's layers table shows; `bench::latency` folds
//! the steps into layers. Depends only on the engine and the spec; knows nothing of benchmarks.

use super::IntModel;
use super::engine::StepTimer;
use super::error::{RuntimeError, invalid};
use super::spec::{Act, LayerSpec, ModelSpec, Step, WeightStorage};
use serde::Serialize;
use std::time::Instant;

/// Largest total slot size (elements, all slots of the batch together) a profiling run may
/// allocate: the batch is one chunk, so its buffers hold every image at once.
pub const MAX_PROFILE_ELEMS: usize = 1 << 28;

/// One step's time.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct StepTime {
    /// Index in [`ModelSpec::steps`].
    pub step: usize,
    /// What it does, e.g. "conv1 (int8 GEMM)", "maxpool", "add".
    pub what: String,
    /// The layer's name (the graph node of the Conv2d/Linear) if this is a layer step.
    pub layer: Option<String>,
    /// Median over the repeats of the step's wall time, divided by the batch size.
    pub seconds_per_image: f64,
}

/// The result of [`IntModel::profile`].
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Profile {
    /// One per step of the program, in program order.
    pub steps: Vec<StepTime>,
    /// Median per-run wall time divided by the batch size (steps plus the output copy).
    pub total_s: f64,
}

/// Accumulates the time between consecutive marks into the step that just finished.
struct StepClock {
    last: Instant,
    secs: Vec<f64>,
}

impl StepTimer for StepClock {
    fn start(&mut self) {
        self.last = Instant::now();
    }

    fn done(&mut self, step: usize) {
        let now = Instant::now();
        if let Some(s) = self.secs.get_mut(step) {
            *s += (now - self.last).as_secs_f64();
        }
        self.last = now;
    }
}

/// Median (the upper one for an even count; NaN when empty), as `bench::median`.
fn median(v: &mut [f64]) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v.get(v.len() / 2).copied().unwrap_or(f64::NAN)
}

/// How a layer computes, for a person: "int8 GEMM", "int4 GEMM", "f32", "f16 weights, f32".
pub fn layer_compute(l: &LayerSpec) -> &'static str {
    match (l.input.is_some(), l.storage) {
        (true, WeightStorage::Int4 { .. }) => "int4 GEMM",
        (true, _) => "int8 GEMM",
        (false, WeightStorage::F32) => "f32",
        (false, WeightStorage::F16) => "f16 weights, f32",
        (false, WeightStorage::S8) => "int8 weights, f32",
        (false, WeightStorage::Int4 { .. }) => "int4 weights, f32",
    }
}

/// A step described for a person (a layer step with its layer's name and compute).
pub fn describe(spec: &ModelSpec, step: &Step) -> String {
    let act = |a: &Act| match a {
        Act::None => "",
        Act::Relu => " + relu",
        Act::Clip { .. } => " + clip",
        Act::Sigmoid => " + sigmoid",
        Act::HardSigmoid { .. } => " + hardsigmoid",
        Act::HardSwish => " + hardswish",
    };
    match step {
        Step::ToHwc { .. } => "to NHWC".into(),
        Step::ToChw { .. } => "to CHW".into(),
        Step::Quantize { .. } => "quantize".into(),
        Step::Dequantize { .. } => "dequantize".into(),
        Step::Requantize { .. } => "requantize".into(),
        Step::Fp16 { .. } => "round to fp16".into(),
        Step::Layer { layer, .. } => match spec.layers.get(*layer) {
            Some(l) => format!("{} ({})", l.name, layer_compute(l)),
            None => format!("layer {layer}"),
        },
        Step::MaxPool { .. } => "maxpool".into(),
        Step::AvgPool { .. } => "avgpool".into(),
        Step::GlobalAvgPool { .. } => "global avgpool".into(),
        Step::Add { act: a, .. } => format!("add{}", act(a)),
        Step::Activation { act: a, .. } => match a {
            Act::None => "identity".into(),
            Act::Relu => "relu".into(),
            Act::Clip { .. } => "clip".into(),
            Act::Sigmoid => "sigmoid".into(),
            Act::HardSigmoid { .. } => "hardsigmoid".into(),
            Act::HardSwish => "hardswish".into(),
        },
        Step::Mul { .. } => "mul".into(),
        Step::Concat { .. } => "concat".into(),
        Step::BatchNorm { .. } => "batchnorm".into(),
        Step::GatherChannels { .. } => "channel shuffle".into(),
        Step::ClampU8 { .. } => "relu (u8 clamp)".into(),
    }
}

impl IntModel {
    /// Runs the `n` images of `x` (`n x c·h·w` f32, NCHW, normalised) as one chunk on the
    /// calling thread, once untimed and then `repeats` times timed, and reports each step's
    /// median time per image and the median run time per image. Timing only: the outputs are
    /// discarded. Errors: `n` or `repeats` zero, a wrong input length, or a batch whose buffers
    /// would exceed [`MAX_PROFILE_ELEMS`].
    pub fn profile(&self, x: &[f32], n: usize, repeats: usize) -> Result<Profile, RuntimeError> {
        if n == 0 || repeats == 0 {
            return Err(invalid("profiling needs at least one image and one repeat"));
        }
        let per_image = self
            .spec
            .shapes()?
            .iter()
            .try_fold(0usize, |s, d| s.checked_add(d.elems()));
        match per_image.and_then(|e| e.checked_mul(n)) {
            Some(t) if t <= MAX_PROFILE_ELEMS => {}
            _ => {
                return Err(invalid(format!(
                    "a profiling batch of {n} images needs more than {MAX_PROFILE_ELEMS} buffer elements: use a smaller batch"
                )));
            }
        }
        let (_, oe) = self.engine.io_elems();
        let mut out = vec![0.0f32; n * oe];
        self.engine.run_one_chunk(x, n, &mut out, &mut ())?;
        let steps = self.spec.steps.len();
        let mut clock = StepClock {
            last: Instant::now(),
            secs: vec![0.0; steps],
        };
        let mut per_step = vec![Vec::with_capacity(repeats); steps];
        let mut totals = Vec::with_capacity(repeats);
        for _ in 0..repeats {
            clock.secs.iter_mut().for_each(|s| *s = 0.0);
            let t = Instant::now();
            self.engine.run_one_chunk(x, n, &mut out, &mut clock)?;
            totals.push(t.elapsed().as_secs_f64());
            for (v, &s) in per_step.iter_mut().zip(&clock.secs) {
                v.push(s);
            }
        }
        let nf = n as f64;
        Ok(Profile {
            steps: self
                .spec
                .steps
                .iter()
                .zip(per_step.iter_mut())
                .enumerate()
                .map(|(i, (s, v))| StepTime {
                    step: i,
                    what: describe(&self.spec, s),
                    layer: match s {
                        Step::Layer { layer, .. } => {
                            self.spec.layers.get(*layer).map(|l| l.name.clone())
                        }
                        _ => None,
                    },
                    seconds_per_image: median(v) / nf,
                })
                .collect(),
            total_s: median(&mut totals) / nf,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::quant::{Precision, QuantPlan, ptq};
    use crate::runtime::ConvertOptions;
    use crate::zoo::Arch;
    use std::sync::atomic::AtomicBool;

    fn images(n: usize) -> Vec<f32> {
        (0..n * 28 * 28)
            .map(|i| ((i * 37 % 251) as f32 / 251.0 - 0.4) * 2.0)
            .collect()
    }

    fn seed_cnn_int8() -> IntModel {
        let g = Arch::SeedCnn.build([1, 28, 28], 10, 0).unwrap();
        let plan = QuantPlan::default_for(&g, Precision::Int8);
        let x = crate::tensor::from_vec(&[8, 1, 28, 28], images(8));
        let res = ptq(&g, &plan, [x], &AtomicBool::new(false), &mut |_| {}).unwrap();
        IntModel::convert(&res.prepared.graph, &ConvertOptions::default()).unwrap()
    }

    #[test]
    fn profile_has_one_time_per_step_and_adds_up() {
        let m = seed_cnn_int8();
        for n in [1, 3] {
            let p = m.profile(&images(n), n, 5).unwrap();
            assert_eq!(p.steps.len(), m.spec().steps.len());
            let names: Vec<&str> = p.steps.iter().filter_map(|s| s.layer.as_deref()).collect();
            let spec: Vec<&str> = m.spec().layers.iter().map(|l| l.name.as_str()).collect();
            assert_eq!(names, spec);
            assert!(p.steps.iter().enumerate().all(|(i, s)| s.step == i));
            assert!(
                p.steps
                    .iter()
                    .all(|s| s.seconds_per_image > 0.0 && s.seconds_per_image.is_finite()),
                "{p:?}"
            );
            assert!(p.total_s > 0.0 && p.total_s.is_finite());
            // Medians of parts need not add up to the median of the whole, but are close.
            let sum: f64 = p.steps.iter().map(|s| s.seconds_per_image).sum();
            assert!(
                sum < 2.0 * p.total_s && sum > 0.5 * p.total_s,
                "{sum} vs {}",
                p.total_s
            );
            // The integer conv layers say so.
            assert!(
                p.steps.iter().any(|s| s.what == "conv1 (int8 GEMM)"),
                "{p:?}"
            );
        }
    }

    #[test]
    fn profile_rejects_bad_arguments() {
        let m = seed_cnn_int8();
        assert!(m.profile(&images(1), 1, 0).is_err());
        assert!(m.profile(&[], 0, 3).is_err());
        assert!(m.profile(&images(1), 2, 3).is_err());
        // A batch whose buffers would pass the cap is refused before anything is allocated.
        assert!(m.profile(&[], 1 << 30, 1).is_err());
    }
}
