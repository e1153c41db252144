//! Preparing a model for quantization-aware training (QAT).
//!
//! [`prepare_qat`] starts from PTQ (fold, plan points, calibrate, prepare: the ranges QAT starts
//! from) and turns the prepared fake-quant graph into a *training graph*:
//!
//! - every fake quantizer gets a moving-average min/max observer ([`FqObserver`], PyTorch's
//!   `FusedMovingAvgObsFakeQuantize`: averaging 0.01, running range initialised from the PTQ
//!   range), or, with LSQ, a trainable scale (and a trainable zero point on affine grids) and no
//!   observer;
//! - every layer whose BatchNorm PTQ folded is un-folded into PyTorch's `ConvBn2d` QAT
//!   simulation (see `ops::channel_scale`): the weight is scaled by `gamma / sqrt(running_var +
//!   eps)` *before* its fake quantizer, the convolution output divided back, the conv bias added,
//!   and a real BatchNorm follows, so that BatchNorm keeps training (batch statistics) while the
//!   quantizer sees the weight that deployment will fold.
//!
//! [`freeze_batchnorm`] and [`freeze_observers`] switch those off (after some epochs), and
//! [`deploy`](super::deploy::deploy) folds a training graph back into the frozen fake-quant form
//! PTQ produces (what the integer runtime converts). Depends on `graph`, `ops`, and `quant`'s
//! PTQ pieces.

use super::error::QuantError;
use super::plan::{PointRange, QuantPlan};
use super::prepare::Prepared;
use super::rewrite::Rewriter;
use super::scheme::PointGrid;
use super::{FoldReport, ptq};
use crate::graph::{Graph, ValueId};
use crate::ops::{ChannelAffineAttrs, FakeQuantAttrs, FqObserver, OpKind, QuantGrid};
use crate::tensor::{Tensor, from_vec};
use std::collections::HashMap;
use std::sync::atomic::AtomicBool;

/// How the quantizers learn their ranges.
#[derive(Clone, Debug, PartialEq)]
pub struct QatOptions {
    /// Learnable scales (LSQ) instead of observers.
    pub lsq: bool,
    /// Observer averaging constant (PyTorch: 0.01).
    pub averaging: f32,
    /// Oscillation damping of the weight quantizers (`FakeQuantAttrs::damping`; 0: off).
    pub damping: f32,
    /// Learning rate of LSQ scales and zero points relative to the weights'.
    pub quantizer_lr_factor: f32,
}

impl Default for QatOptions {
    fn default() -> Self {
        QatOptions {
            lsq: false,
            averaging: 0.01,
            damping: 0.0,
            quantizer_lr_factor: 1.0,
        }
    }
}

impl QatOptions {
    /// The options of a recipe.
    pub fn from_recipe(r: &super::recipe::QatRecipe) -> Self {
        QatOptions {
            lsq: r.lsq,
            damping: r.damping,
            quantizer_lr_factor: r.quantizer_lr_factor,
            ..QatOptions::default()
        }
    }
}

/// Per-parameter learning-rate factors of a training graph: `factor` for the scales and zero
/// points of fake quantizers, 1 for everything else.
pub fn quantizer_lr_factors(g: &Graph, factor: f32) -> Vec<f32> {
    let mut f = vec![1.0; g.params.len()];
    for n in &g.nodes {
        if let OpKind::FakeQuant(a) = &n.op
            && a.grid != QuantGrid::Fp16
        {
            for &v in &n.inputs[1..3] {
                if let Some(p) = g.param_of(v) {
                    f[p] = factor;
                }
            }
        }
    }
    f
}

