//! Inserting fake quantizers: turns a float graph and its [`QuantPoints`] plus frozen ranges into
//! a graph with `FakeQuant` nodes whose scales and zero points are parameters (buffers; QAT can
//! make them trainable). The result simulates the quantized model with the ordinary executor,
//! trainer and evaluator, and tells the integer runtime which node does what.
//!
//! Naming: a point's node is called by the point's name (`conv1.weight.fq`, `relu1.fq`), its
//! parameters `<point>.scale` and `<point>.zero_point`; every other node and value keeps its
//! name. Depends on `graph`, `ops`, `quant::{points, plan, rewrite, scheme}`.

use super::error::QuantError;
use super::plan::PointRange;
use super::points::{LayerPoints, Point, PointKind, QuantPoints};
use super::rewrite::Rewriter;
use super::scheme::PointGrid;
use crate::graph::{Graph, ValueId};
use crate::ops::{FakeQuantAttrs, OpKind, QuantGrid};
use crate::tensor::from_vec;
use std::collections::HashMap;

/// A point as inserted.
#[derive(Clone, Debug)]
pub struct PreparedPoint {
    pub point: Point,
    /// The fake-quant node in the prepared graph.
    pub node: usize,
    /// Frozen parameters (`None` for fp16 points).
    pub range: Option<PointRange>,
}

/// A fake-quant model with the map back to its float original.
#[derive(Clone, Debug)]
pub struct Prepared {
    pub graph: Graph,
    /// Same order as the planned points.
    pub points: Vec<PreparedPoint>,
    /// The quantized layers; node indices refer to the **prepared** graph.
    pub layers: Vec<LayerPoints>,
    /// For each value of the float graph, the value its readers see in the prepared graph
    /// (after a layer-output fake quantizer, if any).
    pub value_map: Vec<Option<ValueId>>,
}

impl Prepared {
    /// The frozen ranges of all integer points (what a plan file stores).
    pub fn ranges(&self) -> Vec<PointRange> {
        self.points.iter().filter_map(|p| p.range.clone()).collect()
    }
}

