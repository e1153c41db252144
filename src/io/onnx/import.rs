//! ONNX `ModelProto` bytes -> a validated [`Graph`].
//!
//! Steps: decode the protobuf; check the opset; index initializers (decoded lazily, only when an
//! op reads them, so a bad tensor is reported with the node that reads it); read the one graph
//! input (symbolic batch axis + fixed sample shape); order the nodes topologically; map each node
//! through the op registry, keeping shapes at the import batch size so that every mismatch is
//! reported at the node that causes it; keep nodes qatlas cannot express as `Unsupported`; bind
//! the graph outputs; validate.

use super::OnnxError;
use super::ctx::{NodeCtx, Out};
use super::proto::{
    GraphProto, ModelProto, NodeProto, TensorProto, ValueInfoProto, tensor_proto::DataType,
    tensor_shape_proto::dimension::Value as Dim, type_proto::Value as TypeValue,
};
use super::registry::Registry;
use super::tensor::Const;
use crate::graph::{Graph, Node, Param, Source, Value, ValueId, builder::validate};
use crate::ops::{OpError, OpKind};
use crate::tensor::Tensor;
use prost::Message;
use std::collections::{HashMap, HashSet};
use std::rc::Rc;

/// Lowest and highest default-domain opsets the importer reads.
pub const MIN_OPSET: i64 = 7;
pub const MAX_OPSET: i64 = 28;
/// Largest dimension and element count accepted for the model input's sample shape.
const MAX_DIM: u64 = 1 << 24;
const MAX_SAMPLE: u64 = 1 << 31;
/// Largest activation (elements per sample) a node may produce; keeps shape arithmetic far from
/// overflow on hostile files.
const MAX_ACTIVATION: u64 = 1 << 36;

/// What an ONNX name stands for during import.
#[derive(Clone)]
pub(crate) enum Val<'m> {
    /// A graph value (the input, a node output, or a materialised parameter).
    Value(ValueId),
    /// An initializer not decoded yet.
    Init(&'m TensorProto),
    /// A decoded constant.
    Const(Rc<Const>),
}

/// The graph under construction.
pub(crate) struct Importer<'m> {
    pub g: Graph,
    /// Shape of every graph value at the import batch size (`None`: unknown).
    pub shapes: Vec<Option<Vec<usize>>>,
    pub names: HashMap<&'m str, Val<'m>>,
    /// Constants already materialised as parameters, by ONNX name.
    pub params: HashMap<String, ValueId>,
    /// Value names in use or reserved (every ONNX name is reserved up front).
    taken: HashSet<String>,
    /// Names taken since the last checkpoint (for rollback).
    taken_log: Vec<String>,
    pub opset: i64,
    /// The model input's declared batch size when it is fixed rather than symbolic.
    pub static_batch: Option<usize>,
    /// ONNX element type of each initializer decoded so far (a zero point's type is its grid).
    pub elem_types: HashMap<&'m str, i32>,
    /// Outputs of imported `QuantizeLinear` nodes (fake quantizers) and the grid each stands
    /// for, so that the `DequantizeLinear` reading one can check it uses the same grid.
    pub quantized: HashMap<ValueId, QdqGrid>,
}

/// The grid of a QuantizeLinear / DequantizeLinear node: integer range, scales, zero points and
/// the per-channel axis (`None` per tensor).
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct QdqGrid {
    pub qmin: i32,
    pub qmax: i32,
    pub scale: Vec<f32>,
    pub zero_point: Vec<i64>,
    pub axis: Option<usize>,
}

impl<'m> Importer<'m> {
    fn fresh_name(&mut self, hint: &str) -> String {
        let mut name = hint.to_string();
        let mut k = 1;
        while self.taken.contains(&name) {
            name = format!("{hint}.{k}");
            k += 1;
        }
        self.taken.insert(name.clone());
        self.taken_log.push(name.clone());
        name
    }

    fn add_value(&mut self, name: String, source: Source, shape: Option<Vec<usize>>) -> ValueId {
        self.g.values.push(Value { name, source });
        self.shapes.push(shape);
        self.g.values.len() - 1
    }