/// Where a QAT run stands, stored in its checkpoints so that it can be resumed.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct QatState {
    /// The plan, with the PTQ ranges the run started from.
    pub plan: QuantPlan,
    pub lsq: bool,
    pub averaging: f32,
    /// Oscillation damping of the weight quantizers (in the graph's attributes too).
    #[serde(default)]
    pub damping: f32,
    /// Learning rate of LSQ scales relative to the weights'.
    #[serde(default = "one")]
    pub quantizer_lr_factor: f32,
    /// Training batches BatchNorm statistics are re-estimated on at the end (0: off).
    #[serde(default)]
    pub bn_reestimate_batches: usize,
    /// Freeze BatchNorm statistics from this epoch on (0-based count of finished epochs).
    pub freeze_bn_after: Option<usize>,
    pub freeze_observers_after: Option<usize>,
    /// Epochs finished when the checkpoint was written.
    pub epochs_done: usize,
    /// Evaluation accuracy of the fake-quant model at that point.
    pub accuracy: Option<f64>,
    /// Accuracy of the float model the run started from.
    pub float_accuracy: Option<f64>,
}

fn one() -> f32 {
    1.0
}

/// A model ready for quantization-aware training.
#[derive(Clone, Debug)]
pub struct QatPrepared {
    /// The training graph (run it with the ordinary trainer).
    pub graph: Graph,
    /// The PTQ starting point (frozen fake-quant model), for reference.
    pub ptq: Prepared,
    /// The plan with the PTQ ranges.
    pub plan: QuantPlan,
    /// Layers whose BatchNorm is simulated-folded.
    pub fold: FoldReport,
}

/// Calibrates `plan` on `calib` (PTQ) and builds the QAT training graph from `g` (a float model,
/// BatchNorm unfolded).
pub fn prepare_qat(
    g: &Graph,
    plan: &QuantPlan,
    calib: impl IntoIterator<Item = Tensor>,
    stop: &AtomicBool,
    on_batch: &mut dyn FnMut(usize),
    opts: &QatOptions,
) -> Result<QatPrepared, QuantError> {
    let p = ptq(g, plan, calib, stop, on_batch)?;
    let graph = training_graph(g, &p.prepared, &p.fold, &p.plan.ranges, opts)?;
    Ok(QatPrepared {
        graph,
        ptq: p.prepared,
        plan: p.plan,
        fold: p.fold,
    })
}

/// [`prepare_qat`] from a plan whose activation ranges are already frozen (the studio's
/// calibrated plan, or a plan file written by `qatlas ptq --out plan.ron`): no calibration pass;
/// weight ranges are recomputed from the weights. Errors name a point whose range is missing.
pub fn prepare_qat_from_ranges(
    g: &Graph,
    plan: &QuantPlan,
    opts: &QatOptions,
) -> Result<QatPrepared, QuantError> {
    super::reject_quantized(g)?;
    let (folded, fold) = super::fold_batchnorm(g)?;
    let points = super::plan_points(&folded, plan)?;
    let weights = super::Calibrator::new(&[]).ranges_of_weights(&folded, &points)?;
    let mut ranges = plan.ranges.clone();
    ranges.retain(|r| !weights.iter().any(|w| w.point == r.point));
    ranges.extend(weights);
    let prepared = super::prepare(&folded, &points, &ranges)?;
    let graph = training_graph(g, &prepared, &fold, &ranges, opts)?;
    let mut plan = plan.clone();
    plan.ranges = ranges;
    Ok(QatPrepared {
        graph,
        ptq: prepared,
        plan,
        fold,
    })
}

/// Values of one un-folded layer in the training graph.
#[derive(Clone, Copy)]
struct Unfolded {
    /// `gamma / sqrt(var + eps)`.
    factor: ValueId,
    /// The scaled weight `w · factor`.
    scaled: ValueId,
    gamma: ValueId,
    var: ValueId,
}

