//! End-to-end inference timing of an integer model against the float model it came from, in the
//! same run (shared machines are noisy: only same-run ratios mean much): images per second at a
//! batch size, and single-image latency. The float side is the float runtime
//! ([`IntModel::from_float`]: f32 layers in NHWC, fused epilogues) and the graph executor
//! (`Graph::infer`, what training runs). Repeats are interleaved (integer, float, graph,
//! integer, ...) and medians reported ([`super::median`]). Used by [`super::e2e`] (`qatlas bench e2e`, the
//! studio) and `benches/runtime_e2e.rs`.

use super::median;
use crate::graph::Graph;
use crate::runtime::{FloatEngine, IntModel, RuntimeError};
use crate::tensor::{Tensor, slice};
use serde::Serialize;
use std::time::Instant;

/// Medians of one end-to-end measurement.
#[derive(Clone, Debug, Serialize)]
pub struct E2eTiming {
    pub batch: usize,
    pub int_images_per_s: f64,
    /// The float runtime's, or the graph executor's when the float runtime cannot run the model
    /// (see `float_engine`).
    pub float_images_per_s: f64,
    /// The graph executor's.
    pub graph_images_per_s: f64,
    /// Median single-image latency, microseconds.
    pub int_latency_us: f64,
    pub float_latency_us: f64,
    pub graph_latency_us: f64,
    /// What the float figures timed.
    pub float_engine: FloatEngine,
    pub repeats: usize,
}

/// The float side of a measurement.
#[derive(Clone, Copy)]
pub struct FloatSide<'a> {
    /// The float runtime of the model, when it converts.
    pub runtime: Option<&'a IntModel>,
    pub graph: &'a Graph,
}

/// Runs `f` for about `secs` seconds (at least 3 times) and returns the calls' mean time.
fn mean_time(
    secs: f64,
    f: &mut dyn FnMut() -> Result<(), RuntimeError>,
) -> Result<f64, RuntimeError> {
    let t = Instant::now();
    f()?;
    let once = t.elapsed().as_secs_f64().max(1e-7);
    let n = ((secs / once) as usize).clamp(3, 1_000_000);
    let t = Instant::now();
    for _ in 0..n {
        f()?;
    }
    Ok(t.elapsed().as_secs_f64() / n as f64)
}

/// One interleaved repeat: images/s on `batch` (`[B, c, h, w]`) then microseconds on its first
/// image, each of integer, float runtime and graph executor (the graph's figure twice when there
/// is no float runtime), each run for about `secs` seconds.
pub fn time_once(
    m: &IntModel,
    float: FloatSide,
    batch: &Tensor,
    secs: f64,
) -> Result<[f64; 6], RuntimeError> {
    let b = batch.shape()[0];
    let one = batch
        .slice_axis(ndarray::Axis(0), ndarray::Slice::from(0..1))
        .to_owned();
    let (_, oe) = m.io_elems();
    let xb = slice(batch).to_vec();
    let x1 = slice(&one).to_vec();
    let mut ob = vec![0.0f32; b * oe];
    let mut o1 = vec![0.0f32; oe];
    let graph = |x: &Tensor| -> Result<(), RuntimeError> {
        float
            .graph
            .infer(x)
            .map(|_| ())
            .map_err(|e| RuntimeError::Invalid(e.to_string()))
    };
    let ib = b as f64 / mean_time(secs, &mut || m.infer_into(&xb, b, &mut ob))?;
    let gb = b as f64 / mean_time(secs, &mut || graph(batch))?;
    let fb = match float.runtime {
        Some(f) => b as f64 / mean_time(secs, &mut || f.infer_into(&xb, b, &mut ob))?,
        None => gb,
    };
    let il = mean_time(secs, &mut || m.infer_into(&x1, 1, &mut o1))? * 1e6;
    let gl = mean_time(secs, &mut || graph(&one))? * 1e6;
    let fl = match float.runtime {
        Some(f) => mean_time(secs, &mut || f.infer_into(&x1, 1, &mut o1))? * 1e6,
        None => gl,
    };
    Ok([ib, fb, gb, il, fl, gl])
}

/// Medians of `repeats` interleaved [`time_once`] repeats.
pub fn measure(
    m: &IntModel,
    float: FloatSide,
    batch: &Tensor,
    repeats: usize,
    secs: f64,
) -> Result<E2eTiming, RuntimeError> {
    let mut runs: [Vec<f64>; 6] = Default::default();
    for _ in 0..repeats.max(1) {
        for (v, t) in runs.iter_mut().zip(time_once(m, float, batch, secs)?) {
            v.push(t);
        }
    }
    Ok(timing_of(batch.shape()[0], float, runs))
}

/// The medians of per-repeat [`time_once`] results, as a timing.
pub fn timing_of(batch: usize, float: FloatSide, mut runs: [Vec<f64>; 6]) -> E2eTiming {
    let repeats = runs[0].len();
    let [ib, fb, gb, il, fl, gl] = runs.each_mut().map(|v| median(v));
    E2eTiming {
        batch,
        int_images_per_s: ib,
        float_images_per_s: fb,
        graph_images_per_s: gb,
        int_latency_us: il,
        float_latency_us: fl,
        graph_latency_us: gl,
        float_engine: if float.runtime.is_some() {
            FloatEngine::Runtime
        } else {
            FloatEngine::Graph
        },
        repeats,
    }
}
