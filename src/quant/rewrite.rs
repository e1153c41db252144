//! Building a new graph from an old one node by node while keeping value names: the shared
//! machinery of BatchNorm folding and fake-quant insertion. Parameters of the old graph are
//! copied lazily, on first use, so parameters nobody reads any more (folded BatchNorm
//! statistics) disappear. Depends on `graph` and `ops`.

use crate::graph::{Graph, GraphError, Node, Param, Source, Value, ValueId, builder::validate};
use crate::ops::OpKind;
use crate::tensor::Tensor;
use std::collections::HashSet;

/// A graph under construction from `src`.
pub(crate) struct Rewriter<'a> {
    pub src: &'a Graph,
    pub g: Graph,
    /// Old value -> new value, once mapped.
    map: Vec<Option<ValueId>>,
    names: HashSet<String>,
}

impl<'a> Rewriter<'a> {
    /// Starts a graph with the same name, input shape and inputs as `src`.
    pub fn new(src: &'a Graph) -> Self {
        let mut r = Rewriter {
            src,
            g: Graph {
                name: src.name.clone(),
                values: Vec::new(),
                nodes: Vec::new(),
                params: Vec::new(),
                inputs: Vec::new(),
                outputs: Vec::new(),
                input_shape: src.input_shape.clone(),
            },
            map: vec![None; src.values.len()],
            names: src.values.iter().map(|v| v.name.clone()).collect(),
        };
        for (i, &v) in src.inputs.iter().enumerate() {
            let nv = r.push_value(&src.values[v].name.clone(), Source::Input(i));
            r.g.inputs.push(nv);
            r.map[v] = Some(nv);
        }
        r
    }

    fn push_value(&mut self, name: &str, source: Source) -> ValueId {
        self.g.values.push(Value {
            name: name.to_string(),
            source,
        });
        self.g.values.len() - 1
    }

    /// A name not used by the old graph nor by anything added so far (`base`, `base.2`, ...).
    pub fn unique(&mut self, base: &str) -> String {
        let mut name = base.to_string();
        let mut k = 2;
        while self.names.contains(&name) {
            name = format!("{base}.{k}");
            k += 1;
        }
        self.names.insert(name.clone());
        name
    }

    /// The new value standing for old value `v` (copying a parameter on first use).
    pub fn get(&mut self, v: ValueId) -> ValueId {
        if let Some(nv) = self.map[v] {
            return nv;
        }
        match self.src.values[v].source {
            Source::Param(p) => {
                let sp = &self.src.params[p];
                let nv = self.add_param_named(
                    &self.src.values[v].name.clone(),
                    sp.tensor.clone(),
                    sp.trainable,
                );
                self.map[v] = Some(nv);
                nv
            }
            // Nodes are added in order, so their outputs are mapped before being read; inputs
            // are mapped in `new`. Reaching here means the source graph was not topological.
            _ => unreachable!(
                "value '{}' read before it is defined",
                self.src.values[v].name
            ),
        }
    }

    /// Redirects readers of old value `v` to new value `nv`.
    pub fn set(&mut self, v: ValueId, nv: ValueId) {
        self.map[v] = Some(nv);
    }

    /// Adds a parameter under an exact name (the caller guarantees it is unique).
    pub fn add_param_named(&mut self, name: &str, tensor: Tensor, trainable: bool) -> ValueId {
        self.names.insert(name.to_string());
        self.g.params.push(Param {
            name: name.to_string(),
            tensor,
            trainable,
        });
        let p = self.g.params.len() - 1;
        self.push_value(name, Source::Param(p))
    }

    /// Adds a node whose output value is called `out_name`; returns the output value.
    pub fn node(
        &mut self,
        name: &str,
        op: OpKind,
        inputs: Vec<ValueId>,
        out_name: &str,
    ) -> ValueId {
        self.names.insert(name.to_string());
        self.names.insert(out_name.to_string());
        let idx = self.g.nodes.len();
        let out = self.push_value(out_name, Source::Node(idx));
        self.g.nodes.push(Node {
            name: name.to_string(),
            op,
            inputs,
            output: out,
        });
        out
    }

    /// Copies old node `i` with its inputs mapped; maps its output; returns the new output.
    pub fn copy_node(&mut self, i: usize) -> ValueId {
        let n = &self.src.nodes[i];
        let inputs: Vec<ValueId> = n.inputs.clone().into_iter().map(|v| self.get(v)).collect();
        let (name, op, out) = (n.name.clone(), n.op.clone(), n.output);
        let out_name = self.src.values[out].name.clone();
        let nv = self.node(&name, op, inputs, &out_name);
        self.map[out] = Some(nv);
        nv
    }

    /// Index the next node added will get.
    pub fn next_node(&self) -> usize {
        self.g.nodes.len()
    }

    /// Sets the outputs (mapped from the old graph's) and validates.
    pub fn finish(mut self) -> Result<(Graph, Vec<Option<ValueId>>), GraphError> {
        self.g.outputs = self.src.outputs.iter().map(|&o| self.get(o)).collect();
        validate(&self.g)?;
        Ok((self.g, self.map))
    }
}

/// Readers of each value: `(node, input index)` pairs.
pub fn readers(g: &Graph) -> Vec<Vec<(usize, usize)>> {
    let mut r = vec![Vec::new(); g.values.len()];
    for (ni, n) in g.nodes.iter().enumerate() {
        for (k, &v) in n.inputs.iter().enumerate() {
            r[v].push((ni, k));
        }
    }
    r
}