/// The training graph for a PTQ-prepared graph `prep` of float model `g`.
fn training_graph(
    g: &Graph,
    prep: &Prepared,
    fold: &FoldReport,
    ranges: &[PointRange],
    opts: &QatOptions,
) -> Result<Graph, QuantError> {
    let t = &prep.graph;
    let by_name = |gr: &Graph, name: &str| gr.nodes.iter().position(|n| n.name == name);
    // Template layer node -> original (layer, batchnorm) node indices.
    let mut folded: HashMap<usize, (usize, usize)> = HashMap::new();
    for (layer, bn) in &fold.folded {
        let missing =
            |what: &str| QuantError::Structure(format!("folded {what} '{layer}' not found"));
        let ti = by_name(t, layer).ok_or_else(|| missing("layer"))?;
        let oi = by_name(g, layer).ok_or_else(|| missing("layer"))?;
        let bi = by_name(g, bn).ok_or_else(|| missing("BatchNorm of"))?;
        folded.insert(ti, (oi, bi));
    }
    // Weight fake quantizer node (template) -> its folded layer (template).
    let mut weight_fq: HashMap<usize, usize> = HashMap::new();
    for &ti in folded.keys() {
        if let crate::graph::Source::Node(fq) = t.values[t.nodes[ti].inputs[1]].source
            && matches!(t.nodes[fq].op, OpKind::FakeQuant(_))
        {
            weight_fq.insert(fq, ti);
        }
    }
    let range_of: HashMap<&str, &PointRange> =
        ranges.iter().map(|r| (r.point.as_str(), r)).collect();
    let grid_of: HashMap<&str, PointGrid> = prep
        .points
        .iter()
        .map(|p| (p.point.name.as_str(), p.point.grid))
        .collect();
    let mut r = Rewriter::new(t);
    let mut unfolded: HashMap<usize, Unfolded> = HashMap::new();
    let orig_param = |v: ValueId| -> Result<(String, Tensor, bool), QuantError> {
        let p = g.param_of(v).ok_or_else(|| {
            QuantError::Structure(format!("'{}' is not a parameter", g.values[v].name))
        })?;
        let p = &g.params[p];
        Ok((p.name.clone(), p.tensor.clone(), p.trainable))
    };
    // Emits BnScale and the scaled weight of template layer `ti` once.
    let unfold = |r: &mut Rewriter<'_>,
                  ti: usize,
                  cache: &mut HashMap<usize, Unfolded>|
     -> Result<Unfolded, QuantError> {
        if let Some(u) = cache.get(&ti) {
            return Ok(*u);
        }
        let (oi, bi) = folded[&ti];
        let (layer, bn) = (&g.nodes[oi], &g.nodes[bi]);
        let OpKind::BatchNorm2d(attrs) = &bn.op else {
            return Err(QuantError::Structure(format!(
                "'{}' is not a BatchNorm",
                bn.name
            )));
        };
        let mut param = |v: ValueId| -> Result<ValueId, QuantError> {
            let (name, tensor, trainable) = orig_param(v)?;
            Ok(r.add_param_named(&name, tensor, trainable))
        };
        let w = param(layer.inputs[1])?;
        let gamma = param(bn.inputs[1])?;
        let var = param(bn.inputs[4])?;
        let fname = r.unique(&format!("{}.bn_factor", layer.name));
        let factor = r.node(
            &fname,
            OpKind::BnScale(crate::ops::BnScaleAttrs { eps: attrs.eps }),
            vec![gamma, var],
            &fname,
        );
        let sname = r.unique(&format!("{}.weight.folded", layer.name));
        let scaled = r.node(
            &sname,
            OpKind::ChannelAffine(ChannelAffineAttrs {
                axis: 0,
                divide: false,
            }),
            vec![w, factor],
            &sname,
        );
        let u = Unfolded {
            factor,
            scaled,
            gamma,
            var,
        };
        cache.insert(ti, u);
        Ok(u)
    };
    for (ni, node) in t.nodes.iter().enumerate() {
        match &node.op {
            OpKind::FakeQuant(a) if a.grid != QuantGrid::Fp16 => {
                let x = match weight_fq.get(&ni) {
                    Some(&ti) => unfold(&mut r, ti, &mut unfolded)?.scaled,
                    None => r.get(node.inputs[0]),
                };
                let range =
                    range_of
                        .get(node.name.as_str())
                        .ok_or_else(|| QuantError::MissingRange {
                            point: node.name.clone(),
                        })?;
                let Some(PointGrid::Int(spec)) = grid_of.get(node.name.as_str()).copied() else {
                    return Err(QuantError::Structure(format!(
                        "'{}' is not a planned point",
                        node.name
                    )));
                };
                let sym = spec.symmetric_zero_point();
                let c = range.scale.len();
                let param = |v: ValueId| t.param_of(v).map(|p| t.params[p].tensor.clone());
                let (s0, z0) = (param(node.inputs[1]), param(node.inputs[2]));
                let (Some(s0), Some(z0)) = (s0, z0) else {
                    return Err(QuantError::Structure(format!(
                        "'{}' has no stored scale",
                        node.name
                    )));
                };
                let name = |what: &str| format!("{}.{what}", node.name);
                let s = r.add_param_named(&name("scale"), s0, opts.lsq);
                let z = r.add_param_named(&name("zero_point"), z0, opts.lsq && sym.is_none());
                let mut inputs = vec![x, s, z];
                let is_weight = weight_fq.contains_key(&ni)
                    || matches!(
                        t.values[node.inputs[0]].source,
                        crate::graph::Source::Param(_)
                    );
                let mut attrs = FakeQuantAttrs {
                    observer: None,
                    damping: if is_weight { opts.damping } else { 0.0 },
                    ..a.clone()
                };
                if !opts.lsq {
                    attrs.observer = Some(FqObserver {
                        averaging: opts.averaging,
                        symmetric_zero_point: sym,
                        frozen: false,
                    });
                    let mn = from_vec(&[c], range.min.clone());
                    let mx = from_vec(&[c], range.max.clone());
                    inputs.push(r.add_param_named(&name("running_min"), mn, false));
                    inputs.push(r.add_param_named(&name("running_max"), mx, false));
                }
                let out = r.node(&node.name, OpKind::FakeQuant(attrs), inputs, &node.name);
                r.set(node.output, out);
            }
            OpKind::FakeQuant(_) if weight_fq.contains_key(&ni) => {
                // fp16 weight quantizer of a folded layer.
                let u = unfold(&mut r, weight_fq[&ni], &mut unfolded)?;
                let out = r.node(&node.name, node.op.clone(), vec![u.scaled], &node.name);
                r.set(node.output, out);
            }
            _ if folded.contains_key(&ni) => {
                let u = unfold(&mut r, ni, &mut unfolded)?;
                let (oi, bi) = folded[&ni];
                let (layer, bn) = (&g.nodes[oi], &g.nodes[bi]);
                let x = r.get(node.inputs[0]);
                let w = match t.values[node.inputs[1]].source {
                    crate::graph::Source::Param(_) => u.scaled,
                    _ => r.get(node.inputs[1]),
                };
                let out_name = t.values[node.output].name.clone();
                let raw = r.unique(&format!("{out_name}.raw"));
                let y = r.node(&node.name, node.op.clone(), vec![x, w], &raw);
                let mut aff_in = vec![y, u.factor];
                if let Some(&b) = layer.inputs.get(2) {
                    let (name, tensor, trainable) = orig_param(b)?;
                    aff_in.push(r.add_param_named(&name, tensor, trainable));
                }
                let un = r.unique(&format!("{out_name}.unfolded"));
                let y = r.node(
                    &un,
                    OpKind::ChannelAffine(ChannelAffineAttrs {
                        axis: 1,
                        divide: true,
                    }),
                    aff_in,
                    &un,
                );
                let mut param = |v: ValueId| -> Result<ValueId, QuantError> {
                    let (name, tensor, trainable) = orig_param(v)?;
                    Ok(r.add_param_named(&name, tensor, trainable))
                };
                let beta = param(bn.inputs[2])?;
                let mean = param(bn.inputs[3])?;
                let z = r.node(
                    &bn.name,
                    bn.op.clone(),
                    vec![y, u.gamma, beta, mean, u.var],
                    &out_name,
                );
                r.set(node.output, z);
            }
            _ => {
                r.copy_node(ni);
            }
        }
    }
    let (graph, _) = r.finish()?;
    Ok(graph)
}

