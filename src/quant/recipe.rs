//! QAT recipes: the settings quantization-aware training uses by default, chosen from the plan's
//! precision and the model's architecture, so that 4-bit grids hold without hand-tuning.
//!
//! int8 keeps PyTorch's recipe (moving-average observers, lr 1e-4: within 0.05 pp of the float
//! control on every demo net). A plan with any 4-bit grid gets the 4-bit recipe:
//!
//! - the first and the last quantized layer at W8A8 (unless the plan was given explicitly:
//!   [`QatRecipe::shape_plan`] is applied to generated plans only);
//! - per-channel weights, scales initialised by MSE (the min-max range wastes most of a 16-level
//!   grid on one outlier);
//! - LSQ: learnable scales (and zero points on affine activation grids), trained at a tenth of
//!   the weights' learning rate;
//! - oscillation damping (Nagel et al. 2022) is available (`damping`) but off: on the demo nets
//!   it cost accuracy, while freezing BatchNorm for the last epoch brings the weights' flip
//!   rate (the oscillation meter) to about zero;
//! - BatchNorm statistics frozen for the last epoch of runs of two or more epochs (which stops
//!   the weights' integer flips), or, in one-epoch runs, re-estimated with the final weights at
//!   the end (re-estimating statistics that were frozen re-rounds every folded weight: measured
//!   to cost accuracy, so the recipe does not).
//!
//! Every field can be overridden (`qatlas qat` flags, the studio's QAT tab). Depends on
//! `graph`, `ops`, `quant::plan`.

use super::observer::{Observer, RangeMethod};
use super::plan::{Precision, QuantPlan};
use crate::graph::Graph;
use crate::ops::OpKind;
use serde::{Deserialize, Serialize};

/// What a QAT run does beyond plain fine-tuning.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct QatRecipe {
    /// Which recipe the defaults came from ("int8" or "4-bit"), for display.
    pub name: String,
    /// Peak learning rate of the weights.
    pub lr: f32,
    /// Learnable scales (LSQ) instead of moving-average observers.
    pub lsq: bool,
    /// Learning rate of scales and zero points relative to `lr`.
    pub quantizer_lr_factor: f32,
    /// Weight scales from an MSE search instead of min-max (4-bit layers of generated plans).
    pub mse_weights: bool,
    /// First and last quantized layer kept at W8A8 (generated plans only).
    pub keep_ends_8bit: bool,
    /// Oscillation damping strength on weight quantizers (0: off).
    pub damping: f32,
    /// Freeze BatchNorm statistics after this many epochs.
    pub freeze_bn_after: Option<usize>,
    /// Freeze observers after this many epochs.
    pub freeze_observers_after: Option<usize>,
    /// Training batches used to re-estimate BatchNorm statistics after QAT (0: off).
    pub bn_reestimate_batches: usize,
}

/// Bits of the narrowest integer grid of the plan (weights or activations), 32 if none.
pub fn min_bits(plan: &QuantPlan) -> u32 {
    plan.layers
        .iter()
        .filter(|l| l.is_quantized())
        .flat_map(|l| {
            let act = matches!(l.activations, Precision::Int4 | Precision::Int8)
                .then(|| l.activations.bits());
            [Some(l.effective().bits()), act]
        })
        .flatten()
        .min()
        .unwrap_or(32)
}

/// Whether `g` has BatchNorm layers.
pub fn has_batchnorm(g: &Graph) -> bool {
    g.nodes
        .iter()
        .any(|n| matches!(n.op, OpKind::BatchNorm2d(_)))
}

impl QatRecipe {
    /// PyTorch's int8 QAT: observers, lr 1e-4, nothing else.
    pub fn int8() -> Self {
        QatRecipe {
            name: "int8".into(),
            lr: 1e-4,
            lsq: false,
            quantizer_lr_factor: 1.0,
            mse_weights: false,
            keep_ends_8bit: false,
            damping: 0.0,
            freeze_bn_after: None,
            freeze_observers_after: None,
            bn_reestimate_batches: 0,
        }
    }

    /// The recipe for `plan` on the float model `g`, for a run of `epochs` epochs.
    pub fn for_plan(g: &Graph, plan: &QuantPlan, epochs: usize) -> Self {
        if min_bits(plan) > 4 {
            return Self::int8();
        }
        let bn = has_batchnorm(g);
        let freeze_bn_after = (bn && epochs >= 2).then(|| epochs - 1);
        QatRecipe {
            name: "4-bit".into(),
            lr: 5e-4,
            lsq: true,
            quantizer_lr_factor: 0.1,
            mse_weights: true,
            keep_ends_8bit: true,
            // Measured on mobilenet-mini over 3 seeds: damping 1e-3 cost 0.09 pp at W4A8 and
            // gained nothing at W4A4; freezing BatchNorm is what stops the flips here.
            damping: 0.0,
            freeze_bn_after,
            freeze_observers_after: None,
            // Re-estimating statistics the last epoch trained against re-rounds every folded
            // weight (the BatchNorm factor moves the weights across the grid): measured to
            // cost 0.1-0.8 pp on mobilenet-mini; it helps only when BatchNorm kept training.
            bn_reestimate_batches: if bn && freeze_bn_after.is_none() {
                50
            } else {
                0
            },
        }
    }

