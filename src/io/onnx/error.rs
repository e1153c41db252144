//! Errors of ONNX import and export. Each names the node (and tensor or attribute) involved; the
//! file is added by [`crate::io::IoError::Onnx`], which wraps these for the caller.

use crate::graph::GraphError;
use crate::ops::OpError;
use thiserror::Error;

/// An ONNX model could not be imported or a graph could not be exported.
#[derive(Debug, Error)]
pub enum OnnxError {
    #[error("not an ONNX model (the bytes do not decode as an ONNX ModelProto: {reason})")]
    Decode { reason: String },
    #[error("the ONNX model has no graph")]
    NoGraph,
    #[error("the ONNX model does not import the default operator set (ai.onnx)")]
    NoOpset,
    #[error("ONNX opset {found} is not supported (qatlas reads opsets {min} to {max})")]
    Opset { found: i64, min: i64, max: i64 },
    #[error(
        "the graph has {found} inputs that are not initializers ({names}); qatlas reads models \
         with exactly one input"
    )]
    InputCount { found: usize, names: String },
    #[error("graph input '{name}': {problem}")]
    Input { name: String, problem: String },
    #[error("graph output '{name}': {problem}")]
    Output { name: String, problem: String },
    #[error(
        "node '{node}' ({op_type}) reads '{value}', which no initializer, graph input or node \
         output defines"
    )]
    Undefined {
        node: String,
        op_type: String,
        value: String,
    },
    #[error("value '{value}' is defined twice ({first}, then {second})")]
    Duplicate {
        value: String,
        first: String,
        second: String,
    },
    #[error(
        "the graph has a cycle: node '{node}' ({op_type}) depends on its own output through \
         {others} other node(s) (ONNX graphs must be acyclic)"
    )]
    Cycle {
        node: String,
        op_type: String,
        others: usize,
    },
    #[error("node '{node}': tensor '{tensor}' {problem}")]
    Tensor {
        node: String,
        tensor: String,
        problem: String,
    },
    #[error("node '{node}': tensor '{tensor}' has data type {data_type}, {problem}")]
    DataType {
        node: String,
        tensor: String,
        data_type: i32,
        problem: String,
    },
    #[error("node '{node}' ({op_type}): attribute '{attr}' {problem}")]
    Attribute {
        node: String,
        op_type: String,
        attr: String,
        problem: String,
    },
    #[error("node '{node}' ({op_type}): {problem}")]
    Node {
        node: String,
        op_type: String,
        problem: String,
    },
    #[error("node '{node}' ({op_type}): {source}")]
    Op {
        node: String,
        op_type: String,
        source: Box<OpError>,
    },
    #[error("invalid graph: {source}")]
    Graph { source: Box<GraphError> },
    #[error("node '{node}' ({op}) cannot be exported to ONNX: {problem}")]
    Export {
        node: String,
        op: String,
        problem: String,
    },
    #[error("cannot export to ONNX: {problem}")]
    ExportGraph { problem: String },
}