/// Freezes every BatchNorm (running statistics used and kept from now on); returns how many.
pub fn freeze_batchnorm(g: &mut Graph) -> usize {
    let mut n = 0;
    for node in &mut g.nodes {
        if let OpKind::BatchNorm2d(a) = &mut node.op
            && !a.frozen
        {
            a.frozen = true;
            n += 1;
        }
    }
    n
}

/// Freezes every fake-quant observer (scales and zero points fixed from now on); returns how
/// many.
pub fn freeze_observers(g: &mut Graph) -> usize {
    let mut n = 0;
    for node in &mut g.nodes {
        if let OpKind::FakeQuant(FakeQuantAttrs {
            observer: Some(o), ..
        }) = &mut node.op
            && !o.frozen
        {
            o.frozen = true;
            n += 1;
        }
    }
    n
}

/// The current scale and zero point of one quantizer.
#[derive(Clone, Debug, PartialEq)]
pub struct PointScale {
    pub point: String,
    pub scale: Vec<f32>,
    pub zero_point: Vec<f32>,
}

/// Scales and zero points of every integer fake quantizer of `g`, in node order.
pub fn point_scales(g: &Graph) -> Vec<PointScale> {
    let tensor = |v: ValueId| {
        g.param_of(v)
            .map(|p| g.params[p].tensor.iter().copied().collect::<Vec<f32>>())
    };
    g.nodes
        .iter()
        .filter(|n| matches!(&n.op, OpKind::FakeQuant(a) if a.grid != QuantGrid::Fp16))
        .filter_map(|n| {
            Some(PointScale {
                point: n.name.clone(),
                scale: tensor(n.inputs[1])?,
                zero_point: tensor(n.inputs[2])?,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::Mode;
    use crate::ops::gradcheck::rand_tensor;
    use crate::quant::deploy::{deploy, deployed_ranges};
    use crate::quant::fold::tests::{max_rel_diff, randomize_bn};
    use crate::quant::plan::Precision;
    use crate::zoo::Arch;
    use rand::SeedableRng;

    fn setup(arch: Arch, opts: &QatOptions) -> (Graph, QatPrepared, Tensor) {
        let mut g = arch.build([1, 12, 12], 5, 3).unwrap();
        randomize_bn(&mut g, 5);
        let x = rand_tensor(&[8, 1, 12, 12], 9).mapv(|v| v * 2.0);
        let plan = QuantPlan::default_for(&g, Precision::Int8);
        let q = prepare_qat(
            &g,
            &plan,
            [x.clone()],
            &AtomicBool::new(false),
            &mut |_| {},
            opts,
        )
        .unwrap();
        (g, q, x)
    }

    #[test]
    fn training_graph_simulates_ptq_and_deploys_back() {
        for arch in [Arch::ResnetMini, Arch::MobilenetMini] {
            let (_, q, x) = setup(arch, &QatOptions::default());
            let bns = q
                .graph
                .nodes
                .iter()
                .filter(|n| matches!(n.op, OpKind::BatchNorm2d(_)));
            assert_eq!(bns.count(), q.fold.folded.len(), "{}", arch.name());
            assert!(!q.fold.folded.is_empty());
            // Eval mode (running statistics): the training graph is the PTQ model.
            let ptq = q.ptq.graph.infer(&x).unwrap();
            let sim = q.graph.infer(&x).unwrap();
            let d = max_rel_diff(&ptq, &sim);
            eprintln!("{}: training graph vs PTQ {d:e}", arch.name());
            assert!(d < 1e-2, "{}: training graph vs PTQ {d:e}", arch.name());
            // Deploying folds it back into the PTQ structure.
            let dep = deploy(&q.graph).unwrap();
            assert_eq!(dep.nodes.len(), q.ptq.graph.nodes.len(), "{}", arch.name());
            assert!(dep.nodes.iter().all(|n| !matches!(
                n.op,
                OpKind::BatchNorm2d(_) | OpKind::BnScale(_) | OpKind::ChannelAffine(_)
            )));
            let d = max_rel_diff(&sim, &dep.infer(&x).unwrap());
            eprintln!("{}: deployed vs training graph {d:e}", arch.name());
            assert!(
                d < 1e-4,
                "{}: deployed vs training graph {d:e}",
                arch.name()
            );
            let ranges = deployed_ranges(&dep, &q.plan.ranges).unwrap();
            assert_eq!(ranges.len(), q.plan.ranges.len());
        }
    }

    #[test]
    fn unquantized_training_graph_equals_the_float_model() {
        let mut g = Arch::ResnetMini.build([1, 12, 12], 5, 3).unwrap();
        randomize_bn(&mut g, 5);
        let x = rand_tensor(&[8, 1, 12, 12], 9);
        let plan = QuantPlan::default_for(&g, Precision::Fp32);
        let q = prepare_qat(
            &g,
            &plan,
            [x.clone()],
            &AtomicBool::new(false),
            &mut |_| {},
            &QatOptions::default(),
        )
        .unwrap();
        assert_eq!(q.fold.folded.len(), 6);
        let bn_scales = q
            .graph
            .nodes
            .iter()
            .filter(|n| matches!(n.op, OpKind::BnScale(_)));
        assert_eq!(bn_scales.count(), 6);
        let (a, b) = (g.infer(&x).unwrap(), q.graph.infer(&x).unwrap());
        let d = max_rel_diff(&a, &b);
        assert!(d < 1e-5, "eval: {d:e}");
        // Training mode (batch statistics): also the float model.
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(0);
        let ta = g
            .forward(&[x.clone()], Mode::Train, false, &mut rng)
            .unwrap();
        let tb = q
            .graph
            .forward(&[x.clone()], Mode::Train, false, &mut rng)
            .unwrap();
        let d = max_rel_diff(ta.output(&g, 0).unwrap(), tb.output(&q.graph, 0).unwrap());
        assert!(d < 1e-4, "train: {d:e}");
        let d = max_rel_diff(&a, &deploy(&q.graph).unwrap().infer(&x).unwrap());
        assert!(d < 1e-5, "deployed: {d:e}");
    }

    #[test]
    fn training_steps_update_observers_batchnorm_and_stay_deployable() {
        let (_, mut q, x) = setup(Arch::ResnetMini, &QatOptions::default());
        let before = point_scales(&q.graph);
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(0);
        let y = x.mapv(|v| v * 3.0);
        let t = q
            .graph
            .forward(&[y.clone()], Mode::Train, true, &mut rng)
            .unwrap();
        assert!(!t.updates.is_empty());
        q.graph.apply_updates(t.updates);
        let after = point_scales(&q.graph);
        assert_eq!(before.len(), after.len());
        assert!(before.iter().zip(&after).any(|(a, b)| a.scale != b.scale));
        // Frozen: a training pass changes nothing any more.
        assert_eq!(freeze_observers(&mut q.graph), before.len());
        assert_eq!(freeze_batchnorm(&mut q.graph), q.fold.folded.len());
        let t = q.graph.forward(&[y], Mode::Train, true, &mut rng).unwrap();
        assert!(t.updates.is_empty());
        let sim = q.graph.infer(&x).unwrap();
        let d = max_rel_diff(&sim, &deploy(&q.graph).unwrap().infer(&x).unwrap());
        assert!(d < 2e-3, "deployed vs training graph after updates {d:e}");
    }

    #[test]
    fn lsq_makes_scales_trainable_and_gets_their_gradients() {
        let (_, q, x) = setup(
            Arch::ResnetMini,
            &QatOptions {
                lsq: true,
                ..QatOptions::default()
            },
        );
        let g = &q.graph;
        let scales: Vec<usize> = (0..g.params.len())
            .filter(|&p| g.params[p].name.ends_with(".scale"))
            .collect();
        assert!(!scales.is_empty());
        assert!(scales.iter().all(|&p| g.params[p].trainable));
        assert!(g.nodes.iter().all(|n| !matches!(
            &n.op,
            OpKind::FakeQuant(a) if a.observer.is_some()
        )));
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(0);
        let t = g.forward(&[x], Mode::Train, true, &mut rng).unwrap();
        let out = t.output(g, 0).unwrap().clone();
        let grads = g.backward(&t, out.mapv(|v| v * 0.01)).unwrap();
        let nonzero = scales
            .iter()
            .filter(|&&p| {
                grads.params[p]
                    .as_ref()
                    .is_some_and(|d| d.iter().any(|&v| v != 0.0))
            })
            .count();
        assert!(
            nonzero * 2 > scales.len(),
            "{nonzero} of {} scales got a gradient",
            scales.len()
        );
    }
}
