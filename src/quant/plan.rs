//! The quantization plan: for every quantizable layer (Conv2d, Linear, MatMul) its precision,
//! weight granularity and scheme, activation scheme and observers, and an excluded flag; plus the
//! frozen ranges of a calibration. The one object the studio edits and project files store.
//!
//! Defaults follow PyTorch's x86 qconfig: weights int8 per-channel symmetric (min-max),
//! activations uint8 per-tensor affine (histogram observer, MSE range). PyTorch's `reduce_range`
//! (7-bit activations against AVX2 saturation) is not used: the integer runtime handles
//! saturation itself. Serialized as RON; every field but `layer` and `precision` may be omitted.
//!
//! ```
//! use qatlas::quant::plan::{Precision, QuantPlan};
//! let g = qatlas::zoo::Arch::SeedCnn.build([1, 28, 28], 10, 0).unwrap();
//! let plan = QuantPlan::default_for(&g, Precision::Int8);
//! assert_eq!(plan.layers.len(), 3);
//! let back = QuantPlan::from_ron(&plan.to_ron().unwrap()).unwrap();
//! assert_eq!(back, plan);
//! ```

use super::error::QuantError;
use super::observer::Observer;
pub use super::range::PointRange;
use super::scheme::{PointGrid, QDtype, QSpec, Scheme};
use crate::graph::Graph;
use crate::ops::OpKind;
use serde::{Deserialize, Serialize};
use std::collections::HashSet;
use std::path::Path;

/// Numeric precision of a layer.
#[derive(
    Clone,
    Copy,
    Debug,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    Serialize,
    Deserialize,
    clap::ValueEnum,
)]
pub enum Precision {
    Fp32,
    Fp16,
    Int8,
    Int4,
}

impl Precision {
    /// Lower-case name ("int8", ...).
    pub fn name(self) -> &'static str {
        match self {
            Precision::Fp32 => "fp32",
            Precision::Fp16 => "fp16",
            Precision::Int8 => "int8",
            Precision::Int4 => "int4",
        }
    }

    /// Bits per weight.
    pub fn bits(self) -> u32 {
        match self {
            Precision::Fp32 => 32,
            Precision::Fp16 => 16,
            Precision::Int8 => 8,
            Precision::Int4 => 4,
        }
    }
}

/// One scale per tensor or per output channel.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Granularity {
    PerTensor,
    PerChannel,
}

fn d_int8() -> Precision {
    Precision::Int8
}
fn d_per_channel() -> Granularity {
    Granularity::PerChannel
}
fn d_symmetric() -> Scheme {
    Scheme::Symmetric
}
fn d_affine() -> Scheme {
    Scheme::Affine
}
fn d_weight_observer() -> Observer {
    Observer::default_weight()
}
fn d_act_observer() -> Observer {
    Observer::default_activation()
}

/// The plan of one layer.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LayerPlan {
    /// Node name in the model.
    pub layer: String,
    /// Precision of the weights (and of the layer as a whole: fp32 leaves it untouched; fp16
    /// rounds the weights through half precision and leaves activations in f32).
    pub precision: Precision,
    /// Precision of the layer's input and output activations when `precision` is an integer
    /// type: int8 (the default, so `precision: Int4` means W4A8), int4, fp16 or fp32
    /// (weight-only quantization).
    #[serde(default = "d_int8")]
    pub activations: Precision,
    #[serde(default = "d_per_channel")]
    pub weight_granularity: Granularity,
    /// Weights are stored signed; symmetric (zero point 0) by default.
    #[serde(default = "d_symmetric")]
    pub weight_scheme: Scheme,
    /// Affine maps activations to unsigned integers with a zero point; symmetric to signed.
    #[serde(default = "d_affine")]
    pub activation_scheme: Scheme,
    #[serde(default = "d_weight_observer")]
    pub weight_observer: Observer,
    #[serde(default = "d_act_observer")]
    pub activation_observer: Observer,
    /// Kept in fp32 whatever `precision` says (a toggle that keeps the other settings).
    #[serde(default)]
    pub excluded: bool,
}

impl LayerPlan {
    /// PyTorch-x86-style defaults at a precision (int4 means int4 weights, int8 activations).
    pub fn new(layer: &str, precision: Precision) -> Self {
        LayerPlan {
            layer: layer.to_string(),
            precision,
            activations: match precision {
                Precision::Int8 | Precision::Int4 => Precision::Int8,
                p => p,
            },
            weight_granularity: Granularity::PerChannel,
            weight_scheme: Scheme::Symmetric,
            activation_scheme: Scheme::Affine,
            weight_observer: Observer::default_weight(),
            activation_observer: Observer::default_activation(),
            excluded: false,
        }
    }

