//! A per-layer table of a graph: op, output shape and parameter count (the CLI's `info` and the
//! studio's model panel show it).

use super::{Graph, GraphError, Source};
use serde::Serialize;

/// One row of a model summary.
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct LayerSummary {
    pub name: String,
    pub op: String,
    pub output_shape: Vec<usize>,
    /// Trainable scalars read directly by this node.
    pub params: usize,
    /// Multiply-accumulates per sample (Conv2d, Linear, MatMul), 0 for other ops.
    pub macs: u64,
}

/// Summarises every node for a batch of one.
pub fn summarize(g: &Graph) -> Result<Vec<LayerSummary>, GraphError> {
    let shapes = g.infer_shapes(1)?;
    Ok(g.nodes
        .iter()
        .map(|n| {
            let params = n
                .inputs
                .iter()
                .filter_map(|&v| match g.values[v].source {
                    Source::Param(p) if g.params[p].trainable => Some(g.params[p].tensor.len()),
                    _ => None,
                })
                .sum();
            let out = &shapes[n.output];
            let out_elems: u64 = out.iter().product::<usize>() as u64;
            let macs = match &n.op {
                // Unknown shape (downstream of an unsupported imported op).
                _ if out.is_empty() => 0,
                crate::ops::OpKind::Conv2d(_) => {
                    let w = &shapes[n.inputs[1]];
                    out_elems * (w[1] * w[2] * w[3]) as u64
                }
                crate::ops::OpKind::Linear => out_elems * shapes[n.inputs[1]][1] as u64,
                crate::ops::OpKind::MatMul => {
                    let a = &shapes[n.inputs[0]];
                    out_elems * a[a.len() - 1] as u64
                }
                _ => 0,
            };
            LayerSummary {
                name: n.name.clone(),
                op: n.op.name().to_string(),
                output_shape: out.clone(),
                params,
                macs,
            }
        })
        .collect())
}
