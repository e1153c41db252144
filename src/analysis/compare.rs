//! Float versus fake-quant, side by side on the same batches: both accuracies, the SQNR of every
//! quantized layer's output (after its fused activation and output quantizer, errors of earlier
//! layers included, as PyTorch's Numeric Suite compares activations) and of the logits, the
//! fraction of float activations each grid clips, and the same for the weights.
//!
//! One pass over the data; only one batch's activations are alive at a time. Depends on
//! `data`, `graph`, `ops`, `quant`, `analysis::sqnr`.

use super::sqnr::{Clipped, Sqnr, finite_db};
use crate::data::{Dataset, Loader, Normalization};
use crate::graph::{Graph, GraphError, ValueId};
use crate::ops::fake_quant::fp16_value;
use crate::ops::loss::softmax_cross_entropy;
use crate::quant::exec::run_tapped;
use crate::quant::points::QuantPoints;
use crate::quant::prepare::Prepared;
use crate::quant::scheme::{PointGrid, QSpec, fake_quantize, is_clipped};
use crate::quant::{PointRange, Precision, QuantError};
use crate::tensor::{Tensor, slice};
use ndarray::{Axis, Slice};
use serde::Serialize;
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};

/// Per-layer numbers of a comparison.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct LayerReport {
    pub layer: String,
    pub op: String,
    pub precision: Precision,
    pub activations: Precision,
    /// SQNR (dB) of the layer's output in the quantized model against the float model.
    pub sqnr_db: Option<f64>,
    /// Fraction of the float output values outside the output grid.
    pub clipped_fraction: Option<f64>,
    /// Fraction of the float input values outside the input grid.
    pub input_clipped_fraction: Option<f64>,
    /// SQNR (dB) of the quantized weights against the float weights.
    pub weight_sqnr_db: Option<f64>,
    pub weight_clipped_fraction: Option<f64>,
}

/// The result of [`compare`].
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Comparison {
    pub float_accuracy: f64,
    pub quantized_accuracy: f64,
    pub images: usize,
    /// SQNR (dB) of the quantized model's logits.
    pub output_sqnr_db: Option<f64>,
    pub layers: Vec<LayerReport>,
}

fn spec_of(r: &PointRange) -> QSpec {
    QSpec {
        dtype: r.dtype,
        scheme: r.scheme,
    }
}

/// SQNR and clipped fraction of a layer's weights under its weight point.
fn weight_stats(
    w: &Tensor,
    grid: PointGrid,
    axis: Option<usize>,
    r: Option<&PointRange>,
) -> (Sqnr, Clipped) {
    let (mut s, mut c) = (Sqnr::default(), Clipped::default());
    let xs = slice(w);
    match (grid, r) {
        (PointGrid::Int(_), Some(r)) => {
            let spec = spec_of(r);
            let (ch, inner) = match axis {
                Some(a) => (w.shape()[a], w.shape()[a + 1..].iter().product::<usize>()),
                None => (1, xs.len()),
            };
            let q: Vec<f32> = xs
                .iter()
                .enumerate()
                .map(|(i, &v)| {
                    let k = (i / inner.max(1)) % ch;
                    c.clipped += u64::from(is_clipped(v, r.scale[k], r.zero_point[k], spec));
                    fake_quantize(v, r.scale[k], r.zero_point[k], spec)
                })
                .collect();
            c.total += xs.len() as u64;
            s.add(xs, &q);
        }
        _ => {
            let q: Vec<f32> = xs.iter().map(|&v| fp16_value(v)).collect();
            s.add(xs, &q);
        }
    }
    (s, c)
}

