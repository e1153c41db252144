//! End-to-end inference timing of an integer model against the float graph it came from, in the
//! same run (shared machines are noisy: only same-run ratios mean much): images per second at a
//! batch size, and single-image latency. Repeats are interleaved (integer, float, integer, ...)
//! and medians reported ([`super::median`]). Used by [`super::e2e`] (`qatlas bench e2e`, the
//! studio) and `benches/runtime_e2e.rs`.

use super::median;
use crate::graph::Graph;
use crate::runtime::{IntModel, RuntimeError};
use crate::tensor::{Tensor, slice};
use serde::Serialize;
use std::time::Instant;

/// Medians of one end-to-end measurement.
#[derive(Clone, Debug, Serialize)]
pub struct E2eTiming {
    pub batch: usize,
    pub int_images_per_s: f64,
    pub float_images_per_s: f64,
    /// Median single-image latency, microseconds.
    pub int_latency_us: f64,
    pub float_latency_us: f64,
    pub repeats: usize,
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

/// One interleaved repeat: (integer images/s, float images/s, integer µs, float µs) on `batch`
/// (`[B, c, h, w]`) and on its first image, each configuration run for about `secs` seconds.
pub fn time_once(
    m: &IntModel,
    float: &Graph,
    batch: &Tensor,
    secs: f64,
) -> Result<[f64; 4], RuntimeError> {
    let b = batch.shape()[0];
    let one = batch
        .slice_axis(ndarray::Axis(0), ndarray::Slice::from(0..1))
        .to_owned();
    let (_, oe) = m.io_elems();
    let xb = slice(batch).to_vec();
    let x1 = slice(&one).to_vec();
    let mut ob = vec![0.0f32; b * oe];
    let mut o1 = vec![0.0f32; oe];
    let fl = |x: &Tensor| -> Result<(), RuntimeError> {
        float
            .infer(x)
            .map(|_| ())
            .map_err(|e| RuntimeError::Invalid(e.to_string()))
    };
    Ok([
        b as f64 / mean_time(secs, &mut || m.infer_into(&xb, b, &mut ob))?,
        b as f64 / mean_time(secs, &mut || fl(batch))?,
        mean_time(secs, &mut || m.infer_into(&x1, 1, &mut o1))? * 1e6,
        mean_time(secs, &mut || fl(&one))? * 1e6,
    ])
}

/// Medians of `repeats` interleaved [`time_once`] repeats.
pub fn measure(
    m: &IntModel,
    float: &Graph,
    batch: &Tensor,
    repeats: usize,
    secs: f64,
) -> Result<E2eTiming, RuntimeError> {
    let mut runs: [Vec<f64>; 4] = Default::default();
    for _ in 0..repeats.max(1) {
        for (v, t) in runs.iter_mut().zip(time_once(m, float, batch, secs)?) {
            v.push(t);
        }
    }
    let [mut ib, mut fb, mut il, mut fl] = runs;
    Ok(E2eTiming {
        batch: batch.shape()[0],
        int_images_per_s: median(&mut ib),
        float_images_per_s: median(&mut fb),
        int_latency_us: median(&mut il),
        float_latency_us: median(&mut fl),
        repeats: repeats.max(1),
    })
}
