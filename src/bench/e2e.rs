//! The end-to-end benchmark: seed-cnn (or any float model) quantized with PTQ, converted to the
//! integer runtime, and timed against the same model's float runtime (`IntModel::from_float`)
//! and float graph executor (`Graph::infer`) in the same run: images/s at a batch size (default
//! 64) and single-image latency, medians of interleaved repeats (`timing::time_once`, one repeat
//! at a time so a stop is honoured between them).
//! Takes loaded data; knows nothing of files, printing or egui.

use super::BenchError;
use super::timing::{E2eTiming, FloatSide, time_once, timing_of};
use crate::data::{Dataset, Loader, Normalization};
use crate::graph::Graph;
use crate::kernels::int8::selected_kernel;
use crate::quant::{Precision, QuantPlan, ptq};
use crate::runtime::{ConvertOptions, IntModel, LayerInfo};
use serde::Serialize;
use std::sync::atomic::{AtomicBool, Ordering};

/// Calibration images (the first ones of the training split), in batches of [`CALIB_BATCH`].
pub const CALIB_IMAGES: usize = 1000;
const CALIB_BATCH: usize = 250;

/// How to measure.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct E2eConfig {
    /// Weight precision of every layer (int8 or int4; activations u8).
    pub precision: Precision,
    pub batch: usize,
    /// Measurements per configuration (interleaved; medians reported).
    pub repeats: usize,
    /// Seconds per measurement.
    pub secs: f64,
}

impl Default for E2eConfig {
    /// `qatlas bench e2e`'s defaults.
    fn default() -> Self {
        E2eConfig {
            precision: Precision::Int8,
            batch: 64,
            repeats: 5,
            secs: 0.4,
        }
    }
}

impl E2eConfig {
    /// A short run for the studio: 3 repeats of 0.15 s.
    pub fn quick() -> Self {
        E2eConfig {
            repeats: 3,
            secs: 0.15,
            ..E2eConfig::default()
        }
    }

    /// Checks the values are usable.
    pub fn validate(&self) -> Result<(), BenchError> {
        if self.batch == 0 || self.repeats == 0 || !(self.secs > 0.0 && self.secs.is_finite()) {
            return Err(BenchError::Config(
                "batch, repeats and seconds must be positive".into(),
            ));
        }
        if !matches!(self.precision, Precision::Int8 | Precision::Int4) {
            return Err(BenchError::Config("precision must be int8 or int4".into()));
        }
        Ok(())
    }
}

/// Where a run is: `done` of `total` steps (quantize, convert, then each repeat).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct E2eProgress {
    pub done: usize,
    pub total: usize,
    pub label: &'static str,
}

/// The result: timing medians plus what ran.
#[derive(Clone, Debug, Serialize)]
pub struct E2eResult {
    pub precision: &'static str,
    pub threads: usize,
    pub kernel_path: &'static str,
    pub layers: Vec<LayerInfo>,
    pub timing: E2eTiming,
    /// Why the float runtime could not run the model (the float figures are the graph
    /// executor's then).
    pub float_runtime_error: Option<String>,
}

impl E2eResult {
    /// Integer images/s over float images/s.
    pub fn images_per_s_ratio(&self) -> f64 {
        self.timing.int_images_per_s / self.timing.float_images_per_s
    }

    /// Float latency over integer latency (above 1: the integer model answers sooner).
    pub fn latency_ratio(&self) -> f64 {
        self.timing.float_latency_us / self.timing.int_latency_us
    }
}

fn step(step: &'static str) -> impl Fn(String) -> BenchError {
    move |message| BenchError::Step { step, message }
}

