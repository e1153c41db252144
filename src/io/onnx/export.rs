//! Typed graph -> ONNX `ModelProto` (float32), opset 17 by default.
//!
//! Every parameter becomes an initializer (little-endian `raw_data`); ops map back to their ONNX
//! forms (Linear -> Gemm with transB = 1, BatchNorm2d -> BatchNormalization with ONNX's momentum
//! convention, Clip bounds and Reshape/Dropout operands as initializers named after the node).
//! The input's batch axis is symbolic ("batch"); output shapes are declared with the axes that
//! follow the batch size symbolic too. Fake quantizers of a quantized model become QDQ pairs
//! (`qdq.rs`). An `Unsupported` node cannot be exported: the error names
//! it.

use super::OnnxError;
use super::proto::{
    AttributeProto, GraphProto, ModelProto, NodeProto, OperatorSetIdProto, TensorProto,
    TensorShapeProto, TypeProto, ValueInfoProto, attribute_proto::AttributeType,
    tensor_proto::DataType, tensor_shape_proto::Dimension, tensor_shape_proto::dimension,
    type_proto,
};
use super::tensor::{encode_f32, encode_i64};
use crate::graph::Graph;
use crate::ops::OpKind;
use crate::tensor::slice;
use prost::Message;

/// The opset written when none is asked for.
pub const DEFAULT_OPSET: i64 = 17;
/// Opsets the exporter can write (the ops it emits have the same form across them).
pub const EXPORT_OPSETS: std::ops::RangeInclusive<i64> = 13..=21;

/// The IR version that goes with an opset (the lowest that allows it).
fn ir_version(opset: i64) -> i64 {
    match opset {
        ..=14 => 7,
        15..=18 => 8,
        19..=20 => 9,
        _ => 10,
    }
}

fn attr_int(name: &str, i: i64) -> AttributeProto {
    AttributeProto {
        name: name.into(),
        r#type: AttributeType::Int as i32,
        i,
        ..Default::default()
    }
}

fn attr_float(name: &str, f: f32) -> AttributeProto {
    AttributeProto {
        name: name.into(),
        r#type: AttributeType::Float as i32,
        f,
        ..Default::default()
    }
}

fn attr_ints(name: &str, v: &[usize]) -> AttributeProto {
    AttributeProto {
        name: name.into(),
        r#type: AttributeType::Ints as i32,
        ints: v.iter().map(|&x| x as i64).collect(),
        ..Default::default()
    }
}

/// A float tensor type with `dims` (`None`: symbolic "batch").
fn tensor_type(dims: &[Option<usize>]) -> TypeProto {
    let dim = dims
        .iter()
        .map(|d| Dimension {
            value: Some(match d {
                Some(v) => dimension::Value::DimValue(*v as i64),
                None => dimension::Value::DimParam("batch".into()),
            }),
            ..Default::default()
        })
        .collect();
    TypeProto {
        value: Some(type_proto::Value::TensorType(type_proto::Tensor {
            elem_type: DataType::Float as i32,
            shape: Some(TensorShapeProto { dim }),
        })),
        ..Default::default()
    }
}

/// `op_type` if the opset has it, else an error naming the node.
fn needs_opset(
    n: &crate::graph::Node,
    op_type: &'static str,
    since: i64,
    opset: i64,
) -> Result<&'static str, OnnxError> {
    if opset >= since {
        return Ok(op_type);
    }
    Err(OnnxError::Export {
        node: n.name.clone(),
        op: op_type.into(),
        problem: format!("{op_type} needs opset {since} or later (asked: {opset})"),
    })
}