/// Inserts the points of `qp` into `g` with parameters from `ranges` (by point name; extra
/// entries are ignored, a missing integer point is an error).
pub fn prepare(g: &Graph, qp: &QuantPoints, ranges: &[PointRange]) -> Result<Prepared, QuantError> {
    let by_name: HashMap<&str, &PointRange> =
        ranges.iter().map(|r| (r.point.as_str(), r)).collect();
    let mut frozen: Vec<Option<PointRange>> = Vec::with_capacity(qp.points.len());
    for p in &qp.points {
        frozen.push(match p.grid {
            PointGrid::Fp16 => None,
            PointGrid::Int(spec) => {
                let r = by_name
                    .get(p.name.as_str())
                    .ok_or_else(|| QuantError::MissingRange {
                        point: p.name.clone(),
                    })?;
                if (r.dtype, r.scheme) != (spec.dtype, spec.scheme) {
                    return Err(super::error::invalid(
                        format!("range '{}'", p.name),
                        format!("{:?} {:?} (as the plan says)", spec.dtype, spec.scheme),
                        format!("{:?} {:?}", r.dtype, r.scheme),
                    ));
                }
                Some((*r).clone())
            }
        });
    }
    // Which point applies on each (node, input) edge, and which on each value's output.
    let mut on_edge: HashMap<(usize, usize), usize> = HashMap::new();
    let mut on_output: HashMap<ValueId, usize> = HashMap::new();
    for (i, p) in qp.points.iter().enumerate() {
        match &p.kind {
            PointKind::Weight { layer, .. } => {
                on_edge.insert((*layer, 1), i);
            }
            PointKind::Input { readers } => readers.iter().for_each(|&e| {
                on_edge.insert(e, i);
            }),
            PointKind::Output { .. } => {
                on_output.insert(p.value, i);
            }
        }
    }
    let mut r = Rewriter::new(g);
    let mut fq_node: Vec<Option<(usize, ValueId)>> = vec![None; qp.points.len()];
    let mut node_map = vec![0usize; g.nodes.len()];
    let insert = |r: &mut Rewriter<'_>, i: usize, x: ValueId| -> (usize, ValueId) {
        let p = &qp.points[i];
        let (grid, inputs) = match &frozen[i] {
            None => (QuantGrid::Fp16, vec![x]),
            Some(fr) => {
                let (qmin, qmax) = fr.dtype.range();
                let c = fr.scale.len();
                let zp: Vec<f32> = fr.zero_point.iter().map(|&z| z as f32).collect();
                let s = r.add_param_named(
                    &format!("{}.scale", p.name),
                    from_vec(&[c], fr.scale.clone()),
                    false,
                );
                let z =
                    r.add_param_named(&format!("{}.zero_point", p.name), from_vec(&[c], zp), false);
                (QuantGrid::Int { qmin, qmax }, vec![x, s, z])
            }
        };
        let axis = match p.kind {
            PointKind::Weight { axis, .. } if grid != QuantGrid::Fp16 => axis,
            _ => None,
        };
        let idx = r.next_node();
        let out = r.node(
            &p.name,
            OpKind::FakeQuant(FakeQuantAttrs {
                grid,
                axis,
                observer: None,
                damping: 0.0,
            }),
            inputs,
            &p.name,
        );
        (idx, out)
    };
    for (ni, node) in g.nodes.iter().enumerate() {
        let mut inputs = Vec::with_capacity(node.inputs.len());
        for (k, &u) in node.inputs.iter().enumerate() {
            let v = match on_edge.get(&(ni, k)) {
                Some(&i) => match fq_node[i] {
                    Some((_, out)) => out,
                    None => {
                        let x = r.get(u);
                        let made = insert(&mut r, i, x);
                        fq_node[i] = Some(made);
                        made.1
                    }
                },
                None => r.get(u),
            };
            inputs.push(v);
        }
        let out_name = g.values[node.output].name.clone();
        node_map[ni] = r.next_node();
        let out = r.node(&node.name, node.op.clone(), inputs, &out_name);
        r.set(node.output, out);
        if let Some(&i) = on_output.get(&node.output) {
            let made = insert(&mut r, i, out);
            fq_node[i] = Some(made);
            r.set(node.output, made.1);
        }
    }
    let (graph, value_map) = r.finish()?;
    let points = qp
        .points
        .iter()
        .zip(frozen)
        .zip(&fq_node)
        .map(|((p, range), made)| {
            let node = made.map(|m| m.0).ok_or_else(|| QuantError::UnknownPoint {
                point: p.name.clone(),
            })?;
            Ok(PreparedPoint {
                point: p.clone(),
                node,
                range,
            })
        })
        .collect::<Result<Vec<_>, QuantError>>()?;
    let layers = qp
        .layers
        .iter()
        .map(|l| LayerPoints {
            node: node_map[l.node],
            activation: l.activation.map(|a| node_map[a]),
            ..l.clone()
        })
        .collect();
    Ok(Prepared {
        graph,
        points,
        layers,
        value_map,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::gradcheck::rand_tensor;
    use crate::quant::calibrate::calibrate;
    use crate::quant::plan::{Precision, QuantPlan};
    use crate::quant::points::plan_points;
    use crate::quant::scheme::{QSpec, fake_quantize};
    use crate::zoo::Arch;
    use std::sync::atomic::AtomicBool;

    #[test]
    fn prepared_seed_cnn_matches_a_hand_simulation() {
        let g = Arch::SeedCnn.build([1, 6, 6], 4, 1).unwrap();
        let qp = plan_points(&g, &QuantPlan::default_for(&g, Precision::Int8)).unwrap();
        let x = rand_tensor(&[5, 1, 6, 6], 2);
        let c = calibrate(
            &g,
            &[&qp],
            [x.clone()],
            &AtomicBool::new(false),
            &mut |_| {},
        )
        .unwrap();
        let ranges = c.ranges(&g, &qp).unwrap();
        let p = prepare(&g, &qp, &ranges).unwrap();
        let fq_nodes = p
            .graph
            .nodes
            .iter()
            .filter(|n| matches!(n.op, OpKind::FakeQuant(_)));
        assert_eq!(fq_nodes.count(), 7);
        // Hand simulation: quantize the input, then conv1 with quantized weights, then relu and
        // the output point, comparing against the prepared graph's relu1.fq value.
        let r = |name: &str| ranges.iter().find(|r| r.point == name).unwrap();
        let spec = |r: &PointRange| QSpec {
            dtype: r.dtype,
            scheme: r.scheme,
        };
        let ri = r("input.fq");
        let xq = x.mapv(|v| fake_quantize(v, ri.scale[0], ri.zero_point[0], spec(ri)));
        let rw = r("conv1.weight.fq");
        let mut w = g.param("conv1.weight").unwrap().tensor.clone();
        for (o, mut ch) in w.outer_iter_mut().enumerate() {
            ch.mapv_inplace(|v| fake_quantize(v, rw.scale[o], 0, spec(rw)));
        }
        let b = g.param("conv1.bias").unwrap().tensor.clone();
        let conv = crate::ops::conv::forward(
            &crate::ops::Conv2dAttrs::simple(1, 1),
            &[&xq, &w, &b],
            false,
        )
        .output;
        let ro = r("relu1.fq");
        let want =
            conv.mapv(|v| fake_quantize(v.max(0.0), ro.scale[0], ro.zero_point[0], spec(ro)));
        let mut got = None;
        let target = p
            .graph
            .values
            .iter()
            .position(|v| v.name == "relu1.fq")
            .unwrap();
        crate::quant::exec::run_tapped(&p.graph, &x, &mut |v, t| {
            if v == target {
                got = Some(t.clone());
            }
        })
        .unwrap();
        let got = got.unwrap();
        let diff = got.iter().zip(&want).filter(|(a, b)| a != b).count();
        // Float summation order may move a value across a rounding boundary, rarely.
        assert!(diff * 100 <= want.len(), "{diff} of {} differ", want.len());
        assert_eq!(p.value_map[g.outputs[0]], Some(p.graph.outputs[0]));
    }

    #[test]
    fn missing_ranges_are_reported() {
        let g = Arch::SeedCnn.build([1, 6, 6], 4, 1).unwrap();
        let qp = plan_points(&g, &QuantPlan::default_for(&g, Precision::Int8)).unwrap();
        let e = prepare(&g, &qp, &[]).unwrap_err();
        assert!(matches!(e, QuantError::MissingRange { .. }), "{e}");
    }
}