    /// Applies the plan-shaping parts of the recipe to a generated plan: first and last
    /// quantized layers at W8A8, MSE weight ranges on 4-bit weights.
    pub fn shape_plan(&self, g: &Graph, plan: &mut QuantPlan) {
        let order: Vec<usize> = super::plan::quantizable_layers(g)
            .into_iter()
            .filter(|&i| {
                plan.layer(&g.nodes[i].name)
                    .is_some_and(|l| l.is_quantized())
            })
            .collect();
        if self.keep_ends_8bit && order.len() > 2 {
            for &i in [order[0], order[order.len() - 1]].iter() {
                if let Some(l) = plan.layer_mut(&g.nodes[i].name) {
                    if l.precision == Precision::Int4 {
                        l.precision = Precision::Int8;
                    }
                    if l.activations == Precision::Int4 {
                        l.activations = Precision::Int8;
                    }
                }
            }
        }
        if self.mse_weights {
            for l in &mut plan.layers {
                if l.effective() == Precision::Int4 {
                    l.weight_observer = Observer::Histogram {
                        bins: super::observer::DEFAULT_BINS,
                        method: RangeMethod::Mse,
                    };
                }
            }
        }
    }

    /// One line per setting, for the CLI and the studio.
    pub fn describe(&self) -> Vec<String> {
        let mut v = vec![format!("recipe {} (lr {})", self.name, self.lr)];
        v.push(if self.lsq {
            format!(
                "LSQ scales at {}x the learning rate",
                self.quantizer_lr_factor
            )
        } else {
            "moving-average observers".into()
        });
        if self.keep_ends_8bit {
            v.push("first and last layer W8A8".into());
        }
        if self.mse_weights {
            v.push("4-bit weight scales by MSE".into());
        }
        if self.damping > 0.0 {
            v.push(format!("oscillation damping {}", self.damping));
        }
        if let Some(e) = self.freeze_bn_after {
            v.push(format!("BatchNorm frozen after epoch {e}"));
        }
        if let Some(e) = self.freeze_observers_after {
            v.push(format!("observers frozen after epoch {e}"));
        }
        if self.bn_reestimate_batches > 0 {
            v.push(format!(
                "BatchNorm re-estimated on {} batches at the end",
                self.bn_reestimate_batches
            ));
        }
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::zoo::Arch;

    #[test]
    fn four_bit_plans_get_the_four_bit_recipe_and_keep_their_ends_at_8_bits() {
        let g = Arch::MobilenetMini.build([1, 28, 28], 10, 0).unwrap();
        let int8 = QuantPlan::default_for(&g, Precision::Int8);
        assert_eq!(QatRecipe::for_plan(&g, &int8, 2), QatRecipe::int8());
        let mut w4 = QuantPlan::default_for(&g, Precision::Int4);
        let r = QatRecipe::for_plan(&g, &w4, 2);
        assert!(r.lsq && r.keep_ends_8bit && r.mse_weights);
        assert_eq!(r.freeze_bn_after, Some(1));
        assert_eq!(r.damping, 0.0, "measured to cost accuracy: off");
        // BatchNorm re-estimated only when it was not frozen; nothing of it without BatchNorm.
        assert_eq!(r.bn_reestimate_batches, 0);
        assert!(QatRecipe::for_plan(&g, &w4, 1).bn_reestimate_batches > 0);
        let seed = Arch::SeedCnn.build([1, 28, 28], 10, 0).unwrap();
        let rs = QatRecipe::for_plan(&seed, &w4, 2);
        assert_eq!((rs.freeze_bn_after, rs.bn_reestimate_batches), (None, 0));
        r.shape_plan(&g, &mut w4);
        let n = w4.layers.len();
        assert_eq!(w4.layers[0].precision, Precision::Int8);
        assert_eq!(w4.layers[n - 1].precision, Precision::Int8);
        assert!(
            w4.layers[1..n - 1]
                .iter()
                .all(|l| l.precision == Precision::Int4)
        );
        assert!(matches!(
            w4.layers[1].weight_observer,
            Observer::Histogram { .. }
        ));
        assert_eq!(w4.layers[0].weight_observer, Observer::MinMax);
        assert_eq!(min_bits(&w4), 4);
    }
}