    /// Adds a parameter named after `hint` (made unique).
    pub fn add_param(&mut self, hint: &str, t: Tensor, trainable: bool) -> ValueId {
        let name = self.fresh_name(hint);
        self.push_param(name, t, trainable)
    }

    /// Adds the parameter that stands for the ONNX constant `name` as it is (its name was
    /// reserved for it).
    pub fn add_named_param(&mut self, name: &str, t: Tensor, trainable: bool) -> ValueId {
        self.push_param(name.to_string(), t, trainable)
    }

    fn push_param(&mut self, name: String, t: Tensor, trainable: bool) -> ValueId {
        let shape = t.shape().to_vec();
        self.g.params.push(Param {
            name: name.clone(),
            tensor: t,
            trainable,
        });
        let p = self.g.params.len() - 1;
        self.add_value(name, Source::Param(p), Some(shape))
    }

    /// Adds a node; returns its output value and its index. The output shape follows from the
    /// input shapes when they are all known.
    pub fn add_node(
        &mut self,
        name: &str,
        op: OpKind,
        inputs: &[ValueId],
        value_hint: &str,
    ) -> Result<(ValueId, usize), OpError> {
        let shape = if matches!(op, OpKind::Unsupported { .. }) {
            None
        } else {
            let ins: Option<Vec<&[usize]>> =
                inputs.iter().map(|&v| self.shapes[v].as_deref()).collect();
            match ins {
                Some(ins) => Some(op.output_shape(&ins)?),
                None => None,
            }
        };
        if let Some(s) = &shape {
            let elems = s.iter().try_fold(1u64, |a, &d| a.checked_mul(d as u64));
            if elems.is_none_or(|e| e > MAX_ACTIVATION) {
                return Err(OpError::Invalid {
                    op: op.name().to_string(),
                    problem: format!(
                        "output shape {s:?} for one sample exceeds {MAX_ACTIVATION} elements"
                    ),
                });
            }
        }
        let idx = self.g.nodes.len();
        let value_name = self.fresh_name(value_hint);
        let v = self.add_value(value_name, Source::Node(idx), shape);
        self.g.nodes.push(Node {
            name: name.to_string(),
            op,
            inputs: inputs.to_vec(),
            output: v,
        });
        Ok((v, idx))
    }

    /// Undoes everything added since `mark` (an import function fell back to Unsupported).
    fn rollback(&mut self, mark: (usize, usize, usize)) {
        let (values, params, nodes) = mark;
        self.g.values.truncate(values);
        self.shapes.truncate(values);
        self.g.params.truncate(params);
        self.g.nodes.truncate(nodes);
        self.params.retain(|_, v| *v < values);
        for n in self.taken_log.drain(..) {
            self.taken.remove(&n);
        }
    }

    fn mark(&mut self) -> (usize, usize, usize) {
        self.taken_log.clear();
        (self.g.values.len(), self.g.params.len(), self.g.nodes.len())
    }
}

/// The default-domain opset of a model, checked against the supported range.
fn default_opset(m: &ModelProto) -> Result<i64, OnnxError> {
    let v = m
        .opset_import
        .iter()
        .filter(|o| o.domain.is_empty() || o.domain == "ai.onnx")
        .map(|o| o.version)
        .max()
        .ok_or(OnnxError::NoOpset)?;
    if !(MIN_OPSET..=MAX_OPSET).contains(&v) {
        return Err(OnnxError::Opset {
            found: v,
            min: MIN_OPSET,
            max: MAX_OPSET,
        });
    }
    Ok(v)
}

