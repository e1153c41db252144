//! Dropout: zeroes elements with probability `p` in training (scaling the rest by 1/(1-p));
//! the identity at evaluation.

use super::{Forward, FwdCtx, Mode, Saved};
use crate::tensor::{Tensor, from_vec};
use rand::Rng;
use serde::{Deserialize, Serialize};

/// Dropout probability.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DropoutAttrs {
    pub p: f32,
}

/// Forward pass; draws the mask from the context's seeded generator.
pub fn forward(a: &DropoutAttrs, x: &Tensor, ctx: &mut FwdCtx<'_>) -> Forward {
    if ctx.mode == Mode::Eval || a.p <= 0.0 {
        return Forward {
            output: x.clone(),
            saved: Saved::Dropout(Tensor::ones(x.raw_dim())),
            updates: Vec::new(),
        };
    }
    let keep = 1.0 - a.p.min(1.0);
    let scale = if keep > 0.0 { 1.0 / keep } else { 0.0 };
    let mask: Vec<f32> = (0..x.len())
        .map(|_| {
            if ctx.rng.random::<f32>() < keep {
                scale
            } else {
                0.0
            }
        })
        .collect();
    let mask = from_vec(x.shape(), mask);
    Forward {
        output: x * &mask,
        saved: Saved::Dropout(mask),
        updates: Vec::new(),
    }
}

/// Backward pass: the gradient times the mask.
pub fn backward(saved: &Saved, dy: &Tensor) -> Tensor {
    match saved {
        Saved::Dropout(m) => dy * m,
        _ => dy.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::OpKind;
    use crate::ops::gradcheck::{check_op, rand_tensor};
    use rand::SeedableRng;

    #[test]
    fn train_drops_about_p_and_keeps_expectation() {
        let x = Tensor::ones(ndarray::IxDyn(&[10000]));
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(1);
        let f = forward(
            &DropoutAttrs { p: 0.25 },
            &x,
            &mut FwdCtx {
                mode: Mode::Train,
                need_backward: true,
                rng: &mut rng,
            },
        );
        let zeros = f.output.iter().filter(|v| **v == 0.0).count();
        assert!((2300..2700).contains(&zeros), "{zeros}");
        let mean = f.output.sum() / 10000.0;
        assert!((mean - 1.0).abs() < 0.03, "{mean}");
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(1);
        let e = forward(
            &DropoutAttrs { p: 0.25 },
            &x,
            &mut FwdCtx {
                mode: Mode::Eval,
                need_backward: false,
                rng: &mut rng,
            },
        );
        assert_eq!(e.output, x);
    }

    #[test]
    fn gradients() {
        // The mask is drawn from the same seed in every forward of the check, so it is fixed.
        check_op(
            &OpKind::Dropout(DropoutAttrs { p: 0.3 }),
            &[rand_tensor(&[4, 5], 1)],
            &[true],
        );
    }
}
