//! Training-throughput measurement: images per second of full training steps (forward, backward,
//! optimizer) on real batches. Used by `qatlas bench train` and `benches/`, never by unit tests.

use super::{Optimizer, OptimizerConfig};
use crate::data::{Dataset, Loader, Normalization};
use crate::graph::{Graph, GraphError};
use crate::ops::Mode;
use crate::ops::loss::softmax_cross_entropy;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use std::time::Instant;

/// Runs `warmup` untimed then `steps` timed training steps of `batch` images; returns images/s.
pub fn train_images_per_s(
    g: &mut Graph,
    ds: &Dataset,
    norm: &Normalization,
    batch: usize,
    warmup: usize,
    steps: usize,
) -> Result<f64, GraphError> {
    let mut opt = Optimizer::new(
        OptimizerConfig::AdamW {
            lr: 1e-3,
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
            weight_decay: 0.0,
        },
        g,
    );
    let mut rng = ChaCha8Rng::seed_from_u64(0);
    let batches: Vec<_> = Loader::new(ds, norm, batch, Some(0), true)
        .take((warmup + steps).max(1))
        .collect();
    let mut run = |n: usize| -> Result<(), GraphError> {
        for (x, y) in batches.iter().cycle().take(n) {
            let trace = g.forward(std::slice::from_ref(x), Mode::Train, true, &mut rng)?;
            let logits = trace.output(g, 0).expect("output kept");
            let l = softmax_cross_entropy(logits, y).map_err(|e| GraphError::Op {
                node: "loss".into(),
                source: e,
            })?;
            let grads = g.backward(&trace, l.grad)?;
            let up = trace.updates;
            g.apply_updates(up);
            opt.step(g, &grads.params, 1e-3);
        }
        Ok(())
    };
    run(warmup)?;
    let t = Instant::now();
    run(steps)?;
    Ok((steps * batch) as f64 / t.elapsed().as_secs_f64().max(1e-9))
}
