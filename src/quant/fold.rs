//! Conv+BatchNorm folding and Conv/Linear+ReLU fusion, as PyTorch's `fuse_modules` does for
//! inference: a BatchNorm (eval statistics) that is the only reader of a Conv2d or Linear output
//! is folded into that layer's weight and bias,
//!
//! ```text
//! k = gamma / sqrt(running_var + eps)      (per output channel, computed in f64)
//! W' = W · k                               b' = (b − running_mean) · k + beta
//! ```
//!
//! producing an equivalent graph without the BatchNorm (its readers read the layer's output).
//! Fusion does not change the graph: [`fused_activation`] names the ReLU/Clip that runs as part of
//! a layer, and quantization points are placed after it. Depends on `graph`, `ops`,
//! `quant::rewrite`.

use super::error::QuantError;
use super::rewrite::{Rewriter, readers};
use crate::graph::{Graph, Source, ValueId};
use crate::ops::OpKind;
use crate::tensor::{Tensor, from_vec, slice};

/// What folding did: `(layer, batchnorm)` node-name pairs.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct FoldReport {
    pub folded: Vec<(String, String)>,
}

/// A BatchNorm that can be folded into the layer producing its input.
struct Foldable {
    bn: usize,
    layer: usize,
}

fn param_tensor(g: &Graph, v: ValueId) -> Option<&Tensor> {
    g.param_of(v).map(|p| &g.params[p].tensor)
}

fn find_foldable(g: &Graph) -> Vec<Foldable> {
    let rd = readers(g);
    let mut out = Vec::new();
    for (bi, bn) in g.nodes.iter().enumerate() {
        if !matches!(bn.op, OpKind::BatchNorm2d(_)) || bn.inputs.len() != 5 {
            continue;
        }
        let x = bn.inputs[0];
        let Source::Node(li) = g.values[x].source else {
            continue;
        };
        let layer = &g.nodes[li];
        let ok_op = matches!(layer.op, OpKind::Conv2d(_) | OpKind::Linear);
        let only_reader = rd[x].len() == 1 && !g.outputs.contains(&x);
        let params_ok = bn.inputs[1..].iter().all(|&v| g.param_of(v).is_some())
            && layer.inputs[1..]
                .iter()
                .all(|&v| g.param_of(v).is_some() && rd[v].len() == 1);
        if ok_op && only_reader && params_ok {
            out.push(Foldable { bn: bi, layer: li });
        }
    }
    out
}

/// Folds every foldable BatchNorm; returns the new graph and what was folded.
pub fn fold_batchnorm(g: &Graph) -> Result<(Graph, FoldReport), QuantError> {
    let foldable = find_foldable(g);
    let mut r = Rewriter::new(g);
    let mut report = FoldReport::default();
    for (ni, node) in g.nodes.iter().enumerate() {
        if let Some(f) = foldable.iter().find(|f| f.bn == ni) {
            // The BatchNorm disappears: its readers read the (folded) layer output.
            let layer_out = g.nodes[f.layer].output;
            let nv = r.get(layer_out);
            r.set(node.output, nv);
            report
                .folded
                .push((g.nodes[f.layer].name.clone(), node.name.clone()));
            continue;
        }
        let Some(f) = foldable.iter().find(|f| f.layer == ni) else {
            r.copy_node(ni);
            continue;
        };
        let bn = &g.nodes[f.bn];
        let OpKind::BatchNorm2d(attrs) = &bn.op else {
            unreachable!("find_foldable only returns BatchNorm nodes")
        };
        let t = |k: usize| slice(param_tensor(g, bn.inputs[k]).expect("checked in find_foldable"));
        let (gamma, beta, mean, var) = (t(1), t(2), t(3), t(4));
        let w = param_tensor(g, node.inputs[1]).expect("checked in find_foldable");
        let cout = w.shape()[0];
        let per = w.len() / cout.max(1);
        let k: Vec<f64> = (0..cout)
            .map(|c| f64::from(gamma[c]) / (f64::from(var[c]) + f64::from(attrs.eps)).sqrt())
            .collect();
        let wf: Vec<f32> = slice(w)
            .iter()
            .enumerate()
            .map(|(i, &v)| (f64::from(v) * k[i / per]) as f32)
            .collect();
        let bias = node.inputs.get(2).and_then(|&v| param_tensor(g, v));
        let bf: Vec<f32> = (0..cout)
            .map(|c| {
                let b = bias.map_or(0.0, |b| f64::from(slice(b)[c]));
                ((b - f64::from(mean[c])) * k[c] + f64::from(beta[c])) as f32
            })
            .collect();
        let w_name = g.values[node.inputs[1]].name.clone();
        let b_name = match node.inputs.get(2) {
            Some(&v) => g.values[v].name.clone(),
            None => r.unique(&format!("{}.bias", node.name)),
        };
        let trainable = |v: ValueId| g.param_of(v).is_some_and(|p| g.params[p].trainable);
        let wv = r.add_param_named(&w_name, from_vec(w.shape(), wf), trainable(node.inputs[1]));
        let bv = r.add_param_named(&b_name, from_vec(&[cout], bf), true);
        let x = r.get(node.inputs[0]);
        let out_name = g.values[node.output].name.clone();
        let nv = r.node(&node.name, node.op.clone(), vec![x, wv, bv], &out_name);
        r.set(node.output, nv);
    }
    let (graph, _) = r.finish()?;
    Ok((graph, report))
}

