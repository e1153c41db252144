//! Topological execution of a [`Graph`] and reverse-mode differentiation over the recorded trace.
//!
//! Forward runs nodes in order, keeping every activation and each op's saved state when a
//! backward pass will follow (otherwise freeing each value after its last use). Backward walks the
//! nodes in reverse, asks each op for the gradients of the inputs that need one, and sums
//! gradients that meet at a value (residual branches).

use super::{Graph, GraphError, ParamId, Source, ValueId};
use crate::ops::{FwdCtx, Mode, Saved};
use crate::tensor::Tensor;
use rand_chacha::ChaCha8Rng;

/// The record of one forward pass.
pub struct Trace {
    /// Activations by value id (`None` for parameters, and for freed values in inference).
    values: Vec<Option<Tensor>>,
    saved: Vec<Saved>,
    /// New parameter values produced by the pass (BatchNorm running statistics in training).
    pub updates: Vec<(ParamId, Tensor)>,
    pub mode: Mode,
}

impl Trace {
    /// The activation of a value, if it was kept.
    pub fn value(&self, v: ValueId) -> Option<&Tensor> {
        self.values.get(v).and_then(|t| t.as_ref())
    }

    /// Takes the graph's i-th output out of the trace.
    pub fn output(&self, g: &Graph, i: usize) -> Option<&Tensor> {
        g.outputs.get(i).and_then(|&v| self.value(v))
    }
}

/// Gradients of a loss with respect to the parameters (`None` for buffers and unused ones).
pub struct Grads {
    pub params: Vec<Option<Tensor>>,
}

impl Graph {
    fn tensor<'a>(&'a self, values: &'a [Option<Tensor>], v: ValueId) -> Option<&'a Tensor> {
        match self.values[v].source {
            Source::Param(p) => Some(&self.params[p].tensor),
            _ => values[v].as_ref(),
        }
    }

    fn check_inputs(&self, inputs: &[Tensor]) -> Result<(), GraphError> {
        if inputs.len() != self.inputs.len() {
            return Err(GraphError::Inputs {
                expected: self.inputs.len(),
                found: inputs.len(),
            });
        }
        for x in inputs {
            if x.ndim() != self.input_shape.len() + 1 || x.shape()[1..] != self.input_shape[..] {
                return Err(GraphError::InputShape {
                    expected: self.input_shape.clone(),
                    found: x.shape().to_vec(),
                });
            }
        }
        Ok(())
    }

    /// Runs the graph forward. With `need_backward`, keeps what [`Graph::backward`] needs.
    pub fn forward(
        &self,
        inputs: &[Tensor],
        mode: Mode,
        need_backward: bool,
        rng: &mut ChaCha8Rng,
    ) -> Result<Trace, GraphError> {
        self.forward_tapped(inputs, mode, need_backward, rng, &mut |_, _| {})
    }

    /// [`Graph::forward`] that also shows each graph input and node output to `tap` as it is
    /// produced (observers and analysis read activations this way without keeping them).
    pub fn forward_tapped(
        &self,
        inputs: &[Tensor],
        mode: Mode,
        need_backward: bool,
        rng: &mut ChaCha8Rng,
        tap: &mut dyn FnMut(ValueId, &Tensor),
    ) -> Result<Trace, GraphError> {
        self.check_inputs(inputs)?;
        let mut values: Vec<Option<Tensor>> = vec![None; self.values.len()];
        for (i, &v) in self.inputs.iter().enumerate() {
            let x = crate::tensor::standard(inputs[i].clone());
            tap(v, &x);
            values[v] = Some(x);
        }
        // Remaining uses of each value, to free activations early during inference.
        let mut uses = vec![0usize; self.values.len()];
        for n in &self.nodes {
            for &i in &n.inputs {
                uses[i] += 1;
            }
        }
        for &o in &self.outputs {
            uses[o] += 1;
        }
        let mut saved = Vec::with_capacity(self.nodes.len());
        let mut updates = Vec::new();
        for node in &self.nodes {
            let ins: Vec<&Tensor> = node
                .inputs
                .iter()
                .map(|&v| {
                    self.tensor(&values, v)
                        .ok_or_else(|| GraphError::Undefined {
                            node: node.name.clone(),
                            value: self.values[v].name.clone(),
                        })
                })
                .collect::<Result<_, _>>()?;
            let mut ctx = FwdCtx {
                mode,
                need_backward,
                rng,
            };
            let f = node
                .op
                .forward(&ins, &mut ctx)
                .map_err(|e| GraphError::Op {
                    node: node.name.clone(),
                    source: e,
                })?;
            for (idx, t) in f.updates {
                if let Some(p) = self.param_of(node.inputs[idx]) {
                    updates.push((p, t));
                }
            }
            tap(node.output, &f.output);
            values[node.output] = Some(f.output);
            saved.push(if need_backward { f.saved } else { Saved::None });
            if !need_backward {
                for &v in &node.inputs {
                    uses[v] -= 1;
                    if uses[v] == 0
                        && matches!(self.values[v].source, Source::Node(_) | Source::Input(_))
                    {
                        values[v] = None;
                    }
                }
            }
        }
        Ok(Trace {
            values,
            saved,
            updates,
            mode,
        })
    }

    /// Inference on one batch: the first output, intermediates freed as soon as possible.
    pub fn infer(&self, x: &Tensor) -> Result<Tensor, GraphError> {
        let mut rng = <ChaCha8Rng as rand::SeedableRng>::seed_from_u64(0);
        let mut t = self.forward(std::slice::from_ref(x), Mode::Eval, false, &mut rng)?;
        let o = self.outputs[0];
        Ok(t.values[o].take().expect("graph output is kept"))
    }

