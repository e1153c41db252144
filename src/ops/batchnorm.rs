//! Batch normalisation over axis 1 of [N, C, ...] inputs, with running statistics.
//!
//! Training mode normalises with the batch's statistics and reports new running statistics
//! (PyTorch's convention: `running = (1 - momentum)·running + momentum·batch`, the running
//! variance unbiased). Eval mode uses the running statistics; its backward treats them as
//! constants (this is also "frozen BatchNorm" during fine-tuning).

use super::{Forward, Mode, OpError, Saved};
use crate::tensor::{Tensor, from_vec, slice};
use serde::{Deserialize, Serialize};

/// BatchNorm attributes.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct BatchNormAttrs {
    pub eps: f32,
    pub momentum: f32,
    /// Use (and keep) the running statistics even in training mode.
    #[serde(default)]
    pub frozen: bool,
}

impl Default for BatchNormAttrs {
    fn default() -> Self {
        BatchNormAttrs {
            eps: 1e-5,
            momentum: 0.1,
            frozen: false,
        }
    }
}

/// Shape rule: x [N, C, ...], four parameter vectors of length C.
pub fn output_shape(inputs: &[&[usize]]) -> Result<Vec<usize>, OpError> {
    let x = inputs[0];
    if x.len() < 2 {
        return Err(super::error::invalid(
            "BatchNorm2d",
            format!("input must be [N, C, ...], found {x:?}"),
        ));
    }
    for (i, name) in ["gamma", "beta", "running_mean", "running_var"]
        .iter()
        .enumerate()
    {
        if inputs[i + 1] != [x[1]] {
            return Err(OpError::Shape {
                op: "BatchNorm2d".into(),
                what: (*name).into(),
                expected: vec![x[1]],
                found: inputs[i + 1].to_vec(),
            });
        }
    }
    Ok(x.to_vec())
}

fn layout(x: &Tensor) -> (usize, usize, usize) {
    let s = x.shape();
    (s[0], s[1], s[2..].iter().product())
}

/// Forward pass.
pub fn forward(a: &BatchNormAttrs, inputs: &[&Tensor], mode: Mode) -> Forward {
    let mode = if a.frozen { Mode::Eval } else { mode };
    let x = inputs[0];
    let (gamma, beta, rm, rv) = (
        slice(inputs[1]),
        slice(inputs[2]),
        slice(inputs[3]),
        slice(inputs[4]),
    );
    let (n, c, s) = layout(x);
    let xs = slice(x);
    let m = (n * s) as f64;
    let (mean, var): (Vec<f32>, Vec<f32>) = if mode == Mode::Train {
        (0..c)
            .map(|ch| {
                let (mut sum, mut sq) = (0.0f64, 0.0f64);
                for i in 0..n {
                    for &v in &xs[(i * c + ch) * s..][..s] {
                        sum += v as f64;
                        sq += (v as f64) * (v as f64);
                    }
                }
                let mu = sum / m;
                ((mu as f32), ((sq / m - mu * mu).max(0.0)) as f32)
            })
            .unzip()
    } else {
        (rm.to_vec(), rv.to_vec())
    };
    let inv_std: Vec<f32> = var.iter().map(|v| 1.0 / (v + a.eps).sqrt()).collect();
    let mut xhat = vec![0.0f32; xs.len()];
    let mut y = vec![0.0f32; xs.len()];
    for i in 0..n {
        for ch in 0..c {
            let o = (i * c + ch) * s;
            let (mu, is, g, b) = (mean[ch], inv_std[ch], gamma[ch], beta[ch]);
            for k in o..o + s {
                let h = (xs[k] - mu) * is;
                xhat[k] = h;
                y[k] = h * g + b;
            }
        }
    }
    let mut updates = Vec::new();
    if mode == Mode::Train {
        let unbias = if m > 1.0 { (m / (m - 1.0)) as f32 } else { 1.0 };
        let mom = a.momentum;
        let new_m: Vec<f32> = rm
            .iter()
            .zip(&mean)
            .map(|(r, b)| (1.0 - mom) * r + mom * b)
            .collect();
        let new_v: Vec<f32> = rv
            .iter()
            .zip(&var)
            .map(|(r, b)| (1.0 - mom) * r + mom * b * unbias)
            .collect();
        updates.push((3, from_vec(&[c], new_m)));
        updates.push((4, from_vec(&[c], new_v)));
    }
    Forward {
        output: from_vec(x.shape(), y),
        saved: Saved::BatchNorm {
            xhat: from_vec(x.shape(), xhat),
            inv_std,
            batch_stats: mode == Mode::Train,
        },
        updates,
    }
}

