//! The native model file: one `.safetensors` file whose tensors are the graph's parameters and
//! whose metadata holds the graph (`qatlas.graph`, RON) and the model's metadata
//! (`qatlas.meta`, RON: input normalisation, classes, the training run and its loss curve).
//!
//! Loading validates everything against the graph: tensor dtypes and shapes, that every node
//! reads defined values, and shape inference; any problem is an error naming the file.

use super::IoError;
use super::atomic::write_atomic;
use crate::data::Normalization;
use crate::graph::{Graph, Node, Param, Value, builder::validate};
use crate::tensor::from_vec;
use crate::train::{TrainConfig, TrainHistory};
use safetensors::{Dtype, SafeTensors, tensor::TensorView};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::path::Path;

const FORMAT_KEY: &str = "qatlas.format";
const GRAPH_KEY: &str = "qatlas.graph";
const META_KEY: &str = "qatlas.meta";
const FORMAT_VERSION: &str = "1";

/// What a model knows about itself besides its graph.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ModelMeta {
    /// Input preprocessing the model was trained with.
    pub normalization: Normalization,
    pub class_names: Vec<String>,
    /// Built-in architecture it was made from, if any.
    pub arch: Option<String>,
    pub train_config: Option<TrainConfig>,
    pub history: Option<TrainHistory>,
    /// The command line that produced the file, for reproducibility.
    pub command: Option<String>,
    /// Set on quantization-aware-training checkpoints: the graph is a QAT training graph and
    /// this is where its run stands (`qatlas qat --resume` continues it).
    #[serde(default)]
    pub qat: Option<crate::quant::qat::QatState>,
}

/// A graph with its metadata.
#[derive(Clone, Debug)]
pub struct Model {
    pub graph: Graph,
    pub meta: ModelMeta,
}

/// The graph without its tensors, as stored in the metadata.
#[derive(Serialize, Deserialize)]
struct GraphSpec {
    name: String,
    input_shape: Vec<usize>,
    values: Vec<Value>,
    nodes: Vec<Node>,
    inputs: Vec<usize>,
    outputs: Vec<usize>,
    /// (name, trainable) per parameter; the tensor is stored under the name.
    params: Vec<(String, bool)>,
}

fn format_err(path: &Path, problem: impl Into<String>) -> IoError {
    IoError::Format {
        path: path.to_path_buf(),
        problem: problem.into(),
    }
}

/// Writes `m` to `path` atomically.
pub fn save_model(m: &Model, path: &Path) -> Result<(), IoError> {
    let g = &m.graph;
    let spec = GraphSpec {
        name: g.name.clone(),
        input_shape: g.input_shape.clone(),
        values: g.values.clone(),
        nodes: g.nodes.clone(),
        inputs: g.inputs.clone(),
        outputs: g.outputs.clone(),
        params: g
            .params
            .iter()
            .map(|p| (p.name.clone(), p.trainable))
            .collect(),
    };
    let ron = |v: &dyn erased::Ser| {
        v.to_ron()
            .map_err(|e| format_err(path, format!("cannot encode metadata ({e})")))
    };
    let mut meta = HashMap::new();
    meta.insert(FORMAT_KEY.to_string(), FORMAT_VERSION.to_string());
    meta.insert(GRAPH_KEY.to_string(), ron(&spec)?);
    meta.insert(META_KEY.to_string(), ron(&m.meta)?);
    let bytes: Vec<Vec<u8>> = g
        .params
        .iter()
        .map(|p| p.tensor.iter().flat_map(|v| v.to_le_bytes()).collect())
        .collect();
    let views = g
        .params
        .iter()
        .zip(&bytes)
        .map(|(p, b)| {
            TensorView::new(Dtype::F32, p.tensor.shape().to_vec(), b).map(|v| (p.name.clone(), v))
        })
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format_err(path, format!("cannot encode tensors ({e})")))?;
    let out = safetensors::serialize(views, Some(meta))
        .map_err(|e| format_err(path, format!("cannot encode tensors ({e})")))?;
    write_atomic(path, &out).map_err(|e| IoError::Write {
        path: path.to_path_buf(),
        source: e,
    })
}

/// Reads and validates a model file.
pub fn load_model(path: &Path) -> Result<Model, IoError> {
    let bytes = std::fs::read(path).map_err(|e| IoError::Read {
        path: path.to_path_buf(),
        source: e,
    })?;
    load_model_bytes(&bytes, path)
}

