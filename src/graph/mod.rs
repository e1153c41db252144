//! The typed computation graph: nodes carrying an [`OpKind`], named value edges, parameters, and
//! a topological executor with reverse-mode differentiation (the autograd engine).
//!
//! The graph imports the ops, never the reverse. It knows nothing of files, datasets or the GUI.

pub mod builder;
pub mod error;
pub mod exec;
pub mod summary;

pub use builder::GraphBuilder;
pub use error::GraphError;
pub use exec::{Grads, Trace};
pub use summary::{LayerSummary, summarize};

use crate::ops::OpKind;
use crate::tensor::Tensor;
use serde::{Deserialize, Serialize};

/// Index of a value (edge) in [`Graph::values`].
pub type ValueId = usize;
/// Index of a parameter in [`Graph::params`].
pub type ParamId = usize;

/// Where a value comes from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Source {
    /// The i-th graph input.
    Input(usize),
    /// A stored parameter or buffer.
    Param(ParamId),
    /// The output of a node.
    Node(usize),
}

/// A named edge of the graph.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Value {
    pub name: String,
    pub source: Source,
}

/// A node: one op, its input values, its single output value.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Node {
    pub name: String,
    pub op: OpKind,
    pub inputs: Vec<ValueId>,
    pub output: ValueId,
}

/// A stored tensor: a trainable weight, or a buffer such as BatchNorm running statistics.
#[derive(Clone, Debug)]
pub struct Param {
    pub name: String,
    pub tensor: Tensor,
    pub trainable: bool,
}

/// A whole model: nodes in topological order, values, parameters, inputs and outputs.
///
/// Invariants (checked by [`GraphBuilder::finish`] and by loaders): every node's inputs are
/// defined before it; every value has exactly one source; parameter shapes fit their ops.
#[derive(Clone, Debug)]
pub struct Graph {
    pub name: String,
    pub values: Vec<Value>,
    pub nodes: Vec<Node>,
    pub params: Vec<Param>,
    pub inputs: Vec<ValueId>,
    pub outputs: Vec<ValueId>,
    /// Shape of one input sample, without the batch axis (e.g. [1, 28, 28]).
    pub input_shape: Vec<usize>,
}

impl Graph {
    /// Number of trainable scalars.
    pub fn num_trainable(&self) -> usize {
        self.params
            .iter()
            .filter(|p| p.trainable)
            .map(|p| p.tensor.len())
            .sum()
    }

    /// Finds a parameter by name.
    pub fn param(&self, name: &str) -> Option<&Param> {
        self.params.iter().find(|p| p.name == name)
    }

    /// The parameter behind a value, if it is one.
    pub fn param_of(&self, v: ValueId) -> Option<ParamId> {
        match self.values[v].source {
            Source::Param(p) => Some(p),
            _ => None,
        }
    }

    /// Shapes of every value for a given batch size, by the ops' shape rules.
    pub fn infer_shapes(&self, batch: usize) -> Result<Vec<Vec<usize>>, GraphError> {
        let mut shapes: Vec<Option<Vec<usize>>> = vec![None; self.values.len()];
        for (i, v) in self.values.iter().enumerate() {
            match v.source {
                Source::Param(p) => shapes[i] = Some(self.params[p].tensor.shape().to_vec()),
                Source::Input(_) => {
                    let mut s = vec![batch];
                    s.extend(&self.input_shape);
                    shapes[i] = Some(s);
                }
                Source::Node(_) => {}
            }
        }
        // Shapes at and downstream of an op qatlas cannot run (an imported `Unsupported` node)
        // are unknown; they are returned empty.
        let mut unknown = vec![false; self.values.len()];
        for node in &self.nodes {
            if matches!(node.op, OpKind::Unsupported { .. })
                || node.inputs.iter().any(|&v| unknown[v])
            {
                unknown[node.output] = true;
                continue;
            }
            let ins: Vec<&[usize]> = node
                .inputs
                .iter()
                .map(|&v| {
                    shapes[v].as_deref().ok_or_else(|| GraphError::Undefined {
                        node: node.name.clone(),
                        value: self.values[v].name.clone(),
                    })
                })
                .collect::<Result<_, _>>()?;
            let out = node.op.output_shape(&ins).map_err(|e| GraphError::Op {
                node: node.name.clone(),
                source: e,
            })?;
            shapes[node.output] = Some(out);
        }
        Ok(shapes.into_iter().map(|s| s.unwrap_or_default()).collect())
    }
}