/// Backward pass: gradients for x, gamma and beta (running statistics get none).
pub fn backward(
    _a: &BatchNormAttrs,
    inputs: &[&Tensor],
    saved: &Saved,
    dy: &Tensor,
    need: &[bool],
) -> Vec<Option<Tensor>> {
    let Saved::BatchNorm {
        xhat,
        inv_std,
        batch_stats,
    } = saved
    else {
        // Forward always saves; reaching here means a caller bug. Return zero gradients.
        return inputs
            .iter()
            .map(|t| Some(Tensor::zeros(t.raw_dim())))
            .collect();
    };
    let x = inputs[0];
    let gamma = slice(inputs[1]);
    let (n, c, s) = layout(x);
    let (xh, dys) = (slice(xhat), slice(dy));
    let mut dgamma = vec![0.0f32; c];
    let mut dbeta = vec![0.0f32; c];
    for i in 0..n {
        for ch in 0..c {
            let o = (i * c + ch) * s;
            let (mut sg, mut sb) = (0.0f32, 0.0f32);
            for k in o..o + s {
                sg += dys[k] * xh[k];
                sb += dys[k];
            }
            dgamma[ch] += sg;
            dbeta[ch] += sb;
        }
    }
    let dx = need[0].then(|| {
        let m = (n * s) as f32;
        let mut dx = vec![0.0f32; dys.len()];
        for i in 0..n {
            for ch in 0..c {
                let o = (i * c + ch) * s;
                let k0 = gamma[ch] * inv_std[ch];
                if *batch_stats {
                    let (mb, mg) = (dbeta[ch] / m, dgamma[ch] / m);
                    for k in o..o + s {
                        dx[k] = k0 * (dys[k] - mb - xh[k] * mg);
                    }
                } else {
                    for k in o..o + s {
                        dx[k] = k0 * dys[k];
                    }
                }
            }
        }
        from_vec(x.shape(), dx)
    });
    vec![
        dx,
        Some(from_vec(&[c], dgamma)),
        Some(from_vec(&[c], dbeta)),
        None,
        None,
    ]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::gradcheck::{check_op, check_op_mode, rand_tensor};
    use crate::ops::{FwdCtx, OpKind};
    use rand::SeedableRng;

    fn params(c: usize) -> Vec<Tensor> {
        let g = rand_tensor(&[c], 2).mapv(|v| 1.0 + 0.5 * v);
        let b = rand_tensor(&[c], 3);
        let m = rand_tensor(&[c], 4).mapv(|v| 0.1 * v);
        let v = rand_tensor(&[c], 5).mapv(|v| 1.0 + 0.5 * v);
        vec![g, b, m, v]
    }

    #[test]
    fn train_mode_normalises_and_updates_running_stats() {
        // One channel, values 1, 2, 3, 4: mean 2.5, biased var 1.25, unbiased 5/3.
        let x = from_vec(&[2, 1, 2], vec![1.0, 2.0, 3.0, 4.0]);
        let one = from_vec(&[1], vec![1.0]);
        let zero = from_vec(&[1], vec![0.0]);
        let mut a = BatchNormAttrs {
            eps: 0.0,
            momentum: 0.1,
            frozen: false,
        };
        let f = forward(&a, &[&x, &one, &zero, &zero, &one], Mode::Train);
        let want = -1.5 / 1.25f32.sqrt();
        assert!((f.output[[0, 0, 0]] - want).abs() < 1e-6);
        assert!((f.updates[0].1[0] - 0.25).abs() < 1e-6);
        assert!((f.updates[1].1[0] - (0.9 + 0.1 * 5.0 / 3.0)).abs() < 1e-6);
        // Frozen: running statistics (mean 0, var 1) are used and kept, even in training.
        a.frozen = true;
        let f = forward(&a, &[&x, &one, &zero, &zero, &one], Mode::Train);
        assert_eq!(f.output[[0, 0, 0]], 1.0);
        assert!(f.updates.is_empty());
        let frozen = OpKind::BatchNorm2d(a);
        let mut ins = vec![rand_tensor(&[3, 2, 3, 2], 1)];
        ins.extend(params(2));
        check_op(&frozen, &ins, &[true, true, true, false, false]);
    }

    #[test]
    fn gradients_train_and_eval() {
        let mut ins = vec![rand_tensor(&[3, 2, 3, 2], 1)];
        ins.extend(params(2));
        let op = OpKind::BatchNorm2d(BatchNormAttrs::default());
        check_op(&op, &ins, &[true, true, true, false, false]);
        check_op_mode(&op, &ins, &[true, true, true, false, false], Mode::Eval);
    }

    #[test]
    fn eval_uses_running_stats() {
        let mut ins = vec![rand_tensor(&[2, 2, 2, 2], 7)];
        ins.extend(params(2));
        let refs: Vec<&Tensor> = ins.iter().collect();
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(0);
        let op = OpKind::BatchNorm2d(BatchNormAttrs::default());
        let y = op
            .forward(
                &refs,
                &mut FwdCtx {
                    mode: Mode::Eval,
                    need_backward: false,
                    rng: &mut rng,
                },
            )
            .unwrap();
        let (g, b, m, v) = (ins[1][0], ins[2][0], ins[3][0], ins[4][0]);
        let want = (ins[0][[1, 0, 1, 0]] - m) / (v + 1e-5).sqrt() * g + b;
        assert!((y.output[[1, 0, 1, 0]] - want).abs() < 1e-5);
        assert!(y.updates.is_empty());
    }
}
