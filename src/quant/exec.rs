//! Inference with a tap: runs a graph like [`Graph::infer`] (eval mode, values freed after their
//! last use) but shows every input and node output to a callback as it is produced. Observers
//! (calibration) and analysis (SQNR, clipped fractions, histograms) use it, so they never keep
//! more than one batch's live activations. Depends on `graph` and `ops`.

use crate::graph::{Graph, GraphError, Source, ValueId};
use crate::ops::{FwdCtx, Mode};
use crate::tensor::{Tensor, standard};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

/// Runs `g` on one batch `x`, calling `tap(value, tensor)` for the input and each node output;
/// returns the first graph output.
pub fn run_tapped(
    g: &Graph,
    x: &Tensor,
    tap: &mut dyn FnMut(ValueId, &Tensor),
) -> Result<Tensor, GraphError> {
    if g.inputs.len() != 1 {
        return Err(GraphError::Inputs {
            expected: g.inputs.len(),
            found: 1,
        });
    }
    if x.ndim() != g.input_shape.len() + 1 || x.shape()[1..] != g.input_shape[..] {
        return Err(GraphError::InputShape {
            expected: g.input_shape.clone(),
            found: x.shape().to_vec(),
        });
    }
    let mut uses = vec![0usize; g.values.len()];
    for n in &g.nodes {
        for &i in &n.inputs {
            uses[i] += 1;
        }
    }
    for &o in &g.outputs {
        uses[o] += 1;
    }
    let mut values: Vec<Option<Tensor>> = vec![None; g.values.len()];
    let xin = standard(x.clone());
    tap(g.inputs[0], &xin);
    values[g.inputs[0]] = Some(xin);
    let mut rng = ChaCha8Rng::seed_from_u64(0);
    for node in &g.nodes {
        let out = {
            let ins: Vec<&Tensor> = node
                .inputs
                .iter()
                .map(|&v| match g.values[v].source {
                    Source::Param(p) => Some(&g.params[p].tensor),
                    _ => values[v].as_ref(),
                })
                .map(|t| {
                    t.ok_or_else(|| GraphError::Undefined {
                        node: node.name.clone(),
                        value: "an input".into(),
                    })
                })
                .collect::<Result<_, _>>()?;
            let mut ctx = FwdCtx {
                mode: Mode::Eval,
                need_backward: false,
                rng: &mut rng,
            };
            node.op
                .forward(&ins, &mut ctx)
                .map_err(|e| GraphError::Op {
                    node: node.name.clone(),
                    source: e,
                })?
                .output
        };
        tap(node.output, &out);
        values[node.output] = Some(out);
        for &v in &node.inputs {
            uses[v] -= 1;
            if uses[v] == 0 && !matches!(g.values[v].source, Source::Param(_)) {
                values[v] = None;
            }
        }
    }
    let o = g.outputs[0];
    values[o].take().ok_or_else(|| GraphError::Undefined {
        node: "<outputs>".into(),
        value: g.values[o].name.clone(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::gradcheck::rand_tensor;
    use crate::zoo::Arch;

    #[test]
    fn matches_infer_and_taps_every_node() {
        let g = Arch::ResnetMini.build([1, 12, 12], 4, 3).unwrap();
        let x = rand_tensor(&[3, 1, 12, 12], 5);
        let mut seen = Vec::new();
        let y = run_tapped(&g, &x, &mut |v, _| seen.push(v)).unwrap();
        assert_eq!(y, g.infer(&x).unwrap());
        assert_eq!(seen.len(), g.nodes.len() + 1);
    }
}
