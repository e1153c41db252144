//! What the studio draws per layer: weight and activation histograms (fixed bins) with the
//! chosen quantization range and grid laid over them, and per-channel weight ranges.
//!
//! Activation histograms come from the calibration's histogram observers when there are some;
//! [`observe_histograms`] makes them for any values otherwise (one pass, bounded memory).
//! Depends on `quant`, `tensor`, `analysis::sqnr`.

use crate::graph::{Graph, ValueId};
use crate::quant::calibrate::Calibrator;
use crate::quant::exec::run_tapped;
use crate::quant::histogram::Histogram;
use crate::quant::observer::channel_ranges;
use crate::quant::points::PointKind;
use crate::quant::scheme::{PointGrid, QSpec, dequantize};
use crate::quant::{PointRange, PtqResult, QuantError};
use crate::tensor::{Tensor, slice};
use serde::Serialize;
use std::collections::HashMap;

/// A histogram ready to draw: `counts[i]` covers `[lo + i·w, lo + (i+1)·w)`, `w = (hi-lo)/len`.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct HistogramView {
    pub lo: f64,
    pub hi: f64,
    pub counts: Vec<u64>,
}

impl HistogramView {
    /// A view of `h` with at most `bins` bins.
    pub fn of(h: &Histogram, bins: usize) -> Self {
        let (lo, hi, counts) = h.downsample(bins);
        HistogramView { lo, hi, counts }
    }
}

/// The quantization laid over a histogram.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Overlay {
    /// The range the observer chose (first channel for per-channel weights).
    pub range: (f32, f32),
    /// What the grid covers: `[dequant(qmin), dequant(qmax)]`.
    pub grid_range: (f32, f32),
    pub scale: f32,
    pub zero_point: i32,
    /// Every representable value (at most 256 of them).
    pub levels: Vec<f32>,
}

impl Overlay {
    /// The overlay of channel `c` of a frozen range.
    pub fn of(r: &PointRange, c: usize) -> Self {
        let spec = QSpec {
            dtype: r.dtype,
            scheme: r.scheme,
        };
        let (qmin, qmax) = spec.range();
        let (s, z) = (r.scale[c], r.zero_point[c]);
        Overlay {
            range: (r.min[c], r.max[c]),
            grid_range: (dequantize(qmin, s, z), dequantize(qmax, s, z)),
            scale: s,
            zero_point: z,
            levels: (qmin..=qmax).map(|q| dequantize(q, s, z)).collect(),
        }
    }
}

/// A tensor's histogram with its quantization.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct TensorView {
    pub histogram: Option<HistogramView>,
    /// `None` for fp16 grids (no integer levels) and unquantized tensors.
    pub overlay: Option<Overlay>,
    pub grid: String,
}

/// Everything drawn for one layer.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct LayerStats {
    pub layer: String,
    pub op: String,
    pub weight: Option<TensorView>,
    /// Per-output-channel min and max of the float weights.
    pub channel_ranges: Vec<(f32, f32)>,
    /// The layer's output activation (after its fused activation).
    pub activation: Option<TensorView>,
    /// The layer's input activation: the histogram of its input point (which may be the point
    /// it shares with the layer producing it, e.g. through a MaxPool) with that point's grid.
    pub input: Option<TensorView>,
}

fn tensor_histogram(t: &Tensor, bins: usize) -> HistogramView {
    let mut h = Histogram::new(bins);
    h.observe(slice(t));
    HistogramView::of(&h, bins)
}

