//! Where fake quantizers go for a plan: the quantization points of a (folded) graph.
//!
//! For every quantized layer (Conv2d, Linear, MatMul):
//! - a **weight** point on its weight parameter (per output channel: axis 0 of Conv/Linear
//!   weights, the last axis of a MatMul's `[K, N]` weight);
//! - an **output** point after the layer's fused activation (ReLU/Clip, see
//!   [`fused_activation`]) when its activations are quantized; every reader sees the quantized
//!   value, as PyTorch places the observer after a fused ConvReLU;
//! - an **input** point on each activation input unless the value already comes, through
//!   grid-preserving ops (MaxPool, Flatten, Reshape, Dropout, ReLU), from an output point with the
//!   same grid, which is then shared (so `conv1 → relu → pool → conv2` quantizes once). Readers
//!   wanting the same grid on the same value share one input point; other readers still see
//!   the unquantized value.
//!
//! A point shared this way uses the producer's observer. Depends on `graph`, `ops`,
//! `quant::{plan, fold, rewrite, scheme, observer}`.

use super::error::QuantError;
use super::fold::fused_activation;
use super::observer::Observer;
use super::plan::{LayerPlan, Precision, QuantPlan, quantizable_layers};
use super::rewrite::readers;
use super::scheme::PointGrid;
use crate::graph::{Graph, Source, ValueId};
use crate::ops::OpKind;
use std::collections::{HashMap, HashSet};

/// What a point quantizes.
#[derive(Clone, Debug, PartialEq)]
pub enum PointKind {
    /// Input 1 (the weight parameter) of node `layer`; `axis` for per-channel scales.
    Weight { layer: usize, axis: Option<usize> },
    /// The output of a quantized layer (after its fused activation), seen by every reader.
    Output { layer: usize },
    /// An activation value as seen by the listed `(node, input index)` readers only.
    Input { readers: Vec<(usize, usize)> },
}

/// One fake quantizer to insert.
#[derive(Clone, Debug, PartialEq)]
pub struct Point {
    /// Name of the fake-quant node (unique in the graph).
    pub name: String,
    /// The value quantized (a parameter value for weights), in the folded graph.
    pub value: ValueId,
    pub grid: PointGrid,
    pub observer: Observer,
    pub kind: PointKind,
}

impl Point {
    /// Whether this point quantizes an activation (and so needs calibration).
    pub fn is_activation(&self) -> bool {
        !matches!(self.kind, PointKind::Weight { .. })
    }
}

/// The points of one quantized layer.
#[derive(Clone, Debug, PartialEq)]
pub struct LayerPoints {
    /// The layer's node index.
    pub node: usize,
    pub plan: LayerPlan,
    /// The ReLU/Clip node fused into the layer, if any.
    pub activation: Option<usize>,
    /// The point governing each input (`None` for the weight, bias and float inputs).
    pub inputs: Vec<Option<usize>>,
    pub weight: Option<usize>,
    pub output: Option<usize>,
}

/// All points of a plan on a graph.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct QuantPoints {
    pub points: Vec<Point>,
    /// Quantized layers only, in graph order.
    pub layers: Vec<LayerPoints>,
}

/// Ops through which a quantized value stays on the same grid.
fn grid_preserving(op: &OpKind) -> bool {
    matches!(
        op,
        OpKind::MaxPool2d(_)
            | OpKind::Flatten(_)
            | OpKind::Reshape(_)
            | OpKind::Dropout(_)
            | OpKind::Relu
    )
}

/// The output point that `v` comes from through grid-preserving ops, if any.
fn upstream_output_point(
    g: &Graph,
    mut v: ValueId,
    outputs: &HashMap<ValueId, usize>,
) -> Option<usize> {
    loop {
        if let Some(&p) = outputs.get(&v) {
            return Some(p);
        }
        let Source::Node(n) = g.values[v].source else {
            return None;
        };
        let node = &g.nodes[n];
        if !grid_preserving(&node.op) {
            return None;
        }
        v = node.inputs[0];
    }
}

