//! BatchNorm re-estimation after quantization-aware training.
//!
//! During QAT the running mean and variance of each BatchNorm are exponential averages over
//! weights that kept changing (and, at 4 bits, oscillating between grid points), so they no
//! longer describe the final quantized weights; deployment folds exactly those statistics into
//! the convolutions. [`reestimate_batchnorm`] recomputes them with the final weights: a few
//! training batches forward in training mode, the running statistics replaced by the plain
//! average of the batches' statistics (PyTorch's `momentum=None`), quantizer observers held
//! still. Nagel et al. 2022 show this recovers most of the accuracy oscillations cost.
//! Depends on `graph` and `ops`.

use crate::graph::{Graph, GraphError};
use crate::ops::{FakeQuantAttrs, Mode, OpKind};
use crate::tensor::Tensor;
use rand::SeedableRng;

/// Replaces the running statistics of every BatchNorm of `g` by their average over `batches`
/// (forward in training mode with the current weights); returns the number of BatchNorms and
/// batches used. Observers, frozen flags and momentum are restored afterwards; BatchNorms that
/// were frozen are re-estimated too (their statistics are what deployment folds).
pub fn reestimate_batchnorm(
    g: &mut Graph,
    batches: impl IntoIterator<Item = Tensor>,
) -> Result<(usize, usize), GraphError> {
    let saved: Vec<OpKind> = g.nodes.iter().map(|n| n.op.clone()).collect();
    let bns = g
        .nodes
        .iter()
        .filter(|n| matches!(n.op, OpKind::BatchNorm2d(_)))
        .count();
    if bns == 0 {
        return Ok((0, 0));
    }
    for n in &mut g.nodes {
        match &mut n.op {
            OpKind::BatchNorm2d(a) => a.frozen = false,
            OpKind::FakeQuant(FakeQuantAttrs {
                observer: Some(o), ..
            }) => o.frozen = true,
            _ => {}
        }
    }
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(0);
    let mut used = 0usize;
    let result = (|| {
        for x in batches {
            // The k-th batch gets weight 1/k: the running value is the mean of the batches.
            let momentum = 1.0 / (used + 1) as f32;
            for n in &mut g.nodes {
                if let OpKind::BatchNorm2d(a) = &mut n.op {
                    a.momentum = momentum;
                }
            }
            let t = g.forward(std::slice::from_ref(&x), Mode::Train, false, &mut rng)?;
            g.apply_updates(t.updates);
            used += 1;
        }
        Ok(())
    })();
    for (n, op) in g.nodes.iter_mut().zip(saved) {
        n.op = op;
    }
    result.map(|()| (bns, used))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::gradcheck::rand_tensor;
    use crate::zoo::Arch;

    #[test]
    fn running_statistics_become_the_mean_of_the_batches() {
        let mut g = Arch::ResnetMini.build([1, 12, 12], 5, 3).unwrap();
        let xs: Vec<Tensor> = (0..3).map(|i| rand_tensor(&[8, 1, 12, 12], i)).collect();
        // The first BatchNorm's mean: the mean over the 3 batches of its input's batch mean.
        let bn = g
            .nodes
            .iter()
            .position(|n| matches!(n.op, OpKind::BatchNorm2d(_)))
            .unwrap();
        let input = g.nodes[bn].inputs[0];
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(0);
        let c = g.infer_shapes(1).unwrap()[input][1];
        let mut expect = vec![0.0f64; c];
        for x in &xs {
            let t = g
                .forward(std::slice::from_ref(x), Mode::Train, true, &mut rng)
                .unwrap();
            let v = t.value(input).unwrap();
            for (ch, e) in expect.iter_mut().enumerate() {
                let s = v.index_axis(ndarray::Axis(1), ch);
                *e += s.mean().unwrap() as f64 / xs.len() as f64;
            }
        }
        let before = g.nodes[bn].op.clone();
        let (n, used) = reestimate_batchnorm(&mut g, xs.clone()).unwrap();
        assert_eq!(used, 3);
        assert!(n >= 1);
        assert_eq!(g.nodes[bn].op, before, "attributes restored");
        let mean = &g.params[g.param_of(g.nodes[bn].inputs[3]).unwrap()].tensor;
        for (ch, &e) in expect.iter().enumerate() {
            let got = crate::tensor::slice(mean)[ch] as f64;
            assert!(
                (got - e).abs() < 1e-4 * (1.0 + e.abs()),
                "{ch}: {got} vs {e}"
            );
        }
    }
}