/// Per-layer views of a PTQ result, histograms drawn with `bins` bins.
pub fn layer_stats(res: &PtqResult, bins: usize) -> Vec<LayerStats> {
    let g = &res.folded;
    let cal: &Calibrator = &res.calibrator;
    res.points
        .layers
        .iter()
        .map(|l| {
            let node = &g.nodes[l.node];
            let weight = l.weight.map(|pi| {
                let pp = &res.prepared.points[pi];
                let w = g.param_of(pp.point.value).map(|p| &g.params[p].tensor);
                TensorView {
                    histogram: w.map(|w| tensor_histogram(w, bins)),
                    overlay: pp.range.as_ref().map(|r| Overlay::of(r, 0)),
                    grid: pp.point.grid.describe(),
                }
            });
            let channel_ranges = node
                .inputs
                .get(1)
                .and_then(|&v| g.param_of(v))
                .map(|p| {
                    let axis = match l.weight.map(|pi| &res.points.points[pi].kind) {
                        Some(PointKind::Weight { axis: Some(a), .. }) => *a,
                        _ => 0,
                    };
                    let spec_any = QSpec {
                        dtype: crate::quant::scheme::QDtype::S8,
                        scheme: crate::quant::scheme::Scheme::Symmetric,
                    };
                    channel_ranges(
                        &g.params[p].tensor,
                        axis,
                        &crate::quant::Observer::MinMax,
                        spec_any,
                    )
                })
                .unwrap_or_default();
            let activation_view = |pi: usize| {
                let pp = &res.prepared.points[pi];
                TensorView {
                    histogram: cal
                        .state(&pp.point)
                        .and_then(|s| s.histogram())
                        .map(|h| HistogramView::of(h, bins)),
                    overlay: match pp.point.grid {
                        PointGrid::Int(_) => pp.range.as_ref().map(|r| Overlay::of(r, 0)),
                        PointGrid::Fp16 => None,
                    },
                    grid: pp.point.grid.describe(),
                }
            };
            LayerStats {
                layer: node.name.clone(),
                op: node.op.name().to_string(),
                weight,
                channel_ranges,
                activation: l.output.map(activation_view),
                input: l.inputs.first().copied().flatten().map(activation_view),
            }
        })
        .collect()
}

/// Histograms of chosen values of `g` over batches (for observers without one).
pub fn observe_histograms(
    g: &Graph,
    values: &[ValueId],
    batches: impl IntoIterator<Item = Tensor>,
    bins: usize,
) -> Result<Vec<Histogram>, QuantError> {
    let index: HashMap<ValueId, usize> = values.iter().enumerate().map(|(i, &v)| (v, i)).collect();
    let mut hs = vec![Histogram::new(bins); values.len()];
    for x in batches {
        run_tapped(g, &x, &mut |v, t| {
            if let Some(&i) = index.get(&v) {
                hs[i].observe(slice(t));
            }
        })?;
    }
    Ok(hs)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::gradcheck::rand_tensor;
    use crate::quant::plan::{Precision, QuantPlan};
    use crate::quant::ptq;
    use crate::zoo::Arch;
    use std::sync::atomic::AtomicBool;

    #[test]
    fn views_carry_grids_that_match_the_ranges() {
        let g = Arch::SeedCnn.build([1, 8, 8], 3, 0).unwrap();
        let plan = QuantPlan::default_for(&g, Precision::Int4);
        let x = rand_tensor(&[8, 1, 8, 8], 1);
        let res = ptq(&g, &plan, [x], &AtomicBool::new(false), &mut |_| {}).unwrap();
        let stats = layer_stats(&res, 64);
        assert_eq!(stats.len(), 3);
        let w = stats[0].weight.as_ref().unwrap();
        let o = w.overlay.as_ref().unwrap();
        assert_eq!(o.levels.len(), 16); // int4 weights
        assert_eq!(o.levels[0], -8.0 * o.scale);
        assert_eq!(
            w.histogram.as_ref().unwrap().counts.iter().sum::<u64>(),
            16 * 9
        );
        assert_eq!(stats[0].channel_ranges.len(), 16);
        let a = stats[0].activation.as_ref().unwrap();
        assert_eq!(a.overlay.as_ref().unwrap().levels.len(), 256); // int8 activations (W4A8)
        assert_eq!(a.histogram.as_ref().unwrap().counts.len(), 64);
        // conv1 reads the image: 8 images of 8x8 values, u8 grid (W4A8).
        let i = stats[0].input.as_ref().unwrap();
        assert_eq!(
            i.histogram.as_ref().unwrap().counts.iter().sum::<u64>(),
            8 * 64
        );
        assert_eq!(i.grid, "u8 affine");
        let input_range = res.plan.ranges.iter().find(|r| r.point == "input.fq");
        assert_eq!(i.overlay, input_range.map(|r| Overlay::of(r, 0)));
        // conv2 reads pool1 = maxpool(relu1.fq): it shows conv1's output point, 8·16·8·8 values.
        assert_eq!(stats[1].input, stats[0].activation);
        let shared = stats[1].input.as_ref().unwrap().histogram.as_ref().unwrap();
        assert_eq!(shared.counts.iter().sum::<u64>(), 8 * 16 * 64);
    }
}