/// Compares `folded` (the float model the points were planned on) with its fake-quant
/// `prepared` version on `ds`, stoppable between batches.
pub fn compare(
    folded: &Graph,
    points: &QuantPoints,
    prepared: &Prepared,
    ds: &Dataset,
    norm: &Normalization,
    batch: usize,
    stop: &AtomicBool,
) -> Result<Comparison, QuantError> {
    let nl = points.layers.len();
    // Where each layer's output lives in both graphs.
    let out_value: Vec<ValueId> = points
        .layers
        .iter()
        .map(|l| {
            l.activation
                .map_or(folded.nodes[l.node].output, |a| folded.nodes[a].output)
        })
        .collect();
    let mut q_taps: HashMap<ValueId, Vec<usize>> = HashMap::new();
    let mut f_taps: HashMap<ValueId, Vec<usize>> = HashMap::new();
    for (li, &v) in out_value.iter().enumerate() {
        if let Some(qv) = prepared.value_map[v] {
            q_taps.entry(qv).or_default().push(li);
            f_taps.entry(v).or_default().push(li);
        }
    }
    // Clipping is counted per activation point on the float values it quantizes.
    let mut clip_taps: HashMap<ValueId, Vec<usize>> = HashMap::new();
    for (pi, p) in prepared.points.iter().enumerate() {
        if p.point.is_activation() && p.range.is_some() {
            clip_taps.entry(p.point.value).or_default().push(pi);
        }
    }
    let mut sq = vec![Sqnr::default(); nl];
    let mut clips = vec![Clipped::default(); prepared.points.len()];
    let mut out_sqnr = Sqnr::default();
    let (mut fc, mut qc, mut seen) = (0usize, 0usize, 0usize);
    // Every layer's fake-quant output of a run is held until the float run reaches it: runs
    // take at most about 1M input values (6 images at 224x224) so that memory stays bounded.
    let chw = ds.image_shape().iter().product::<usize>().max(1);
    let run_images = ((1 << 20) / chw).clamp(1, batch.max(1));
    let runs = Loader::new(ds, norm, batch.max(1), None, false).flat_map(|(x, y)| {
        let n = y.len();
        if n <= run_images {
            return vec![(x, y)];
        }
        (0..n)
            .step_by(run_images)
            .map(|a| {
                let b = (a + run_images).min(n);
                let part = x.slice_axis(Axis(0), Slice::from(a..b)).to_owned();
                (part, y[a..b].to_vec())
            })
            .collect()
    });
    for (x, y) in runs {
        if stop.load(Ordering::Relaxed) {
            return Err(QuantError::Cancelled);
        }
        let mut captured: Vec<Option<Tensor>> = vec![None; nl];
        let ql = run_tapped(&prepared.graph, &x, &mut |v, t| {
            for &li in q_taps.get(&v).into_iter().flatten() {
                captured[li] = Some(t.clone());
            }
        })?;
        let fl = run_tapped(folded, &x, &mut |v, t| {
            for &li in f_taps.get(&v).into_iter().flatten() {
                if let Some(q) = &captured[li] {
                    sq[li].add(slice(t), slice(q));
                }
            }
            for &pi in clip_taps.get(&v).into_iter().flatten() {
                if let Some(r) = &prepared.points[pi].range {
                    clips[pi].add(slice(t), r.scale[0], r.zero_point[0], spec_of(r));
                }
            }
        })?;
        out_sqnr.add(slice(&fl), slice(&ql));
        let correct = |l: &Tensor| -> Result<usize, QuantError> {
            softmax_cross_entropy(l, &y)
                .map(|r| r.correct)
                .map_err(|e| {
                    QuantError::Graph(GraphError::Op {
                        node: "loss".into(),
                        source: e,
                    })
                })
        };
        fc += correct(&fl)?;
        qc += correct(&ql)?;
        seen += y.len();
    }
    ds.check()?;
    let layers = points
        .layers
        .iter()
        .enumerate()
        .map(|(li, l)| {
            let node = &folded.nodes[l.node];
            let (ws, wc) = match l.weight.map(|p| &prepared.points[p]) {
                Some(pp) => {
                    let w = folded
                        .param_of(pp.point.value)
                        .map(|p| &folded.params[p].tensor);
                    let axis = match pp.point.kind {
                        crate::quant::points::PointKind::Weight { axis, .. } => axis,
                        _ => None,
                    };
                    w.map(|w| weight_stats(w, pp.point.grid, axis, pp.range.as_ref()))
                        .map_or((None, None), |(s, c)| (s.db(), c.fraction()))
                }
                None => (None, None),
            };
            LayerReport {
                layer: node.name.clone(),
                op: node.op.name().to_string(),
                precision: l.plan.effective(),
                activations: if l.plan.activation_grid().is_some() {
                    l.plan.activations
                } else {
                    Precision::Fp32
                },
                sqnr_db: finite_db(sq[li].db()),
                clipped_fraction: l.output.and_then(|p| clips[p].fraction()),
                input_clipped_fraction: l
                    .inputs
                    .first()
                    .copied()
                    .flatten()
                    .and_then(|p| clips[p].fraction()),
                weight_sqnr_db: finite_db(ws),
                weight_clipped_fraction: wc,
            }
        })
        .collect();
    let n = seen.max(1) as f64;
    Ok(Comparison {
        float_accuracy: fc as f64 / n,
        quantized_accuracy: qc as f64 / n,
        images: seen,
        output_sqnr_db: finite_db(out_sqnr.db()),
        layers,
    })
}
