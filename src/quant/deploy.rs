//! From a QAT training graph back to the deployable fake-quant form that PTQ produces (BatchNorm
//! folded, quantizers frozen, no observers): what `qat --out` writes and the integer runtime
//! converts.
//!
//! Works on any training graph, so also on a checkpoint read back from disk: the pattern
//! `BnScale → ChannelAffine(axis 0) → [FakeQuant] → Conv/Linear → ChannelAffine(divide) →
//! BatchNorm` becomes `Conv/Linear(x, FakeQuant(w·f), b')` with
//!
//! ```text
//! f  = gamma / sqrt(running_var + eps)        (ops::channel_scale::bn_scale, f32, as in training)
//! w' = w · f                                  (the exact tensor the training quantizer saw)
//! b' = (b − running_mean) · f + beta
//! ```
//!
//! Observer inputs are dropped, so the quantizers keep the scale and zero point they hold.
//! Depends on `graph`, `ops` and `quant::{rewrite, plan}`.

use super::error::QuantError;
use super::plan::PointRange;
use super::rewrite::{Rewriter, readers};
use crate::graph::{Graph, Source, ValueId};
use crate::ops::channel_scale::{affine_forward, bn_scale};
use crate::ops::{ChannelAffineAttrs, FakeQuantAttrs, OpKind, QuantGrid};
use crate::tensor::{Tensor, from_vec, slice};
use std::collections::HashMap;

/// A simulated fold found in a training graph.
struct SimFold {
    /// `ChannelAffine(axis 0)` node scaling the weight.
    scale_node: usize,
    /// The layer's output ChannelAffine(divide) and BatchNorm nodes.
    unscale: usize,
    bn: usize,
}

fn param<'g>(g: &'g Graph, v: ValueId, what: &str, node: &str) -> Result<&'g Tensor, QuantError> {
    g.param_of(v)
        .map(|p| &g.params[p].tensor)
        .ok_or_else(|| QuantError::Structure(format!("{what} of '{node}' is not a parameter")))
}

/// Follows a layer's weight input back through an optional fake quantizer to a weight-scaling
/// `ChannelAffine` node.
fn weight_scaling(g: &Graph, layer: usize) -> Option<usize> {
    let mut v = *g.nodes[layer].inputs.get(1)?;
    for _ in 0..2 {
        let Source::Node(n) = g.values[v].source else {
            return None;
        };
        match &g.nodes[n].op {
            OpKind::ChannelAffine(ChannelAffineAttrs {
                axis: 0,
                divide: false,
            }) => return Some(n),
            OpKind::FakeQuant(_) => v = g.nodes[n].inputs[0],
            _ => return None,
        }
    }
    None
}

fn find_folds(g: &Graph) -> HashMap<usize, SimFold> {
    let rd = readers(g);
    let mut out = HashMap::new();
    for (li, n) in g.nodes.iter().enumerate() {
        if !matches!(n.op, OpKind::Conv2d(_) | OpKind::Linear) {
            continue;
        }
        let Some(scale_node) = weight_scaling(g, li) else {
            continue;
        };
        let only = |v: ValueId| match rd[v].as_slice() {
            [(r, 0)] if !g.outputs.contains(&v) => Some(*r),
            _ => None,
        };
        let Some(unscale) = only(n.output) else {
            continue;
        };
        let is_unscale = matches!(
            g.nodes[unscale].op,
            OpKind::ChannelAffine(ChannelAffineAttrs {
                axis: 1,
                divide: true
            })
        );
        let Some(bn) = only(g.nodes[unscale].output) else {
            continue;
        };
        if is_unscale && matches!(g.nodes[bn].op, OpKind::BatchNorm2d(_)) {
            out.insert(
                li,
                SimFold {
                    scale_node,
                    unscale,
                    bn,
                },
            );
        }
    }
    out
}

