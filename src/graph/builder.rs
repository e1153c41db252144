//! Building graphs in code: values, parameters with PyTorch's default initialisation, and nodes
//! whose shapes are checked as they are added.

use super::{Graph, GraphError, Node, Param, Source, Value, ValueId};
use crate::ops::{BatchNormAttrs, Conv2dAttrs, OpKind};
use crate::tensor::{Tensor, from_vec};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// Incremental graph construction.
pub struct GraphBuilder {
    g: Graph,
    rng: ChaCha8Rng,
}

impl GraphBuilder {
    /// A builder for a model taking samples of `input_shape` (without the batch axis); `seed`
    /// drives parameter initialisation.
    pub fn new(name: &str, input_shape: &[usize], seed: u64) -> Self {
        let g = Graph {
            name: name.to_string(),
            values: Vec::new(),
            nodes: Vec::new(),
            params: Vec::new(),
            inputs: Vec::new(),
            outputs: Vec::new(),
            input_shape: input_shape.to_vec(),
        };
        GraphBuilder {
            g,
            rng: ChaCha8Rng::seed_from_u64(seed),
        }
    }

    fn value(&mut self, name: &str, source: Source) -> ValueId {
        self.g.values.push(Value {
            name: name.to_string(),
            source,
        });
        self.g.values.len() - 1
    }

    /// Declares the next graph input.
    pub fn input(&mut self, name: &str) -> ValueId {
        let i = self.g.inputs.len();
        let v = self.value(name, Source::Input(i));
        self.g.inputs.push(v);
        v
    }

    /// Adds a stored tensor and the value that reads it.
    pub fn param(&mut self, name: &str, tensor: Tensor, trainable: bool) -> ValueId {
        self.g.params.push(Param {
            name: name.to_string(),
            tensor,
            trainable,
        });
        let p = self.g.params.len() - 1;
        self.value(name, Source::Param(p))
    }

    /// Adds a node; its output value is named after it.
    pub fn node(&mut self, name: &str, op: OpKind, inputs: &[ValueId]) -> ValueId {
        let idx = self.g.nodes.len();
        let out = self.value(name, Source::Node(idx));
        self.g.nodes.push(Node {
            name: name.to_string(),
            op,
            inputs: inputs.to_vec(),
            output: out,
        });
        out
    }

    /// U(-b, b) with b = 1/sqrt(fan_in): PyTorch's default for Conv and Linear weights and biases.
    fn uniform(&mut self, shape: &[usize], fan_in: usize) -> Tensor {
        let b = 1.0 / (fan_in.max(1) as f32).sqrt();
        let n = shape.iter().product();
        from_vec(
            shape,
            (0..n).map(|_| self.rng.random_range(-b..b)).collect(),
        )
    }

    /// Conv2d with a `k x k` kernel; weights initialised like PyTorch's.
    pub fn conv(
        &mut self,
        name: &str,
        x: ValueId,
        cin: usize,
        cout: usize,
        k: usize,
        attrs: Conv2dAttrs,
        bias: bool,
    ) -> ValueId {
        let fan_in = cin / attrs.groups * k * k;
        let w = self.uniform(&[cout, cin / attrs.groups, k, k], fan_in);
        let wv = self.param(&format!("{name}.weight"), w, true);
        let mut ins = vec![x, wv];
        if bias {
            let b = self.uniform(&[cout], fan_in);
            ins.push(self.param(&format!("{name}.bias"), b, true));
        }
        self.node(name, OpKind::Conv2d(attrs), &ins)
    }

    /// Linear `in -> out` with bias.
    pub fn linear(&mut self, name: &str, x: ValueId, fin: usize, fout: usize) -> ValueId {
        let w = self.uniform(&[fout, fin], fin);
        let b = self.uniform(&[fout], fin);
        let wv = self.param(&format!("{name}.weight"), w, true);
        let bv = self.param(&format!("{name}.bias"), b, true);
        self.node(name, OpKind::Linear, &[x, wv, bv])
    }

    /// BatchNorm over `c` channels: gamma 1, beta 0, running mean 0, running var 1.
    pub fn batchnorm(&mut self, name: &str, x: ValueId, c: usize) -> ValueId {
        let g = self.param(
            &format!("{name}.weight"),
            Tensor::ones(ndarray::IxDyn(&[c])),
            true,
        );
        let b = self.param(
            &format!("{name}.bias"),
            Tensor::zeros(ndarray::IxDyn(&[c])),
            true,
        );
        let m = self.param(
            &format!("{name}.running_mean"),
            Tensor::zeros(ndarray::IxDyn(&[c])),
            false,
        );
        let v = self.param(
            &format!("{name}.running_var"),
            Tensor::ones(ndarray::IxDyn(&[c])),
            false,
        );
        self.node(
            name,
            OpKind::BatchNorm2d(BatchNormAttrs::default()),
            &[x, g, b, m, v],
        )
    }

    /// Single-input op.
    pub fn unary(&mut self, name: &str, op: OpKind, x: ValueId) -> ValueId {
        self.node(name, op, &[x])
    }

    /// Marks a graph output and validates the whole graph.
    pub fn finish(mut self, outputs: &[ValueId]) -> Result<Graph, GraphError> {
        self.g.outputs = outputs.to_vec();
        validate(&self.g)?;
        Ok(self.g)
    }
}

/// Checks that names are unique, nodes only read values defined before them, and shapes agree.
pub fn validate(g: &Graph) -> Result<(), GraphError> {
    let mut seen = std::collections::HashSet::new();
    for v in &g.values {
        if !seen.insert(v.name.as_str()) {
            return Err(GraphError::Duplicate {
                value: v.name.clone(),
            });
        }
    }
    for (i, n) in g.nodes.iter().enumerate() {
        for &v in &n.inputs {
            let ok = match g.values.get(v).map(|x| x.source) {
                Some(Source::Node(j)) => j < i,
                Some(Source::Param(p)) => p < g.params.len(),
                Some(Source::Input(k)) => k < g.inputs.len(),
                None => false,
            };
            if !ok {
                let value = g
                    .values
                    .get(v)
                    .map(|x| x.name.clone())
                    .unwrap_or_else(|| format!("#{v}"));
                return Err(GraphError::Undefined {
                    node: n.name.clone(),
                    value,
                });
            }
        }
    }
    if g.outputs.is_empty() || g.outputs.iter().any(|&o| o >= g.values.len()) {
        return Err(GraphError::Undefined {
            node: "<outputs>".into(),
            value: "graph output".into(),
        });
    }
    g.infer_shapes(1)?;
    Ok(())
}