    /// Applies running-statistic updates recorded by a training forward pass.
    pub fn apply_updates(&mut self, updates: Vec<(ParamId, Tensor)>) {
        for (p, t) in updates {
            self.params[p].tensor = t;
        }
    }

    /// Which values carry a gradient (depend on a trainable parameter).
    pub fn requires_grad(&self) -> Vec<bool> {
        let mut rg: Vec<bool> = self
            .values
            .iter()
            .map(|v| matches!(v.source, Source::Param(p) if self.params[p].trainable))
            .collect();
        for n in &self.nodes {
            rg[n.output] = n.inputs.iter().any(|&i| rg[i]);
        }
        rg
    }

    /// Back-propagates `grad_output` (d loss / d first output) through the trace.
    pub fn backward(&self, trace: &Trace, grad_output: Tensor) -> Result<Grads, GraphError> {
        let rg = self.requires_grad();
        let mut grads: Vec<Option<Tensor>> = vec![None; self.values.len()];
        grads[self.outputs[0]] = Some(grad_output);
        for (ni, node) in self.nodes.iter().enumerate().rev() {
            let Some(gout) = grads[node.output].take() else {
                continue;
            };
            let ins: Vec<&Tensor> = node
                .inputs
                .iter()
                .map(|&v| {
                    self.tensor(&trace.values, v)
                        .ok_or_else(|| GraphError::Undefined {
                            node: node.name.clone(),
                            value: self.values[v].name.clone(),
                        })
                })
                .collect::<Result<_, _>>()?;
            let out = trace.values[node.output]
                .as_ref()
                .ok_or_else(|| GraphError::Undefined {
                    node: node.name.clone(),
                    value: self.values[node.output].name.clone(),
                })?;
            let need: Vec<bool> = node.inputs.iter().map(|&v| rg[v]).collect();
            if !need.iter().any(|&b| b) {
                continue;
            }
            let gin = node
                .op
                .backward(&ins, out, &trace.saved[ni], &gout, &need)
                .map_err(|e| GraphError::Op {
                    node: node.name.clone(),
                    source: e,
                })?;
            for ((&v, g), &want) in node.inputs.iter().zip(gin).zip(&need) {
                let (Some(g), true) = (g, want) else { continue };
                match &mut grads[v] {
                    Some(acc) => *acc += &g,
                    slot => *slot = Some(g),
                }
            }
        }
        let mut params = vec![None; self.params.len()];
        for (v, val) in self.values.iter().enumerate() {
            if let Source::Param(p) = val.source {
                if self.params[p].trainable {
                    params[p] = grads[v].take();
                }
            }
        }
        Ok(Grads { params })
    }
}

#[cfg(test)]
mod tests {
    use crate::graph::GraphBuilder;
    use crate::ops::gradcheck::rand_tensor;
    use crate::ops::loss::softmax_cross_entropy;
    use crate::ops::{Conv2dAttrs, FlattenAttrs, Mode, OpKind};
    use rand::SeedableRng;
    use rand_chacha::ChaCha8Rng;

    /// A residual graph: its parameter gradients (summed over both branches of the Add) agree
    /// with finite differences of the whole network's loss.
    #[test]
    fn residual_graph_gradients_match_finite_differences() {
        let mut b = GraphBuilder::new("res", &[2, 4, 4], 5);
        let x = b.input("x");
        let h = b.conv("c1", x, 2, 2, 3, Conv2dAttrs::simple(1, 1), true);
        let y = b.node("add", OpKind::Add, &[h, x]);
        let y = b.unary("flat", OpKind::Flatten(FlattenAttrs { axis: 1 }), y);
        let y = b.linear("fc", y, 32, 3);
        let mut g = b.finish(&[y]).unwrap();
        let input = rand_tensor(&[2, 2, 4, 4], 9);
        let labels = [0u32, 2];
        let loss = |g: &crate::graph::Graph| -> f64 {
            let mut rng = ChaCha8Rng::seed_from_u64(0);
            let t = g
                .forward(std::slice::from_ref(&input), Mode::Train, false, &mut rng)
                .unwrap();
            softmax_cross_entropy(t.output(g, 0).unwrap(), &labels)
                .unwrap()
                .loss as f64
        };
        let mut rng = ChaCha8Rng::seed_from_u64(0);
        let t = g
            .forward(std::slice::from_ref(&input), Mode::Train, true, &mut rng)
            .unwrap();
        let l = softmax_cross_entropy(t.output(&g, 0).unwrap(), &labels).unwrap();
        let grads = g.backward(&t, l.grad).unwrap();
        for p in 0..g.params.len() {
            let an = grads.params[p].clone().expect("every param has a gradient");
            for k in 0..an.len() {
                let orig = g.params[p].tensor.as_slice().unwrap()[k];
                g.params[p].tensor.as_slice_mut().unwrap()[k] = orig + 1e-2;
                let lp = loss(&g);
                g.params[p].tensor.as_slice_mut().unwrap()[k] = orig - 1e-2;
                let lm = loss(&g);
                g.params[p].tensor.as_slice_mut().unwrap()[k] = orig;
                let num = (lp - lm) / 2e-2;
                let a = an.as_slice().unwrap()[k] as f64;
                assert!(
                    (num - a).abs() < 2e-3 * (1.0 + num.abs()),
                    "param {} [{k}]: {num} vs {a}",
                    g.params[p].name
                );
            }
        }
    }
}
