//! How many bytes a plan's model takes: per quantizable layer and for the whole model, exactly as
//! the integer runtime stores it (`runtime::IntModel::weight_bytes`), computed from the plan and
//! the folded float graph alone (no calibration, no conversion), so the studio can show it while
//! the user flips precisions.
//!
//! What the runtime stores per Conv2d/Linear: the weights as s8 (int8), as int4 two per byte
//! (`ceil(n / 2)` bytes for the whole tensor), as f16 (2 bytes) or as f32 (fp32 or excluded
//! layers), and the bias as f32 whatever the precision. Scales and zero points live in the
//! bundle's RON description, not in its tensors, so they are not counted (neither does
//! `weight_bytes`). Parameters of other ops (none once BatchNorm is folded, in the zoo's models)
//! are counted as f32, which the runtime cannot run at all. Depends on `graph`, `quant::plan`.

use crate::graph::Graph;
use crate::quant::plan::{Precision, QuantPlan, quantizable_layers};
use crate::quant::scheme::{PointGrid, QDtype};
use serde::Serialize;
use std::collections::HashSet;

/// One quantizable layer's storage.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct LayerSize {
    pub layer: String,
    /// The precision its weights are stored at (fp32 for excluded or unplanned layers).
    pub precision: Precision,
    /// Weight and bias scalars.
    pub params: usize,
    /// `params · 4`.
    pub float_bytes: usize,
    /// Bytes as the plan stores the layer (weights at their precision, bias f32).
    pub bytes: usize,
}

/// A whole model's storage under a plan.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct PlanSize {
    /// The quantizable layers, in graph order (the order `QuantPlan::default_for` lists them).
    pub layers: Vec<LayerSize>,
    /// The whole model's parameters as f32.
    pub float_bytes: usize,
    /// The whole model as the plan stores it.
    pub bytes: usize,
}

impl PlanSize {
    /// How many times smaller than f32 the model is (`float_bytes / bytes`; 1 for an empty
    /// model).
    pub fn ratio(&self) -> f64 {
        if self.bytes == 0 {
            1.0
        } else {
            self.float_bytes as f64 / self.bytes as f64
        }
    }
}

/// Bytes of `n` weights stored on a layer's weight grid (`None`: f32).
fn weight_bytes(n: usize, grid: Option<PointGrid>) -> usize {
    match grid {
        None => n * 4,
        Some(PointGrid::Fp16) => n * 2,
        Some(PointGrid::Int(spec)) => match spec.dtype {
            QDtype::S8 | QDtype::U8 => n,
            QDtype::S4 | QDtype::U4 => n.div_ceil(2),
        },
    }
}

