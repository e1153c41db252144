//! Test helper: checks an op's analytic gradients against central finite differences.
//!
//! The scalar checked is `L = Σ out ⊙ r` for a fixed random `r`, so every output element
//! contributes. Differences are taken in f64 around f32 inputs with a step that keeps the
//! rounding error small against the tolerance.

use super::{FwdCtx, Mode, OpKind, Saved};
use crate::tensor::{Tensor, from_vec};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// A tensor with entries uniform in [-1, 1), seeded.
pub fn rand_tensor(shape: &[usize], seed: u64) -> Tensor {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let n = shape.iter().product();
    from_vec(
        shape,
        (0..n).map(|_| rng.random_range(-1.0f32..1.0)).collect(),
    )
}

/// `x` with entries within 0.05 of a kink moved 0.1 past it (an op's derivative jumps at its
/// kinks, so finite differences straddling one are meaningless).
pub fn away_from(x: Tensor, kinks: &[f32]) -> Tensor {
    x.mapv(|v| {
        if kinks.iter().any(|k| (v - k).abs() < 0.05) {
            v + 0.1
        } else {
            v
        }
    })
}

fn run(op: &OpKind, inputs: &[Tensor], mode: Mode) -> (Tensor, Saved) {
    let mut rng = ChaCha8Rng::seed_from_u64(99);
    let refs: Vec<&Tensor> = inputs.iter().collect();
    let f = op
        .forward(
            &refs,
            &mut FwdCtx {
                mode,
                need_backward: true,
                rng: &mut rng,
            },
        )
        .expect("forward");
    (f.output, f.saved)
}

/// Checks gradients of every input flagged in `check` (in training mode).
pub fn check_op(op: &OpKind, inputs: &[Tensor], check: &[bool]) {
    check_op_mode(op, inputs, check, Mode::Train)
}

/// Like [`check_op`] in a chosen mode.
pub fn check_op_mode(op: &OpKind, inputs: &[Tensor], check: &[bool], mode: Mode) {
    let (out, saved) = run(op, inputs, mode);
    let r = rand_tensor(out.shape(), 1234);
    let refs: Vec<&Tensor> = inputs.iter().collect();
    let grads = op
        .backward(&refs, &out, &saved, &r, check)
        .expect("backward");
    let loss = |ins: &[Tensor]| -> f64 {
        let (o, _) = run(op, ins, mode);
        o.iter()
            .zip(r.iter())
            .map(|(a, b)| *a as f64 * *b as f64)
            .sum()
    };
    for (i, &want) in check.iter().enumerate() {
        if !want {
            continue;
        }
        let g = grads[i]
            .as_ref()
            .unwrap_or_else(|| panic!("{}: no gradient for input {i}", op.name()));
        assert_eq!(
            g.shape(),
            inputs[i].shape(),
            "{}: gradient shape of input {i}",
            op.name()
        );
        let eps = 1e-2f32;
        let mut max_err = 0.0f64;
        let mut max_ref = 0.0f64;
        for (k, an) in g.iter().enumerate() {
            let mut plus = inputs.to_vec();
            plus[i].as_slice_mut().unwrap()[k] += eps;
            let mut minus = inputs.to_vec();
            minus[i].as_slice_mut().unwrap()[k] -= eps;
            let num = (loss(&plus) - loss(&minus)) / (2.0 * eps as f64);
            max_err = max_err.max((num - *an as f64).abs());
            max_ref = max_ref.max(num.abs());
        }
        let tol = 2e-3 * (1.0 + max_ref);
        assert!(
            max_err <= tol,
            "{}: input {i} gradient error {max_err:.2e} > {tol:.2e} (largest gradient {max_ref:.3})",
            op.name()
        );
    }
}