    /// The precision the layer actually runs at.
    pub fn effective(&self) -> Precision {
        if self.excluded {
            Precision::Fp32
        } else {
            self.precision
        }
    }

    /// Whether anything about the layer is quantized.
    pub fn is_quantized(&self) -> bool {
        self.effective() != Precision::Fp32
    }

    /// The grid of the weights, if they are quantized.
    pub fn weight_grid(&self) -> Option<PointGrid> {
        let dtype = match self.effective() {
            Precision::Fp32 => return None,
            Precision::Fp16 => return Some(PointGrid::Fp16),
            Precision::Int8 => QDtype::S8,
            Precision::Int4 => QDtype::S4,
        };
        Some(PointGrid::Int(QSpec {
            dtype,
            scheme: self.weight_scheme,
        }))
    }

    /// The grid of the activations around the layer, if they are quantized.
    pub fn activation_grid(&self) -> Option<PointGrid> {
        if !matches!(self.effective(), Precision::Int8 | Precision::Int4) {
            return None;
        }
        let (signed, unsigned) = match self.activations {
            Precision::Fp32 => return None,
            Precision::Fp16 => return Some(PointGrid::Fp16),
            Precision::Int8 => (QDtype::S8, QDtype::U8),
            Precision::Int4 => (QDtype::S4, QDtype::U4),
        };
        let dtype = match self.activation_scheme {
            Scheme::Symmetric => signed,
            Scheme::Affine => unsigned,
        };
        Some(PointGrid::Int(QSpec {
            dtype,
            scheme: self.activation_scheme,
        }))
    }
}

/// A whole model's plan.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct QuantPlan {
    pub layers: Vec<LayerPlan>,
    /// Frozen ranges from a calibration (empty before one).
    #[serde(default)]
    pub ranges: Vec<PointRange>,
}

/// Whether an op is one the plan covers.
pub fn is_quantizable(op: &OpKind) -> bool {
    matches!(op, OpKind::Conv2d(_) | OpKind::Linear | OpKind::MatMul)
}

/// Node indices of the quantizable layers, in graph order.
pub fn quantizable_layers(g: &Graph) -> Vec<usize> {
    (0..g.nodes.len())
        .filter(|&i| is_quantizable(&g.nodes[i].op))
        .collect()
}

impl QuantPlan {
    /// Every quantizable layer at `precision` with the x86 defaults.
    pub fn default_for(g: &Graph, precision: Precision) -> Self {
        QuantPlan {
            layers: quantizable_layers(g)
                .into_iter()
                .map(|i| LayerPlan::new(&g.nodes[i].name, precision))
                .collect(),
            ranges: Vec::new(),
        }
    }

    /// The plan of a layer by name.
    pub fn layer(&self, name: &str) -> Option<&LayerPlan> {
        self.layers.iter().find(|l| l.layer == name)
    }

    /// Mutable access to a layer's plan by name.
    pub fn layer_mut(&mut self, name: &str) -> Option<&mut LayerPlan> {
        self.layers.iter_mut().find(|l| l.layer == name)
    }

    /// Checks observers, duplicates and ranges (without a model).
    pub fn validate(&self) -> Result<(), QuantError> {
        let mut seen = HashSet::new();
        for l in &self.layers {
            if !seen.insert(l.layer.as_str()) {
                return Err(QuantError::DuplicateLayer {
                    layer: l.layer.clone(),
                });
            }
            l.weight_observer.validate()?;
            l.activation_observer.validate()?;
        }
        self.ranges.iter().try_for_each(PointRange::validate)
    }

    /// Checks that every layer named exists in `g` and is quantizable.
    pub fn validate_for(&self, g: &Graph) -> Result<(), QuantError> {
        self.validate()?;
        for l in &self.layers {
            match g.nodes.iter().find(|n| n.name == l.layer) {
                Some(n) if is_quantizable(&n.op) => {}
                Some(n) => {
                    return Err(QuantError::NotQuantizable {
                        layer: l.layer.clone(),
                        op: n.op.name().to_string(),
                    });
                }
                None => {
                    let names: Vec<&str> = quantizable_layers(g)
                        .into_iter()
                        .map(|i| g.nodes[i].name.as_str())
                        .collect();
                    return Err(QuantError::UnknownLayer {
                        layer: l.layer.clone(),
                        available: names.join(", "),
                    });
                }
            }
        }
        Ok(())
    }