/// The deployable fake-quant graph of a QAT training graph (see the module doc).
pub fn deploy(g: &Graph) -> Result<Graph, QuantError> {
    let folds = find_folds(g);
    // Weight-scaling node -> folded weight tensor.
    let mut folded_w: HashMap<usize, (String, Tensor, Vec<f32>)> = HashMap::new();
    let mut skip = vec![false; g.nodes.len()];
    for (&li, f) in &folds {
        let (sn, bn) = (&g.nodes[f.scale_node], &g.nodes[f.bn]);
        let OpKind::BatchNorm2d(attrs) = &bn.op else {
            unreachable!("find_folds checked the op")
        };
        let gamma = param(g, bn.inputs[1], "gamma", &bn.name)?;
        let var = param(g, bn.inputs[4], "running variance", &bn.name)?;
        let factor = bn_scale(slice(gamma), slice(var), attrs.eps);
        let w = param(g, sn.inputs[0], "weight", &g.nodes[li].name)?;
        let fac = from_vec(&[factor.len()], factor.clone());
        let a = ChannelAffineAttrs {
            axis: 0,
            divide: false,
        };
        let wf = affine_forward(&a, &[w, &fac]);
        folded_w.insert(
            f.scale_node,
            (g.values[sn.inputs[0]].name.clone(), wf, factor),
        );
        skip[f.unscale] = true;
        skip[f.bn] = true;
        skip[f.scale_node] = true;
        if let Source::Node(b) = g.values[sn.inputs[1]].source {
            skip[b] = true;
        }
    }
    let mut r = Rewriter::new(g);
    let mut weight_value: HashMap<usize, ValueId> = HashMap::new();
    for (ni, node) in g.nodes.iter().enumerate() {
        if skip[ni] {
            continue;
        }
        let mapped = |r: &mut Rewriter<'_>, v: ValueId, wv: &mut HashMap<usize, ValueId>| {
            if let Source::Node(s) = g.values[v].source
                && let Some((name, t, _)) = folded_w.get(&s)
            {
                return *wv
                    .entry(s)
                    .or_insert_with(|| r.add_param_named(name, t.clone(), true));
            }
            r.get(v)
        };
        match &node.op {
            OpKind::FakeQuant(a) => {
                let x = mapped(&mut r, node.inputs[0], &mut weight_value);
                let mut inputs = vec![x];
                if a.grid != QuantGrid::Fp16 {
                    inputs.push(r.get(node.inputs[1]));
                    inputs.push(r.get(node.inputs[2]));
                }
                let attrs = FakeQuantAttrs {
                    observer: None,
                    damping: 0.0,
                    ..a.clone()
                };
                let out = r.node(&node.name, OpKind::FakeQuant(attrs), inputs, &node.name);
                r.set(node.output, out);
            }
            _ if folds.contains_key(&ni) => {
                let f = &folds[&ni];
                let (un, bn) = (&g.nodes[f.unscale], &g.nodes[f.bn]);
                let x = r.get(node.inputs[0]);
                let w = mapped(&mut r, node.inputs[1], &mut weight_value);
                let factor = &folded_w[&f.scale_node].2;
                let t = |v: ValueId, what: &str| param(g, v, what, &bn.name).map(slice);
                let (beta, mean) = (t(bn.inputs[2], "beta")?, t(bn.inputs[3], "running mean")?);
                let bias = match un.inputs.get(2) {
                    Some(&b) => Some((g.values[b].name.clone(), t(b, "bias")?)),
                    None => None,
                };
                let bf: Vec<f32> = (0..factor.len())
                    .map(|c| {
                        let b = bias.as_ref().map_or(0.0, |(_, b)| b[c]);
                        (b - mean[c]) * factor[c] + beta[c]
                    })
                    .collect();
                let b_name = match &bias {
                    Some((n, _)) => n.clone(),
                    None => r.unique(&format!("{}.bias", node.name)),
                };
                let bv = r.add_param_named(&b_name, from_vec(&[bf.len()], bf), true);
                let out_name = g.values[bn.output].name.clone();
                let y = r.node(&node.name, node.op.clone(), vec![x, w, bv], &out_name);
                r.set(node.output, y);
                r.set(un.output, y);
                r.set(bn.output, y);
            }
            _ => {
                r.copy_node(ni);
            }
        }
    }
    Ok(r.finish()?.0)
}

/// The plan ranges of a deployed graph: `template` (the PTQ ranges, for names, types and
/// schemes) with scale and zero point read from the graph's quantizers and min/max the
/// represented range `[(qmin − zp)·s, (qmax − zp)·s]`.
pub fn deployed_ranges(g: &Graph, template: &[PointRange]) -> Result<Vec<PointRange>, QuantError> {
    let fq: HashMap<&str, &crate::graph::Node> = g
        .nodes
        .iter()
        .filter(|n| matches!(n.op, OpKind::FakeQuant(_)))
        .map(|n| (n.name.as_str(), n))
        .collect();
    template
        .iter()
        .map(|t| {
            let n = fq
                .get(t.point.as_str())
                .ok_or_else(|| QuantError::UnknownPoint {
                    point: t.point.clone(),
                })?;
            let s = slice(param(g, n.inputs[1], "scale", &n.name)?).to_vec();
            let z = slice(param(g, n.inputs[2], "zero point", &n.name)?);
            let (qmin, qmax) = t.dtype.range();
            let zp: Vec<i32> = z
                .iter()
                .map(|&v| crate::ops::fake_quant::effective_zero_point(v, qmin, qmax) as i32)
                .collect();
            let s: Vec<f32> = s
                .iter()
                .map(|&v| crate::ops::fake_quant::effective_scale(v))
                .collect();
            let r = PointRange {
                min: s
                    .iter()
                    .zip(&zp)
                    .map(|(s, z)| (qmin - z) as f32 * s)
                    .collect(),
                max: s
                    .iter()
                    .zip(&zp)
                    .map(|(s, z)| (qmax - z) as f32 * s)
                    .collect(),
                scale: s,
                zero_point: zp,
                ..t.clone()
            };
            r.validate()?;
            Ok(r)
        })
        .collect()
}