/// The sample shape of the model input: [batch (any), d1, d2, ...] with fixed positive dims.
fn input_shape(vi: &ValueInfoProto) -> Result<(Vec<usize>, Option<usize>), OnnxError> {
    let bad = |problem: String| OnnxError::Input {
        name: vi.name.clone(),
        problem,
    };
    let Some(TypeValue::TensorType(tt)) = vi.r#type.as_ref().and_then(|t| t.value.as_ref()) else {
        return Err(bad("is not a tensor".into()));
    };
    if tt.elem_type != DataType::Float as i32 {
        let name = DataType::try_from(tt.elem_type)
            .map(|d| d.as_str_name().to_string())
            .unwrap_or_else(|_| format!("#{}", tt.elem_type));
        return Err(bad(format!(
            "has element type {name}; qatlas reads float32 inputs"
        )));
    }
    let Some(shape) = &tt.shape else {
        return Err(bad(
            "has no declared shape; qatlas needs [batch, fixed sample dims]".into(),
        ));
    };
    if shape.dim.is_empty() {
        return Err(bad("is a scalar; qatlas needs a batch axis".into()));
    }
    let batch = match shape.dim[0].value {
        Some(Dim::DimValue(b)) if b > 0 && (b as u64) <= MAX_DIM => Some(b as usize),
        _ => None,
    };
    let mut dims = Vec::new();
    let mut total: u64 = 1;
    for (i, d) in shape.dim.iter().enumerate().skip(1) {
        match d.value {
            Some(Dim::DimValue(v)) if v > 0 && (v as u64) <= MAX_DIM => {
                total = total.saturating_mul(v as u64);
                dims.push(v as usize);
            }
            Some(Dim::DimValue(v)) => {
                return Err(bad(format!("axis {i} has size {v}, outside 1..={MAX_DIM}")));
            }
            _ => {
                return Err(bad(format!(
                    "axis {i} has a symbolic size; qatlas needs a fixed sample shape (only the \
                     batch axis may be symbolic)"
                )));
            }
        }
    }
    if total > MAX_SAMPLE {
        return Err(bad(format!(
            "one sample has {total} elements, more than qatlas accepts ({MAX_SAMPLE})"
        )));
    }
    Ok((dims, batch))
}

/// Unique display names for the nodes: the ONNX name, or `{op_type}_{index}` when it is empty
/// or already used.
fn node_names(g: &GraphProto) -> Vec<String> {
    let mut seen = HashSet::new();
    g.node
        .iter()
        .enumerate()
        .map(|(i, n)| {
            let mut name = if n.name.is_empty() {
                format!("{}_{i}", n.op_type)
            } else {
                n.name.clone()
            };
            if !seen.insert(name.clone()) {
                name = format!("{name}_{i}");
                seen.insert(name.clone());
            }
            name
        })
        .collect()
}

/// Imports an ONNX model from its bytes. The graph's name is the ONNX graph's.
pub fn import_bytes(bytes: &[u8]) -> Result<Graph, OnnxError> {
    import_with_metadata(bytes).map(|(g, _)| g)
}

/// [`import_bytes`], plus the model's `metadata_props` (key, value).
pub fn import_with_metadata(bytes: &[u8]) -> Result<(Graph, Vec<(String, String)>), OnnxError> {
    let model = ModelProto::decode(bytes).map_err(|e| OnnxError::Decode {
        reason: e.to_string(),
    })?;
    let opset = default_opset(&model)?;
    let graph = model.graph.as_ref().ok_or(OnnxError::NoGraph)?;
    let meta = model
        .metadata_props
        .iter()
        .map(|p| (p.key.clone(), p.value.clone()))
        .collect();
    Ok((import_graph(graph, opset)?, meta))
}