/// The ReLU or Clip that is the only reader of node `layer`'s output (which must not be a graph
/// output), i.e. the activation that runs fused into the layer. `rd` is [`readers`] of `g`.
pub fn fused_activation(g: &Graph, layer: usize, rd: &[Vec<(usize, usize)>]) -> Option<usize> {
    let out = g.nodes[layer].output;
    if g.outputs.contains(&out) {
        return None;
    }
    match rd[out].as_slice() {
        [(a, 0)] if matches!(g.nodes[*a].op, OpKind::Relu | OpKind::Clip(_)) => Some(*a),
        _ => None,
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::ops::gradcheck::rand_tensor;
    use crate::zoo::Arch;
    use rand::{Rng, SeedableRng};

    /// Random BatchNorm statistics so that folding has something to do.
    pub(crate) fn randomize_bn(g: &mut Graph, seed: u64) {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
        for p in &mut g.params {
            let kind = p.name.rsplit('.').next().unwrap_or("").to_string();
            if !p.name.contains(".bn.") {
                continue;
            }
            for v in p.tensor.iter_mut() {
                *v = match kind.as_str() {
                    "weight" => rng.random_range(0.5..1.5),
                    "bias" | "running_mean" => rng.random_range(-0.5..0.5),
                    "running_var" => rng.random_range(0.3..2.0),
                    _ => *v,
                };
            }
        }
    }

    pub(crate) fn max_rel_diff(a: &Tensor, b: &Tensor) -> f32 {
        let scale = a.iter().fold(1.0f32, |m, v| m.max(v.abs()));
        a.iter()
            .zip(b)
            .map(|(x, y)| (x - y).abs())
            .fold(0.0, f32::max)
            / scale
    }

    #[test]
    fn folding_preserves_outputs_of_resnet_and_mobilenet() {
        for (arch, bns) in [(Arch::ResnetMini, 6), (Arch::MobilenetMini, 7)] {
            let mut g = arch.build([1, 16, 16], 10, 7).unwrap();
            randomize_bn(&mut g, 11);
            let (f, report) = fold_batchnorm(&g).unwrap();
            assert_eq!(report.folded.len(), bns, "{}", arch.name());
            assert!(
                f.nodes
                    .iter()
                    .all(|n| !matches!(n.op, OpKind::BatchNorm2d(_)))
            );
            assert!(f.params.iter().all(|p| !p.name.contains(".bn.")));
            let x = rand_tensor(&[4, 1, 16, 16], 3).mapv(|v| v * 2.0);
            let (a, b) = (g.infer(&x).unwrap(), f.infer(&x).unwrap());
            let d = max_rel_diff(&a, &b);
            assert!(d < 1e-5, "{}: relative difference {d:e}", arch.name());
        }
    }

    #[test]
    fn graphs_without_batchnorm_are_unchanged() {
        let g = Arch::SeedCnn.build([1, 28, 28], 10, 0).unwrap();
        let (f, report) = fold_batchnorm(&g).unwrap();
        assert!(report.folded.is_empty());
        assert_eq!(f.nodes, g.nodes);
        assert_eq!(f.params.len(), g.params.len());
        let rd = readers(&f);
        let conv1 = f.nodes.iter().position(|n| n.name == "conv1").unwrap();
        let relu1 = f.nodes.iter().position(|n| n.name == "relu1").unwrap();
        assert_eq!(fused_activation(&f, conv1, &rd), Some(relu1));
        let fc = f.nodes.iter().position(|n| n.name == "fc").unwrap();
        assert_eq!(fused_activation(&f, fc, &rd), None);
    }
}
