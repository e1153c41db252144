//! End-to-end inference timing of an integer model against the float graph it came from, in the
//! same run (shared machines are noisy: only same-run ratios mean much): images per second at a
//! batch size, and single-image latency. Repeats are interleaved (integer, float, integer, ...)
//! and medians reported. Used by `qatlas bench e2e` and `benches/runtime_e2e.rs`.

use super::{IntModel, RuntimeError};
use crate::graph::Graph;
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

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v.get(v.len() / 2).copied().unwrap_or(f64::NAN)
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

/// Measures `m` and `float` on `batch` (`[B, c, h, w]`) and on its first image; each repeat
/// runs each configuration for about `secs` seconds.
pub fn measure(
    m: &IntModel,
    float: &Graph,
    batch: &Tensor,
    repeats: usize,
    secs: f64,
) -> Result<E2eTiming, RuntimeError> {
    let b = batch.shape()[0];
    let one = batch
        .slice_axis(ndarray::Axis(0), ndarray::Slice::from(0..1))
        .to_owned();
    let (_, oe) = m.engine.io_elems();
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
    let (mut ib, mut fb, mut il, mut flat) = (vec![], vec![], vec![], vec![]);
    for _ in 0..repeats.max(1) {
        ib.push(b as f64 / mean_time(secs, &mut || m.infer_into(&xb, b, &mut ob))?);
        fb.push(b as f64 / mean_time(secs, &mut || fl(batch))?);
        il.push(mean_time(secs, &mut || m.infer_into(&x1, 1, &mut o1))? * 1e6);
        flat.push(mean_time(secs, &mut || fl(&one))? * 1e6);
    }
    Ok(E2eTiming {
        batch: b,
        int_images_per_s: median(ib),
        float_images_per_s: median(fb),
        int_latency_us: median(il),
        float_latency_us: median(flat),
        repeats: repeats.max(1),
    })
}