fn import_graph(graph: &GraphProto, opset: i64) -> Result<Graph, OnnxError> {
    let names = node_names(graph);
    let mut inits: HashMap<&str, &TensorProto> = HashMap::new();
    for t in &graph.initializer {
        if inits.insert(t.name.as_str(), t).is_some() {
            return Err(OnnxError::Duplicate {
                value: t.name.clone(),
                first: "an initializer".into(),
                second: "another initializer".into(),
            });
        }
    }
    if let Some(s) = graph.sparse_initializer.first() {
        let name = s.values.as_ref().map_or("", |v| v.name.as_str());
        return Err(OnnxError::Tensor {
            node: "<initializers>".into(),
            tensor: name.to_string(),
            problem: "is a sparse initializer, which qatlas does not read".into(),
        });
    }
    let real_inputs: Vec<&ValueInfoProto> = graph
        .input
        .iter()
        .filter(|i| !inits.contains_key(i.name.as_str()))
        .collect();
    let [input] = real_inputs.as_slice() else {
        return Err(OnnxError::InputCount {
            found: real_inputs.len(),
            names: real_inputs
                .iter()
                .map(|i| format!("'{}'", i.name))
                .collect::<Vec<_>>()
                .join(", "),
        });
    };
    let (sample, static_batch) = input_shape(input)?;
    let mut imp = Importer {
        g: Graph {
            name: if graph.name.is_empty() {
                "onnx-model".into()
            } else {
                graph.name.clone()
            },
            values: Vec::new(),
            nodes: Vec::new(),
            params: Vec::new(),
            inputs: Vec::new(),
            outputs: Vec::new(),
            input_shape: sample.clone(),
        },
        shapes: Vec::new(),
        names: HashMap::new(),
        params: HashMap::new(),
        taken: HashSet::new(),
        taken_log: Vec::new(),
        opset,
        static_batch,
        elem_types: HashMap::new(),
        quantized: HashMap::new(),
    };
    // Reserve every ONNX name so generated names never collide with one.
    for n in &graph.node {
        imp.taken
            .extend(n.output.iter().filter(|o| !o.is_empty()).cloned());
    }
    imp.taken.extend(inits.keys().map(|k| k.to_string()));
    imp.taken.insert(input.name.clone());
    let mut shape = vec![static_batch.unwrap_or(1)];
    shape.extend(&sample);
    let x = imp.add_value(input.name.clone(), Source::Input(0), Some(shape));
    imp.g.inputs.push(x);
    imp.names.insert(input.name.as_str(), Val::Value(x));
    for (name, t) in &inits {
        imp.names.insert(name, Val::Init(t));
    }

    let mut defined: HashSet<&str> = inits.keys().copied().collect();
    defined.insert(input.name.as_str());
    let order = super::topo::sort(graph, &defined, &names)?;
    let consumed: HashSet<&str> = graph
        .node
        .iter()
        .flat_map(|n| n.input.iter())
        .chain(graph.output.iter().map(|o| &o.name))
        .map(String::as_str)
        .collect();
    let reg = Registry::global();
    for i in order {
        import_node(&mut imp, reg, &graph.node[i], &names[i], &consumed)?;
    }

    for o in &graph.output {
        match imp.names.get(o.name.as_str()) {
            Some(Val::Value(v)) => imp.g.outputs.push(*v),
            Some(_) => {
                return Err(OnnxError::Output {
                    name: o.name.clone(),
                    problem: "is a constant; qatlas needs outputs computed from the input".into(),
                });
            }
            None => {
                return Err(OnnxError::Output {
                    name: o.name.clone(),
                    problem: "is not produced by any node".into(),
                });
            }
        }
    }
    if imp.g.outputs.is_empty() {
        return Err(OnnxError::Output {
            name: String::new(),
            problem: "the graph declares no outputs".into(),
        });
    }
    validate(&imp.g).map_err(|e| OnnxError::Graph {
        source: Box::new(e),
    })?;
    Ok(imp.g)
}