/// Plans the points of `plan` on `g` (normally the BatchNorm-folded graph). Layers the plan
/// does not list stay in fp32.
pub fn plan_points(g: &Graph, plan: &QuantPlan) -> Result<QuantPoints, QuantError> {
    plan.validate_for(g)?;
    let rd = readers(g);
    let mut used: HashSet<String> = g.values.iter().map(|v| v.name.clone()).collect();
    let mut unique = |base: String| {
        let mut name = base.clone();
        let mut k = 2;
        while !used.insert(name.clone()) {
            name = format!("{base}.{k}");
            k += 1;
        }
        name
    };
    let mut qp = QuantPoints::default();
    let mut output_point: HashMap<ValueId, usize> = HashMap::new();
    for ni in quantizable_layers(g) {
        let node = &g.nodes[ni];
        let Some(lp) = plan.layer(&node.name).filter(|l| l.is_quantized()) else {
            continue;
        };
        let mut lpts = LayerPoints {
            node: ni,
            plan: lp.clone(),
            activation: fused_activation(g, ni, &rd),
            inputs: vec![None; node.inputs.len()],
            weight: None,
            output: None,
        };
        if let (Some(&w), Some(grid)) = (node.inputs.get(1), lp.weight_grid())
            && let Some(pw) = g.param_of(w)
        {
            let ndim = g.params[pw].tensor.ndim();
            let axis = match (&node.op, lp.weight_granularity) {
                (_, super::plan::Granularity::PerTensor) => None,
                (OpKind::MatMul, _) => Some(ndim.saturating_sub(1)),
                _ => Some(0),
            };
            qp.points.push(Point {
                name: unique(format!("{}.fq", g.values[w].name)),
                value: w,
                grid,
                observer: lp.weight_observer,
                kind: PointKind::Weight { layer: ni, axis },
            });
            lpts.weight = Some(qp.points.len() - 1);
        }
        if let Some(grid) = lp.activation_grid() {
            let out = lpts.activation.map_or(node.output, |a| g.nodes[a].output);
            qp.points.push(Point {
                name: unique(format!("{}.fq", g.values[out].name)),
                value: out,
                grid,
                observer: lp.activation_observer,
                kind: PointKind::Output { layer: ni },
            });
            lpts.output = Some(qp.points.len() - 1);
            output_point.insert(out, qp.points.len() - 1);
        }
        qp.layers.push(lpts);
    }
    // Input points, once every output point is known.
    let mut input_point: HashMap<(ValueId, PointGrid), usize> = HashMap::new();
    for li in 0..qp.layers.len() {
        let ni = qp.layers[li].node;
        let Some(grid) = qp.layers[li].plan.activation_grid() else {
            continue;
        };
        let node = &g.nodes[ni];
        let act_inputs: Vec<usize> = match node.op {
            OpKind::MatMul if g.param_of(node.inputs[1]).is_none() => vec![0, 1],
            _ => vec![0],
        };
        for k in act_inputs {
            let u = node.inputs[k];
            if let Some(p) = upstream_output_point(g, u, &output_point)
                && qp.points[p].grid == grid
            {
                qp.layers[li].inputs[k] = Some(p);
                continue;
            }
            let p = match input_point.get(&(u, grid)) {
                Some(&p) => {
                    if let PointKind::Input { readers } = &mut qp.points[p].kind {
                        readers.push((ni, k));
                    }
                    p
                }
                None => {
                    qp.points.push(Point {
                        name: unique(format!("{}.fq", g.values[u].name)),
                        value: u,
                        grid,
                        observer: qp.layers[li].plan.activation_observer,
                        kind: PointKind::Input {
                            readers: vec![(ni, k)],
                        },
                    });
                    input_point.insert((u, grid), qp.points.len() - 1);
                    qp.points.len() - 1
                }
            };
            qp.layers[li].inputs[k] = Some(p);
        }
    }
    Ok(qp)
}

/// The plan with `layer` set to `precision` and every other layer excluded ("only this layer").
pub fn only_layer(plan: &QuantPlan, layer: &str) -> QuantPlan {
    let mut p = plan.clone();
    for l in &mut p.layers {
        l.excluded = l.layer != layer;
    }
    p
}

/// The plan with `layer` kept in fp32 ("all but this layer").
pub fn all_but_layer(plan: &QuantPlan, layer: &str) -> QuantPlan {
    let mut p = plan.clone();
    if let Some(l) = p.layer_mut(layer) {
        l.excluded = true;
    }
    p
}

/// The plan at one precision for every layer it lists (keeping other settings).
pub fn at_precision(plan: &QuantPlan, precision: Precision) -> QuantPlan {
    let mut p = plan.clone();
    for l in &mut p.layers {
        l.precision = precision;
    }
    p
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::quant::fold::fold_batchnorm;
    use crate::zoo::Arch;

    fn names(g: &Graph, qp: &QuantPoints) -> Vec<String> {
        qp.points
            .iter()
            .map(|p| format!("{}@{}", p.name, g.values[p.value].name))
            .collect()
    }

    #[test]
    fn seed_cnn_points_are_shared_through_pooling() {
        let g = Arch::SeedCnn.build([1, 28, 28], 10, 0).unwrap();
        let qp = plan_points(&g, &QuantPlan::default_for(&g, Precision::Int8)).unwrap();
        assert_eq!(
            names(&g, &qp),
            [
                "conv1.weight.fq@conv1.weight",
                "relu1.fq@relu1",
                "conv2.weight.fq@conv2.weight",
                "relu2.fq@relu2",
                "fc.weight.fq@fc.weight",
                "fc.fq@fc",
                "input.fq@input",
            ]
        );
        // conv2 reads pool1 = maxpool(relu1.fq): shares relu1's point; fc shares relu2's.
        assert_eq!(qp.layers[1].inputs[0], Some(1));
        assert_eq!(qp.layers[2].inputs[0], Some(3));
        assert_eq!(qp.layers[0].inputs[0], Some(6));
    }

    #[test]
    fn only_one_layer_gets_its_own_input_point() {
        let g = Arch::SeedCnn.build([1, 28, 28], 10, 0).unwrap();
        let plan = only_layer(&QuantPlan::default_for(&g, Precision::Int4), "conv2");
        let qp = plan_points(&g, &plan).unwrap();
        assert_eq!(
            names(&g, &qp),
            [
                "conv2.weight.fq@conv2.weight",
                "relu2.fq@relu2",
                "pool1.fq@pool1"
            ]
        );
    }

    #[test]
    fn resnet_points_after_folding() {
        let g = Arch::ResnetMini.build([1, 16, 16], 10, 0).unwrap();
        let (f, _) = fold_batchnorm(&g).unwrap();
        let qp = plan_points(&f, &QuantPlan::default_for(&f, Precision::Int8)).unwrap();
        let n = names(&f, &qp);
        // block1.conv2 feeds the Add directly: its output point is on the conv output.
        assert!(
            n.contains(&"block1.conv2.fq@block1.conv2".to_string()),
            "{n:?}"
        );
        // The block output (add -> relu2) is quantized where `down` reads it.
        assert!(
            n.contains(&"block1.relu2.fq@block1.relu2".to_string()),
            "{n:?}"
        );
        // fc reads flatten(gap(..)): an averaging op, so fc gets its own input point.
        assert!(n.contains(&"flatten.fq@flatten".to_string()), "{n:?}");
        assert_eq!(qp.layers.len(), 7);
    }
}