/// [`load_model`] over a file's contents already in memory (`path` names it in errors).
pub fn load_model_bytes(bytes: &[u8], path: &Path) -> Result<Model, IoError> {
    let st = SafeTensors::deserialize(bytes)
        .map_err(|e| format_err(path, format!("not a valid safetensors file ({e})")))?;
    let (_, header) = SafeTensors::read_metadata(bytes)
        .map_err(|e| format_err(path, format!("not a valid safetensors file ({e})")))?;
    let md = header.metadata().as_ref().ok_or_else(|| {
        format_err(
            path,
            "safetensors file without qatlas metadata (not a qatlas model)",
        )
    })?;
    match md.get(FORMAT_KEY).map(String::as_str) {
        Some(FORMAT_VERSION) => {}
        Some(v) if v.starts_with("int-") => {
            return Err(format_err(
                path,
                "this is an integer bundle (from `qatlas convert` or Export), which only the \
                 integer runtime runs: `qatlas eval --model` and `qatlas bench e2e` take it; \
                 open the fake-quant model or QDQ ONNX it came from to analyse or edit it",
            ));
        }
        Some(v) => {
            return Err(format_err(
                path,
                format!(
                    "qatlas model format version {v} is not supported (this build reads {FORMAT_VERSION})"
                ),
            ));
        }
        None => {
            return Err(format_err(
                path,
                "safetensors file without qatlas metadata (not a qatlas model)",
            ));
        }
    }
    let spec: GraphSpec = ron::from_str(
        md.get(GRAPH_KEY)
            .ok_or_else(|| format_err(path, "missing graph description"))?,
    )
    .map_err(|e| format_err(path, format!("graph description is malformed ({e})")))?;
    let meta: ModelMeta = ron::from_str(
        md.get(META_KEY)
            .ok_or_else(|| format_err(path, "missing model metadata"))?,
    )
    .map_err(|e| format_err(path, format!("model metadata is malformed ({e})")))?;
    let mut params = Vec::with_capacity(spec.params.len());
    for (name, trainable) in spec.params {
        let view = st
            .tensor(&name)
            .map_err(|_| format_err(path, format!("tensor '{name}' is missing")))?;
        if view.dtype() != Dtype::F32 {
            return Err(format_err(
                path,
                format!("tensor '{name}' has dtype {:?}, expected F32", view.dtype()),
            ));
        }
        let data: Vec<f32> = view
            .data()
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect();
        if let Some(i) = data.iter().position(|v| !v.is_finite()) {
            return Err(format_err(
                path,
                format!("tensor '{name}' holds a non-finite value at index {i}"),
            ));
        }
        params.push(Param {
            name,
            tensor: from_vec(view.shape(), data),
            trainable,
        });
    }
    let graph = Graph {
        name: spec.name,
        values: spec.values,
        nodes: spec.nodes,
        params,
        inputs: spec.inputs,
        outputs: spec.outputs,
        input_shape: spec.input_shape,
    };
    // Sources must point at existing params/nodes/inputs before validation indexes them.
    for v in &graph.values {
        let ok = match v.source {
            crate::graph::Source::Param(p) => p < graph.params.len(),
            crate::graph::Source::Node(n) => {
                n < graph.nodes.len() && graph.nodes[n].output < graph.values.len()
            }
            crate::graph::Source::Input(i) => i < graph.inputs.len(),
        };
        if !ok {
            return Err(format_err(
                path,
                format!("value '{}' has a dangling source", v.name),
            ));
        }
    }
    if graph
        .inputs
        .iter()
        .chain(&graph.outputs)
        .any(|&v| v >= graph.values.len())
        || graph.nodes.iter().any(|n| n.output >= graph.values.len())
    {
        return Err(format_err(path, "graph refers to values that do not exist"));
    }
    validate(&graph).map_err(|e| format_err(path, format!("invalid graph ({e})")))?;
    meta.normalization
        .validate(graph.input_shape.first().copied().unwrap_or(1))
        .map_err(|e| format_err(path, format!("invalid normalisation ({e})")))?;
    Ok(Model { graph, meta })
}

/// RON encoding behind a trait object, so one closure serves both metadata structs.
mod erased {
    pub trait Ser {
        fn to_ron(&self) -> Result<String, ron::Error>;
    }
    impl<T: serde::Serialize> Ser for T {
        fn to_ron(&self) -> Result<String, ron::Error> {
            ron::to_string(self)
        }
    }
}
