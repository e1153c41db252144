//! What a quantization-aware training run is asked to do, as plain data shared by the studio's
//! QAT panel, project files and `qatlas run`: the precision choice ([`QatPrecision`]) and the
//! run's settings ([`QatRequest`]), turned into the same [`QatSpec`] `qatlas qat` builds.

use super::QatSpec;
use crate::graph::Graph;
use crate::io::Model;
use crate::quant::recipe::QatRecipe;
use crate::quant::{Precision, QatOptions, QuantPlan};
use crate::train::{OptimizerConfig, Schedule, TrainConfig};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// Training images whose activations set the PTQ starting ranges (as `qatlas qat`).
pub const CALIB_SAMPLES: usize = 1000;

/// Batch size of a studio QAT run (as `qatlas qat`).
pub const BATCH: usize = 64;

/// What every quantizable layer is quantized to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum QatPrecision {
    /// int8 weights and activations.
    Int8,
    /// int4 weights, int8 activations.
    W4A8,
    /// int4 weights and activations.
    W4A4,
    /// The studio's current plan (layers table, Calibration) with its calibrated ranges.
    Plan,
}

impl QatPrecision {
    pub const ALL: [QatPrecision; 4] = [
        QatPrecision::Plan,
        QatPrecision::Int8,
        QatPrecision::W4A8,
        QatPrecision::W4A4,
    ];

    /// Short name, also used in file names.
    pub fn name(self) -> &'static str {
        match self {
            QatPrecision::Int8 => "int8",
            QatPrecision::W4A8 => "w4a8",
            QatPrecision::W4A4 => "w4a4",
            QatPrecision::Plan => "plan",
        }
    }

    /// What the choice means, for the form.
    pub fn label(self) -> &'static str {
        match self {
            QatPrecision::Int8 => "int8 (W8A8)",
            QatPrecision::W4A8 => "W4A8: int4 weights, int8 activations",
            QatPrecision::W4A4 => "W4A4: int4 weights and activations",
            QatPrecision::Plan => "the current plan, from its calibrated ranges",
        }
    }

    /// The plan `qatlas qat --precision .. [--activations int4]` would use for `g`.
    pub fn plan(self, g: &Graph) -> QuantPlan {
        let weights = match self {
            QatPrecision::Int8 | QatPrecision::Plan => Precision::Int8,
            QatPrecision::W4A8 | QatPrecision::W4A4 => Precision::Int4,
        };
        let mut plan = QuantPlan::default_for(g, weights);
        if self == QatPrecision::W4A4 {
            for l in &mut plan.layers {
                l.activations = Precision::Int4;
            }
        }
        plan
    }

    /// The `qatlas qat` flags for this choice.
    pub fn flags(self) -> &'static str {
        match self {
            QatPrecision::Int8 => "--precision int8",
            QatPrecision::W4A8 => "--precision int4",
            QatPrecision::W4A4 => "--precision int4 --activations int4",
            QatPrecision::Plan => "--plan plan.ron",
        }
    }
}

/// "Start QAT" as the user set it up.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct QatRequest {
    pub precision: QatPrecision,
    pub epochs: usize,
    /// Peak learning rate (AdamW, cosine decay to 0).
    pub lr: f32,
    /// Learnable scales (LSQ) instead of moving-average observers.
    pub lsq: bool,
    pub freeze_bn_after: Option<usize>,
    pub freeze_observers_after: Option<usize>,
    /// Train on the first N training images only.
    pub limit: Option<usize>,
    /// Learning rate of LSQ scales relative to `lr`.
    #[serde(default = "one")]
    pub quantizer_lr_factor: f32,
    /// Oscillation damping of the weight quantizers (0: off).
    #[serde(default)]
    pub damping: f32,
    /// Training batches for BatchNorm re-estimation at the end (0: off).
    #[serde(default)]
    pub bn_reestimate_batches: usize,
    /// First and last layer at W8A8 (generated plans: not [`QatPrecision::Plan`]).
    #[serde(default)]
    pub keep_ends_8bit: bool,
    /// MSE weight ranges on 4-bit weights (generated plans).
    #[serde(default)]
    pub mse_weights: bool,
}

fn one() -> f32 {
    1.0
}

impl Default for QatRequest {
    /// PyTorch's int8 recipe, one epoch.
    fn default() -> Self {
        let mut r = QatRequest {
            precision: QatPrecision::Int8,
            epochs: 1,
            lr: 0.0,
            lsq: false,
            freeze_bn_after: None,
            freeze_observers_after: None,
            limit: None,
            quantizer_lr_factor: 1.0,
            damping: 0.0,
            bn_reestimate_batches: 0,
            keep_ends_8bit: false,
            mse_weights: false,
        };
        r.set_recipe(&QatRecipe::int8());
        r
    }
}

