//! What the studio shows of an opened file, built on a worker thread and handed over whole:
//! a model ([`ModelView`]: its layer table, trainable parameters, the precision of an already
//! quantized model, unsupported nodes, the default plan or why there is none) or an integer
//! bundle ([`BundleView`], read only). Nothing here draws.

use crate::graph::{LayerSummary, summarize};
use crate::io::Model;
use crate::ops::OpKind;
use crate::quant::plan::{Precision, QuantPlan, is_quantizable};
use crate::zoo::Arch;
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// The architecture a model was built from, if it names a built-in one.
pub fn arch_of(model: &Model) -> Option<Arch> {
    let name = model.meta.arch.as_deref()?;
    Arch::ALL.into_iter().find(|a| a.name() == name)
}

/// Where the model on screen came from.
#[derive(Clone, Debug, PartialEq)]
pub enum ModelOrigin {
    /// Opened from (or last saved to) this file.
    File(PathBuf),
    /// Trained in this session and not saved yet.
    Trained { stopped_early: bool },
}

/// A model ready to show: everything the model panel needs, computed off the UI thread.
#[derive(Clone, Debug)]
pub struct ModelView {
    /// Distinguishes models in this session (results such as an evaluation refer to it).
    pub id: u64,
    pub model: Arc<Model>,
    pub origin: ModelOrigin,
    /// The per-layer table, or why it could not be made.
    pub layers: Result<Vec<LayerSummary>, String>,
    pub trainable: usize,
    /// Layers of an already-quantized model and the grid of their weights (read only).
    pub fixed_precision: Vec<(String, String)>,
    /// Nodes qatlas keeps as placeholders (imported ops it cannot run).
    pub unsupported: BTreeSet<String>,
    /// The default plan of a float model, or why the plan tools cannot work on this one.
    pub plan: Result<QuantPlan, String>,
}

impl ModelView {
    /// Summarises `model` (shape inference over the graph): call on a worker thread.
    pub fn prepare(id: u64, model: Arc<Model>, origin: ModelOrigin) -> ModelView {
        let layers =
            summarize(&model.graph).map_err(|e| format!("cannot summarise the graph: {e}"));
        let trainable = model.graph.num_trainable();
        let g = &model.graph;
        let unsupported = g
            .nodes
            .iter()
            .filter(|n| matches!(n.op, OpKind::Unsupported { .. }))
            .map(|n| n.name.clone())
            .collect::<BTreeSet<_>>();
        // A layer whose weight comes out of a fake quantizer: a quantized model.
        let fixed_precision: Vec<(String, String)> = g
            .nodes
            .iter()
            .filter(|n| is_quantizable(&n.op))
            .filter_map(|n| {
                let w = *n.inputs.get(1)?;
                let fq = g.nodes.iter().find(|m| m.output == w)?;
                match &fq.op {
                    OpKind::FakeQuant(a) => Some((n.name.clone(), grid_label(&a.grid))),
                    _ => None,
                }
            })
            .collect();
        let plan = if g.nodes.iter().any(|n| matches!(n.op, OpKind::FakeQuant(_))) {
            Err("This model is already quantized: its layers show the precision in the file. \
                 The plan tools (what-if, histograms, sensitivity, calibration) start from a float model."
                .to_string())
        } else if let Some(n) = unsupported.iter().next() {
            Err(format!(
                "The plan tools cannot run this model: node '{n}' is an op qatlas does not support yet."
            ))
        } else {
            let p = QuantPlan::default_for(g, Precision::Int8);
            if p.layers.is_empty() {
                Err("The model has no Conv, Linear or MatMul layer to quantize.".to_string())
            } else {
                Ok(p)
            }
        };
        ModelView {
            id,
            model,
            origin,
            layers,
            trainable,
            fixed_precision,
            unsupported,
            plan,
        }
    }

    /// Multiply-accumulates per image over all layers (0 if the table is unavailable).
    pub fn total_macs(&self) -> u64 {
        self.layers
            .as_ref()
            .map(|l| l.iter().map(|r| r.macs).sum())
            .unwrap_or(0)
    }

    /// The file the model is in, if it is in one.
    pub fn path(&self) -> Option<&Path> {
        match &self.origin {
            ModelOrigin::File(p) => Some(p),
            ModelOrigin::Trained { .. } => None,
        }
    }
}

/// "int8", "int4", "fp16" or the integer range of a fake quantizer's grid.
fn grid_label(g: &crate::ops::fake_quant::QuantGrid) -> String {
    use crate::ops::fake_quant::QuantGrid;
    match *g {
        QuantGrid::Fp16 => "fp16".into(),
        QuantGrid::Int { qmin, qmax } => match qmax - qmin {
            255 => "int8".into(),
            15 => "int4".into(),
            _ => format!("int {qmin}..{qmax}"),
        },
    }
}

/// An integer bundle opened in the window: read only (it is the deployment format), listed
/// layer by layer and evaluated on the integer runtime.
#[derive(Clone)]
pub struct BundleView {
    pub path: PathBuf,
    pub file_bytes: u64,
    pub model: Arc<crate::runtime::IntModel>,
    pub layers: Vec<crate::runtime::LayerInfo>,
    /// Accuracy and images on the test split, once measured (or why not).
    pub eval: Option<Result<(f64, usize), String>>,
}

impl std::fmt::Debug for BundleView {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BundleView")
            .field("path", &self.path)
            .field("layers", &self.layers)
            .field("eval", &self.eval)
            .finish()
    }
}