/// Quantizes `float` (PTQ calibrated on the first [`CALIB_IMAGES`] of `calib`), converts it and
/// times it against `float` on the first `cfg.batch` images of `test`. `None` if `stop` was
/// raised before the timing finished.
pub fn run_e2e(
    float: &Graph,
    calib: &Dataset,
    test: &Dataset,
    norm: &Normalization,
    cfg: &E2eConfig,
    on_progress: &mut dyn FnMut(E2eProgress),
    stop: &AtomicBool,
) -> Result<Option<E2eResult>, BenchError> {
    cfg.validate()?;
    let total = 2 + cfg.repeats;
    let stopped = || stop.load(Ordering::Relaxed);
    on_progress(E2eProgress {
        done: 0,
        total,
        label: "quantizing (PTQ)",
    });
    norm.validate(calib.c)
        .map_err(|e| step("normalisation")(e.to_string()))?;
    let plan = QuantPlan::default_for(float, cfg.precision);
    let batches = Loader::new(calib, norm, CALIB_BATCH, None, false)
        .take(CALIB_IMAGES.div_ceil(CALIB_BATCH))
        .map(|(x, _)| x);
    let res = ptq(float, &plan, batches, stop, &mut |_| {});
    if stopped() {
        return Ok(None);
    }
    let res = res.map_err(|e| step("post-training quantization")(e.to_string()))?;
    on_progress(E2eProgress {
        done: 1,
        total,
        label: "converting to the integer runtime",
    });
    let m = IntModel::convert(&res.prepared.graph, &ConvertOptions::default())
        .map_err(|e| step("conversion")(e.to_string()))?;
    let x = Loader::new(test, norm, cfg.batch, None, false)
        .next()
        .map(|(x, _)| x)
        .ok_or_else(|| step("test data")("no test images".into()))?;
    if x.shape()[0] != cfg.batch {
        return Err(step("test data")(format!(
            "{} test images, fewer than the batch of {}",
            x.shape()[0],
            cfg.batch
        )));
    }
    let float_rt = IntModel::from_float(float, &ConvertOptions::default());
    let side = FloatSide {
        runtime: float_rt.as_ref().ok(),
        graph: float,
    };
    let mut runs: [Vec<f64>; 6] = Default::default();
    for r in 0..cfg.repeats {
        if stopped() {
            return Ok(None);
        }
        on_progress(E2eProgress {
            done: 2 + r,
            total,
            label: "timing integer vs float",
        });
        let t = time_once(&m, side, &x, cfg.secs).map_err(|e| step("timing")(e.to_string()))?;
        runs.iter_mut().zip(t).for_each(|(v, t)| v.push(t));
    }
    on_progress(E2eProgress {
        done: total,
        total,
        label: "done",
    });
    Ok(Some(E2eResult {
        precision: cfg.precision.name(),
        threads: rayon::current_num_threads(),
        kernel_path: selected_kernel().map(|k| k.path.name()).unwrap_or("?"),
        layers: m.layers(),
        timing: timing_of(cfg.batch, side, runs),
        float_runtime_error: float_rt.err().map(|e| e.to_string()),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::Pixels;
    use crate::zoo::Arch;

    fn data(n: usize) -> Dataset {
        let pixels: Vec<u8> = (0..n * 64).map(|i| (i * 37 % 251) as u8).collect();
        let labels = (0..n as u32).map(|i| i % 2).collect();
        Dataset::new("tiny", Pixels::U8(pixels), labels, [1, 8, 8], vec![]).unwrap()
    }

    fn tiny() -> E2eConfig {
        E2eConfig {
            batch: 4,
            repeats: 1,
            secs: 0.005,
            ..E2eConfig::default()
        }
    }

    #[test]
    fn config_is_validated() {
        assert!(E2eConfig::default().validate().is_ok());
        assert!(E2eConfig::quick().validate().is_ok());
        for bad in [
            E2eConfig { batch: 0, ..tiny() },
            E2eConfig {
                secs: 0.0,
                ..tiny()
            },
            E2eConfig {
                precision: Precision::Fp16,
                ..tiny()
            },
        ] {
            assert!(matches!(bad.validate(), Err(BenchError::Config(_))));
        }
    }

    #[test]
    fn measures_a_tiny_model_and_honours_stop() {
        let g = Arch::SeedCnn.build([1, 8, 8], 2, 0).unwrap();
        let (calib, test) = (data(16), data(8));
        let norm = Normalization::mnist();
        let mut steps = Vec::new();
        let r = run_e2e(
            &g,
            &calib,
            &test,
            &norm,
            &tiny(),
            &mut |p| steps.push(p.done),
            &AtomicBool::new(false),
        )
        .unwrap()
        .unwrap();
        assert!(r.timing.int_images_per_s > 0.0 && r.timing.float_images_per_s > 0.0);
        assert!(r.timing.int_latency_us > 0.0 && r.images_per_s_ratio() > 0.0);
        // seed-cnn lowers to the float runtime, so the float figures are the runtime's.
        assert_eq!(
            r.timing.float_engine,
            crate::runtime::FloatEngine::Runtime,
            "{:?}",
            r.float_runtime_error
        );
        assert!(r.timing.graph_images_per_s > 0.0 && r.timing.graph_latency_us > 0.0);
        assert_eq!(steps, vec![0, 1, 2, 3]);
        let stopped = run_e2e(
            &g,
            &calib,
            &test,
            &norm,
            &tiny(),
            &mut |_| {},
            &AtomicBool::new(true),
        );
        assert!(matches!(stopped, Ok(None)));
        // Too few test images for the batch is an error naming the step.
        let cfg = E2eConfig {
            batch: 64,
            ..tiny()
        };
        let err = run_e2e(
            &g,
            &calib,
            &test,
            &norm,
            &cfg,
            &mut |_| {},
            &AtomicBool::new(false),
        )
        .unwrap_err();
        assert!(err.to_string().contains("test data"));
    }
}