    /// Parses RON and validates.
    pub fn from_ron(text: &str) -> Result<Self, QuantError> {
        let p: QuantPlan = ron::from_str(text).map_err(|e| QuantError::InvalidValue {
            what: "plan".into(),
            expected: "a RON QuantPlan".into(),
            found: e.to_string(),
        })?;
        p.validate()?;
        Ok(p)
    }

    /// Pretty RON text.
    pub fn to_ron(&self) -> Result<String, ron::Error> {
        ron::ser::to_string_pretty(self, ron::ser::PrettyConfig::default())
    }

    /// Reads a plan file; with a model, also checks the layer names against it. Every error
    /// names the file.
    pub fn load(path: &Path, g: Option<&Graph>) -> Result<Self, QuantError> {
        let text = std::fs::read_to_string(path).map_err(|e| QuantError::PlanFile {
            path: path.to_path_buf(),
            problem: format!("cannot read ({e})"),
        })?;
        Self::parse(&text, path, g)
    }

    /// [`QuantPlan::load`] over a plan file's text already in memory (`path` names it in
    /// errors).
    pub fn parse(text: &str, path: &Path, g: Option<&Graph>) -> Result<Self, QuantError> {
        let file_err = |problem: String| QuantError::PlanFile {
            path: path.to_path_buf(),
            problem,
        };
        let p: QuantPlan =
            ron::from_str(text).map_err(|e| file_err(format!("not a valid plan ({e})")))?;
        let checked = match g {
            Some(g) => p.validate_for(g),
            None => p.validate(),
        };
        checked.map_err(|e| file_err(e.to_string()))?;
        Ok(p)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::zoo::Arch;

    #[test]
    fn defaults_follow_pytorch_x86() {
        let g = Arch::ResnetMini.build([1, 28, 28], 10, 0).unwrap();
        let p = QuantPlan::default_for(&g, Precision::Int4);
        assert_eq!(p.layers.len(), 7);
        let l = &p.layers[0];
        assert_eq!(l.activations, Precision::Int8);
        assert_eq!(
            l.weight_grid(),
            Some(PointGrid::Int(QSpec {
                dtype: QDtype::S4,
                scheme: Scheme::Symmetric
            }))
        );
        assert_eq!(
            l.activation_grid(),
            Some(PointGrid::Int(QSpec {
                dtype: QDtype::U8,
                scheme: Scheme::Affine
            }))
        );
        let mut fp16 = l.clone();
        fp16.precision = Precision::Fp16;
        assert_eq!(fp16.weight_grid(), Some(PointGrid::Fp16));
        assert_eq!(fp16.activation_grid(), None);
        fp16.excluded = true;
        assert_eq!(fp16.weight_grid(), None);
    }

    #[test]
    fn minimal_plan_text_uses_defaults_and_bad_text_is_rejected() {
        let p = QuantPlan::from_ron(r#"(layers: [(layer: "conv1", precision: Int4)])"#).unwrap();
        assert_eq!(p.layers[0], LayerPlan::new("conv1", Precision::Int4));
        let bad = QuantPlan::from_ron(r#"(layers: [(layer: "conv1", precision: Int9)])"#);
        assert!(bad.unwrap_err().to_string().contains("Int9"));
        let dup = r#"(layers: [(layer: "a", precision: Int8), (layer: "a", precision: Int8)])"#;
        assert!(matches!(
            QuantPlan::from_ron(dup),
            Err(QuantError::DuplicateLayer { .. })
        ));
        let nan = r#"(layers: [], ranges: [(point: "x.fq", value: "x", dtype: U8, scheme: Affine,
            min: [NaN], max: [1.0], scale: [0.1], zero_point: [0])])"#;
        assert!(
            QuantPlan::from_ron(nan)
                .unwrap_err()
                .to_string()
                .contains("min/max")
        );
    }

    #[test]
    fn unknown_and_unquantizable_layers_are_named() {
        let g = Arch::SeedCnn.build([1, 28, 28], 10, 0).unwrap();
        let mut p = QuantPlan::default_for(&g, Precision::Int8);
        p.layers.push(LayerPlan::new("conv9", Precision::Int8));
        let e = p.validate_for(&g).unwrap_err().to_string();
        assert!(e.contains("conv9") && e.contains("conv1, conv2, fc"), "{e}");
        p.layers.pop();
        p.layers.push(LayerPlan::new("relu1", Precision::Int8));
        assert!(matches!(
            p.validate_for(&g),
            Err(QuantError::NotQuantizable { .. })
        ));
    }
}