/// The storage of `folded` (the BatchNorm-folded graph the plan is applied to) under `plan`.
///
/// ```
/// use qatlas::analysis::size::plan_size;
/// use qatlas::quant::plan::{Precision, QuantPlan};
/// let g = qatlas::zoo::Arch::SeedCnn.build([1, 28, 28], 10, 0).unwrap();
/// let s = plan_size(&g, &QuantPlan::default_for(&g, Precision::Int8));
/// // conv1: 144 s8 weights + 16 f32 biases = 208 bytes.
/// assert_eq!((s.layers[0].params, s.layers[0].bytes), (160, 144 + 64));
/// assert_eq!(s.float_bytes, 4 * (160 + 4640 + 62730));
/// ```
pub fn plan_size(folded: &Graph, plan: &QuantPlan) -> PlanSize {
    let mut counted: HashSet<usize> = HashSet::new();
    let mut layers = Vec::new();
    let mut bytes = 0usize;
    for ni in quantizable_layers(folded) {
        let node = &folded.nodes[ni];
        let lp = plan.layer(&node.name);
        let grid = lp.and_then(|l| l.weight_grid());
        let param = |k: usize| node.inputs.get(k).and_then(|&v| folded.param_of(v));
        let numel = |p: Option<usize>| p.map_or(0, |p| folded.params[p].tensor.len());
        let (w, b) = (param(1), param(2));
        counted.extend(w.iter().chain(b.iter()).copied());
        let (nw, nb) = (numel(w), numel(b));
        let layer_bytes = weight_bytes(nw, grid) + nb * 4;
        bytes += layer_bytes;
        layers.push(LayerSize {
            layer: node.name.clone(),
            precision: lp.map_or(Precision::Fp32, |l| l.effective()),
            params: nw + nb,
            float_bytes: (nw + nb) * 4,
            bytes: layer_bytes,
        });
    }
    let all: usize = folded.params.iter().map(|p| p.tensor.len()).sum();
    let other: usize = (0..folded.params.len())
        .filter(|p| !counted.contains(p))
        .map(|p| folded.params[p].tensor.len())
        .sum();
    PlanSize {
        layers,
        float_bytes: all * 4,
        bytes: bytes + other * 4,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::gradcheck::rand_tensor;
    use crate::quant::{fold_batchnorm, ptq};
    use crate::runtime::{ConvertOptions, IntModel};
    use crate::zoo::Arch;
    use std::sync::atomic::AtomicBool;

    /// What the integer runtime stores for a plan, through the real PTQ and conversion.
    fn runtime_bytes(g: &Graph, plan: &QuantPlan) -> usize {
        let x = rand_tensor(&[2, 1, 16, 16], 3);
        let res = ptq(g, plan, [x], &AtomicBool::new(false), &mut |_| {}).unwrap();
        let m = IntModel::convert(&res.prepared.graph, &ConvertOptions::default()).unwrap();
        m.weight_bytes()
    }

    /// The computed size equals the runtime's stored bytes for every zoo net the runtime
    /// runs, at int8, W4A8, fp16, fp32 and a mixed plan.
    #[test]
    fn plan_size_equals_the_runtime_weight_bytes() {
        for arch in [Arch::SeedCnn, Arch::ResnetMini, Arch::MobilenetMini] {
            let g = arch.build([1, 16, 16], 10, 7).unwrap();
            let (folded, _) = fold_batchnorm(&g).unwrap();
            let float: usize = folded.params.iter().map(|p| p.tensor.len()).sum::<usize>() * 4;
            let mut mixed = QuantPlan::default_for(&g, Precision::Int8);
            let n = mixed.layers.len();
            mixed.layers[0].precision = Precision::Int4;
            mixed.layers[1].precision = Precision::Fp16;
            mixed.layers[n - 1].excluded = true;
            let mut plans: Vec<(&str, QuantPlan)> = [
                Precision::Int8,
                Precision::Int4,
                Precision::Fp16,
                Precision::Fp32,
            ]
            .into_iter()
            .map(|p| (p.name(), QuantPlan::default_for(&g, p)))
            .collect();
            plans.push(("mixed", mixed));
            for (name, plan) in &plans {
                let s = plan_size(&folded, plan);
                assert_eq!(s.bytes, runtime_bytes(&g, plan), "{} {name}", arch.name());
                assert_eq!(s.float_bytes, float, "{} {name}", arch.name());
                assert_eq!(s.layers.len(), n);
                let sum: usize = s.layers.iter().map(|l| l.bytes).sum();
                assert_eq!(sum, s.bytes, "every parameter belongs to a layer");
            }
            let fp32 = plan_size(&folded, &plans[3].1);
            assert_eq!((fp32.bytes, fp32.ratio()), (float, 1.0));
        }
    }

    /// seed-cnn by hand: conv1 144 + 16, conv2 4608 + 32, fc 62720 + 10 weights + biases.
    #[test]
    fn seed_cnn_sizes_by_hand() {
        let g = Arch::SeedCnn.build([1, 28, 28], 10, 0).unwrap();
        let mut plan = QuantPlan::default_for(&g, Precision::Int4);
        plan.layers[1].precision = Precision::Fp16;
        plan.layers[2].excluded = true;
        let s = plan_size(&g, &plan);
        let bytes: Vec<usize> = s.layers.iter().map(|l| l.bytes).collect();
        assert_eq!(bytes, [72 + 64, 4608 * 2 + 128, 62730 * 4]);
        assert_eq!(s.layers[2].precision, Precision::Fp32);
        assert_eq!(s.layers[1].float_bytes, 4640 * 4);
        let s8 = plan_size(&g, &QuantPlan::default_for(&g, Precision::Int8));
        let want = (144 + 4608 + 62720) + 4 * (16 + 32 + 10);
        assert_eq!(s8.bytes, want);
        assert!((s8.ratio() - (67530.0 * 4.0) / want as f64).abs() < 1e-12);
    }
}
