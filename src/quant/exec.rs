//! Inference with a tap: runs a graph like [`Graph::infer`] (eval mode, values freed after their
//! last use) but shows every input and node output to a callback as it is produced. Observers
//! (calibration) and analysis (SQNR, clipped fractions, histograms) use it, so they never keep
//! more than one batch's live activations. Depends on `graph` and `ops`.

use crate::graph::{Graph, GraphError, ValueId};
use crate::ops::Mode;
use crate::tensor::Tensor;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

/// Runs `g` on one batch `x`, calling `tap(value, tensor)` for the input and each node output;
/// returns the first graph output. A thin wrapper over [`Graph::forward_tapped`] in inference
/// mode (values freed after their last use).
pub fn run_tapped(
    g: &Graph,
    x: &Tensor,
    tap: &mut dyn FnMut(ValueId, &Tensor),
) -> Result<Tensor, GraphError> {
    let mut rng = ChaCha8Rng::seed_from_u64(0);
    let trace = g.forward_tapped(std::slice::from_ref(x), Mode::Eval, false, &mut rng, tap)?;
    trace
        .output(g, 0)
        .cloned()
        .ok_or_else(|| GraphError::Undefined {
            node: "<outputs>".into(),
            value: g.values[g.outputs[0]].name.clone(),
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