/// Maps one node through the registry, or keeps it as `Unsupported`.
fn import_node<'m>(
    imp: &mut Importer<'m>,
    reg: &Registry,
    node: &'m NodeProto,
    name: &str,
    consumed: &HashSet<&str>,
) -> Result<(), OnnxError> {
    let default_domain = node.domain.is_empty() || node.domain == "ai.onnx";
    // qatlas nodes have one output: a node whose other outputs are read stays unsupported.
    let extra_outputs_read = node
        .output
        .iter()
        .skip(1)
        .any(|o| !o.is_empty() && consumed.contains(o.as_str()));
    if default_domain && !extra_outputs_read {
        let mut ctx = NodeCtx {
            imp: &mut *imp,
            node,
            name,
            emitted: Vec::new(),
        };
        if let Some(c) = super::fold::fold(&mut ctx)? {
            bind_output(imp, node, name, Out::Const(c), &[]);
            return Ok(());
        }
    }
    let f = reg
        .get(&node.op_type)
        .filter(|_| default_domain && !extra_outputs_read);
    if let Some(f) = f {
        let mark = imp.mark();
        let mut ctx = NodeCtx {
            imp: &mut *imp,
            node,
            name,
            emitted: Vec::new(),
        };
        let out = f(&mut ctx)?;
        let emitted = std::mem::take(&mut ctx.emitted);
        match out {
            Some(out) => {
                bind_output(imp, node, name, out, &emitted);
                return Ok(());
            }
            None => imp.rollback(mark),
        }
    }
    unsupported(imp, node, name, default_domain)
}

/// Binds an import function's result to the node's first output name; the node that produced
/// it takes the ONNX node's name and its value the ONNX output's name.
fn bind_output<'m>(
    imp: &mut Importer<'m>,
    node: &'m NodeProto,
    name: &str,
    out: Out,
    emitted: &[usize],
) {
    let Some(o) = node.output.first().filter(|o| !o.is_empty()) else {
        return;
    };
    match out {
        Out::Const(c) => {
            imp.names.insert(o.as_str(), Val::Const(c));
        }
        Out::Value(v) => {
            if let Source::Node(n) = imp.g.values[v].source
                && emitted.contains(&n)
            {
                imp.g.values[v].name = o.clone();
                imp.g.nodes[n].name = name.to_string();
            }
            if emitted.len() == 1 {
                imp.g.nodes[emitted[0]].name = name.to_string();
            }
            imp.names.insert(o.as_str(), Val::Value(v));
        }
    }
}

/// Keeps a node qatlas cannot run: one `Unsupported` node per output, reading the node's
/// activation inputs and float constants (integer constants, such as shapes, are left out).
fn unsupported<'m>(
    imp: &mut Importer<'m>,
    node: &'m NodeProto,
    name: &str,
    default_domain: bool,
) -> Result<(), OnnxError> {
    let op_type = if default_domain {
        node.op_type.clone()
    } else {
        format!("{}:{}", node.domain, node.op_type)
    };
    let mut inputs = Vec::new();
    for inp in node.input.iter().filter(|s| !s.is_empty()) {
        let val = imp.names.get(inp.as_str()).cloned();
        match val {
            Some(Val::Value(v)) => inputs.push(v),
            Some(Val::Init(_) | Val::Const(_)) => {
                if let Some(&v) = imp.params.get(inp.as_str()) {
                    inputs.push(v);
                    continue;
                }
                let c = match val {
                    Some(Val::Init(t)) => Rc::new(super::tensor::decode(t, name)?),
                    Some(Val::Const(c)) => c,
                    _ => unreachable!(),
                };
                if let Some(t) = c.to_tensor() {
                    let v = imp.add_named_param(inp, t, false);
                    imp.params.insert(inp.clone(), v);
                    inputs.push(v);
                }
            }
            None => {
                return Err(OnnxError::Undefined {
                    node: name.to_string(),
                    op_type: node.op_type.clone(),
                    value: inp.clone(),
                });
            }
        }
    }
    for (k, o) in node
        .output
        .iter()
        .enumerate()
        .filter(|(_, o)| !o.is_empty())
    {
        let node_name = if k == 0 {
            name.to_string()
        } else {
            format!("{name}:{k}")
        };
        let op = OpKind::Unsupported {
            op_type: op_type.clone(),
        };
        let (v, _) = imp
            .add_node(&node_name, op, &inputs, o)
            .expect("unsupported nodes have no shape rule to fail");
        // The ONNX name was reserved; the value takes it exactly.
        imp.g.values[v].name = o.clone();
        imp.names.insert(o.as_str(), Val::Value(v));
    }
    Ok(())
}