/// Encodes `g` as an ONNX model of the given opset.
pub fn export_model(g: &Graph, opset: i64) -> Result<ModelProto, OnnxError> {
    if !EXPORT_OPSETS.contains(&opset) {
        return Err(OnnxError::ExportGraph {
            problem: format!(
                "opset {opset} is not supported for export (choose {} to {})",
                EXPORT_OPSETS.start(),
                EXPORT_OPSETS.end()
            ),
        });
    }
    if let Some(n) = g
        .nodes
        .iter()
        .find(|n| matches!(n.op, OpKind::Unsupported { .. }))
    {
        return Err(OnnxError::Export {
            node: n.name.clone(),
            op: n.op.name().to_string(),
            problem: "qatlas cannot run this operator, so it cannot write it either".into(),
        });
    }
    if g.inputs.len() != 1 {
        return Err(OnnxError::ExportGraph {
            problem: format!("the graph has {} inputs, expected 1", g.inputs.len()),
        });
    }
    // Output shapes at two batch sizes: the axes that differ follow the batch.
    let s1 = g.infer_shapes(1).map_err(|e| OnnxError::Graph {
        source: Box::new(e),
    })?;
    let s2 = g.infer_shapes(2).map_err(|e| OnnxError::Graph {
        source: Box::new(e),
    })?;
    let name = |v: usize| g.values[v].name.clone();
    // Scales and zero points of fake quantizers are written by `qdq` in their ONNX types.
    let mut qparam = vec![false; g.values.len()];
    for n in &g.nodes {
        if matches!(n.op, OpKind::FakeQuant(_)) {
            n.inputs[1..].iter().for_each(|&v| qparam[v] = true);
        }
    }
    let mut used_otherwise = vec![false; g.values.len()];
    for n in &g.nodes {
        let skip = usize::from(matches!(n.op, OpKind::FakeQuant(_)));
        n.inputs
            .iter()
            .enumerate()
            .filter(|(k, _)| skip == 0 || *k == 0)
            .for_each(|(_, &v)| used_otherwise[v] = true);
    }
    // A weight read only by its fake quantizer is written in its quantized storage type (the
    // quantizer's output as an INT8/INT4/FLOAT16 initializer), not as f32.
    let mut readers = vec![0usize; g.values.len()];
    for n in &g.nodes {
        n.inputs.iter().for_each(|&v| readers[v] += 1);
    }
    let stored = |n: &crate::graph::Node| {
        let w = n.inputs[0];
        g.param_of(w).is_some() && readers[w] == 1 && !g.outputs.contains(&w)
    };
    let mut skip_param = vec![false; g.params.len()];
    for n in &g.nodes {
        if matches!(n.op, OpKind::FakeQuant(_)) && stored(n) {
            skip_param[g.param_of(n.inputs[0]).expect("a stored weight")] = true;
        }
    }
    for (v, val) in g.values.iter().enumerate() {
        if let crate::graph::Source::Param(p) = val.source
            && qparam[v]
            && !used_otherwise[v]
        {
            skip_param[p] = true;
        }
    }
    let mut initializer: Vec<TensorProto> = g
        .params
        .iter()
        .zip(&skip_param)
        .filter(|(_, skip)| !**skip)
        .map(|(p, _)| encode_f32(&p.name, p.tensor.shape(), slice(&p.tensor)))
        .collect();
    let mut node = Vec::with_capacity(g.nodes.len());
    for n in &g.nodes {
        if let OpKind::FakeQuant(a) = &n.op {
            let (nodes, inits) = super::qdq::fake_quant(g, n, a, name(n.output), opset, stored(n))?;
            node.extend(nodes);
            initializer.extend(inits);
            continue;
        }
        let mut input: Vec<String> = n.inputs.iter().map(|&v| name(v)).collect();
        let mut attribute = Vec::new();
        // A constant operand named after the node.
        let mut extra = |suffix: &str, t: TensorProto| {
            let nm = format!("{}.{suffix}", n.name);
            initializer.push(TensorProto {
                name: nm.clone(),
                ..t
            });
            nm
        };
        let op_type = match &n.op {
            OpKind::Conv2d(a) => {
                let w = &s1[n.inputs[1]];
                attribute.extend([
                    attr_ints("dilations", &a.dilation),
                    attr_int("group", a.groups as i64),
                    attr_ints("kernel_shape", &w[2..4]),
                    attr_ints("pads", &a.pads),
                    attr_ints("strides", &a.stride),
                ]);
                "Conv"
            }
            OpKind::Linear => {
                attribute.extend([
                    attr_float("alpha", 1.0),
                    attr_float("beta", 1.0),
                    attr_int("transB", 1),
                ]);
                "Gemm"
            }
            OpKind::MatMul => "MatMul",
            OpKind::BatchNorm2d(a) => {
                attribute.extend([
                    attr_float("epsilon", a.eps),
                    attr_float("momentum", 1.0 - a.momentum),
                ]);
                "BatchNormalization"
            }
            OpKind::Relu => "Relu",
            OpKind::Clip(a) => {
                let mut bound = |suffix: &str, v: f32| {
                    if v.is_finite() {
                        extra(suffix, encode_f32("", &[], &[v]))
                    } else {
                        String::new()
                    }
                };
                let (lo, hi) = (bound("min", a.min), bound("max", a.max));
                input.push(lo);
                input.push(hi);
                while input.last().is_some_and(String::is_empty) {
                    input.pop();
                }
                "Clip"
            }
            OpKind::MaxPool2d(a) | OpKind::AvgPool2d(a) => {
                attribute.extend([
                    attr_int("ceil_mode", a.ceil_mode as i64),
                    attr_ints("kernel_shape", &a.kernel),
                    attr_ints("pads", &a.pads),
                    attr_ints("strides", &a.stride),
                ]);
                if matches!(n.op, OpKind::AvgPool2d(_)) {
                    attribute.push(attr_int("count_include_pad", a.count_include_pad as i64));
                    "AveragePool"
                } else {
                    "MaxPool"
                }
            }
            OpKind::GlobalAvgPool => "GlobalAveragePool",
            OpKind::Add => "Add",
            OpKind::Mul => "Mul",
            OpKind::Flatten(a) => {
                attribute.push(attr_int("axis", a.axis as i64));
                "Flatten"
            }
            OpKind::Reshape(a) => {
                input.push(extra("shape", encode_i64("", &a.shape)));
                "Reshape"
            }
            OpKind::Dropout(a) => {
                input.push(extra("ratio", encode_f32("", &[], &[a.p])));
                "Dropout"
            }
            OpKind::Softmax(a) => {
                attribute.push(attr_int("axis", a.axis));
                "Softmax"
            }
            OpKind::Sigmoid => "Sigmoid",
            OpKind::HardSigmoid(a) => {
                attribute.extend([attr_float("alpha", a.alpha), attr_float("beta", a.beta)]);
                "HardSigmoid"
            }
            OpKind::HardSwish => needs_opset(n, "HardSwish", 14, opset)?,
            OpKind::Concat(a) => {
                attribute.push(attr_int("axis", a.axis));
                "Concat"
            }
            OpKind::Erf => "Erf",
            OpKind::LayerNorm(a) => {
                attribute.extend([attr_int("axis", a.axis), attr_float("epsilon", a.eps)]);
                needs_opset(n, "LayerNormalization", 17, opset)?
            }
            OpKind::Lrn(a) => {
                attribute.extend([
                    attr_int("size", a.size as i64),
                    attr_float("alpha", a.alpha),
                    attr_float("beta", a.beta),
                    attr_float("bias", a.bias),
                ]);
                "LRN"
            }
            OpKind::Transpose(a) => {
                attribute.push(attr_ints("perm", &a.perm));
                "Transpose"
            }
            OpKind::Slice(a) => {
                input.push(extra("starts", encode_i64("", &[a.start])));
                input.push(extra("ends", encode_i64("", &[a.end])));
                input.push(extra("axes", encode_i64("", &[a.axis as i64])));
                input.push(extra("steps", encode_i64("", &[a.step])));
                "Slice"
            }
            OpKind::Unsupported { .. } => unreachable!("rejected above"),
            #[allow(unreachable_patterns)]
            other => {
                return Err(OnnxError::Export {
                    node: n.name.clone(),
                    op: other.name().to_string(),
                    problem: "this op has no float ONNX form in this exporter".into(),
                });
            }
        };
        node.push(NodeProto {
            name: n.name.clone(),
            op_type: op_type.into(),
            input,
            output: vec![name(n.output)],
            attribute,
            ..Default::default()
        });
    }
    let mut in_dims = vec![None];
    in_dims.extend(g.input_shape.iter().map(|&d| Some(d)));
    let input = vec![ValueInfoProto {
        name: name(g.inputs[0]),
        r#type: Some(tensor_type(&in_dims)),
        ..Default::default()
    }];
    let output = g
        .outputs
        .iter()
        .map(|&o| {
            let dims: Vec<Option<usize>> = s1[o]
                .iter()
                .zip(&s2[o])
                .map(|(&a, &b)| (a == b).then_some(a))
                .collect();
            ValueInfoProto {
                name: name(o),
                r#type: Some(tensor_type(&dims)),
                ..Default::default()
            }
        })
        .collect();
    Ok(ModelProto {
        ir_version: ir_version(opset),
        opset_import: vec![OperatorSetIdProto {
            domain: String::new(),
            version: opset,
        }],
        producer_name: "qatlas".into(),
        producer_version: env!("CARGO_PKG_VERSION").into(),
        graph: Some(GraphProto {
            name: g.name.clone(),
            node,
            initializer,
            input,
            output,
            ..Default::default()
        }),
        ..Default::default()
    })
}

/// Encodes `g` as ONNX protobuf bytes.
pub fn export_bytes(g: &Graph, opset: i64) -> Result<Vec<u8>, OnnxError> {
    Ok(export_model(g, opset)?.encode_to_vec())
}
