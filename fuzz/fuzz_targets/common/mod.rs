//! What the graph fuzz targets share: the one-sample input of a graph cheap enough to run
//! forward on every execution (so that forward passes stay fast).

use qatlas::graph::{Graph, summarize};
use qatlas::tensor::Tensor;

/// Forward passes are only tried on models this cheap (multiply-accumulates per sample, input
/// elements, summed output elements).
const MAX_MACS: u64 = 2_000_000;
const MAX_INPUT: usize = 1 << 16;
const MAX_OUTPUTS: u64 = 1 << 22;

/// A batch of one sample (all 0.5) for `g`, or `None` when `g` does not summarise or is too
/// large to run on every execution.
pub fn cheap_input(g: &Graph) -> Option<Tensor> {
    let layers = summarize(g).ok()?;
    let macs = layers.iter().fold(0u64, |a, l| a.saturating_add(l.macs));
    let elems = g
        .input_shape
        .iter()
        .fold(1usize, |a, &d| a.saturating_mul(d));
    let outputs: u64 = layers
        .iter()
        .map(|l| {
            l.output_shape
                .iter()
                .fold(1u64, |a, &d| a.saturating_mul(d as u64))
        })
        .fold(0u64, u64::saturating_add);
    if macs > MAX_MACS || elems > MAX_INPUT || outputs > MAX_OUTPUTS {
        return None;
    }
    let mut shape = vec![1];
    shape.extend(&g.input_shape);
    Some(qatlas::tensor::zeros(&shape).mapv(|_| 0.5f32))
}