impl QatRequest {
    /// Takes every setting of `r` (learning rate, LSQ, damping, freezing, re-estimation, plan
    /// shaping).
    pub fn set_recipe(&mut self, r: &QatRecipe) {
        self.lr = r.lr;
        self.lsq = r.lsq;
        self.quantizer_lr_factor = r.quantizer_lr_factor;
        self.damping = r.damping;
        self.freeze_bn_after = r.freeze_bn_after;
        self.freeze_observers_after = r.freeze_observers_after;
        self.bn_reestimate_batches = r.bn_reestimate_batches;
        self.keep_ends_8bit = r.keep_ends_8bit;
        self.mse_weights = r.mse_weights;
    }

    /// The recipe the defaults choose for this precision and epoch count on model `g`
    /// (`plan`: the studio's plan, for [`QatPrecision::Plan`]).
    pub fn default_recipe(&self, g: &Graph, plan: Option<&QuantPlan>) -> QatRecipe {
        let generated = self.precision.plan(g);
        let plan = match (self.precision, plan) {
            (QatPrecision::Plan, Some(p)) => p,
            _ => &generated,
        };
        let mut r = QatRecipe::for_plan(g, plan, self.epochs);
        if self.precision == QatPrecision::Plan {
            r.keep_ends_8bit = false;
            r.mse_weights = false;
        }
        r
    }

    /// The request's settings as a recipe.
    pub fn recipe(&self) -> QatRecipe {
        QatRecipe {
            name: "custom".into(),
            lr: self.lr,
            lsq: self.lsq,
            quantizer_lr_factor: self.quantizer_lr_factor,
            mse_weights: self.mse_weights,
            keep_ends_8bit: self.keep_ends_8bit,
            damping: self.damping,
            freeze_bn_after: self.freeze_bn_after,
            freeze_observers_after: self.freeze_observers_after,
            bn_reestimate_batches: self.bn_reestimate_batches,
        }
    }

    /// The training configuration of `qatlas qat` with this epoch count and learning rate.
    pub fn train_config(&self) -> TrainConfig {
        TrainConfig {
            epochs: self.epochs,
            batch_size: BATCH,
            optimizer: OptimizerConfig::AdamW {
                lr: self.lr,
                beta1: 0.9,
                beta2: 0.999,
                eps: 1e-8,
                weight_decay: 0.0,
            },
            schedule: Schedule::Cosine {
                warmup_steps: 0,
                min_factor: 0.0,
            },
            seed: 0,
        }
    }

    /// The job's specification for the float `model` (clones it: call on a worker thread).
    /// `plan` is the studio's calibrated plan, used when the precision is
    /// [`QatPrecision::Plan`].
    pub fn spec(
        &self,
        model: &Model,
        command: String,
        checkpoint: Option<PathBuf>,
        plan: Option<QuantPlan>,
    ) -> QatSpec {
        let mut model = model.clone();
        model.meta.command = Some(command);
        let recipe = self.recipe();
        let plan = match (self.precision, plan) {
            (QatPrecision::Plan, Some(p)) => p,
            (p, _) => {
                let mut plan = p.plan(&model.graph);
                recipe.shape_plan(&model.graph, &mut plan);
                plan
            }
        };
        QatSpec {
            plan,
            model,
            opts: QatOptions::from_recipe(&recipe),
            train: self.train_config(),
            calib_samples: CALIB_SAMPLES,
            freeze_bn_after: self.freeze_bn_after,
            freeze_observers_after: self.freeze_observers_after,
            bn_reestimate_batches: self.bn_reestimate_batches,
            checkpoint,
        }
    }

    /// The `qatlas qat` command line that reproduces the run (recorded in the model).
    pub fn cli_equivalent(&self, model: Option<&Path>, data_dir: &Path) -> String {
        let mut s = String::from("qatlas qat");
        if let Some(m) = model {
            s += &format!(" --model {}", m.display());
        }
        s += &format!(
            " --data {} {} --epochs {} --lr {}",
            data_dir.display(),
            self.precision.flags(),
            self.epochs,
            self.lr
        );
        s += if self.lsq { " --lsq" } else { " --no-lsq" };
        s += &format!(
            " --quantizer-lr-factor {} --damping {} --bn-reestimate {}",
            self.quantizer_lr_factor, self.damping, self.bn_reestimate_batches
        );
        if self.precision != QatPrecision::Plan {
            if !self.keep_ends_8bit {
                s += " --no-keep-ends";
            }
            if !self.mse_weights {
                s += " --no-mse-weights";
            }
        }
        match self.freeze_bn_after {
            Some(e) => s += &format!(" --freeze-bn-after {e}"),
            None => s += " --no-freeze-bn",
        }
        if let Some(e) = self.freeze_observers_after {
            s += &format!(" --freeze-observers-after {e}");
        }
        if let Some(n) = self.limit {
            s += &format!(" --limit {n}");
        }
        s + " (run in the studio)"
    }
}

/// Whether `model` already holds fake quantizers (a quantized model or a QAT checkpoint).
pub fn is_fake_quant(model: &Model) -> bool {
    model.meta.qat.is_some()
        || model
            .graph
            .nodes
            .iter()
            .any(|n| matches!(n.op, crate::ops::OpKind::FakeQuant(_)))
}
