//! Per-channel scaling, the two small ops quantization-aware training needs to simulate
//! Conv+BatchNorm folding the way PyTorch's `ConvBn2d` QAT modules do:
//!
//! ```text
//! f  = gamma / sqrt(running_var + eps)          BnScale      (inputs gamma, running_var)
//! w' = w · f[co]                                ChannelAffine { axis: 0, divide: false }
//! y  = conv(x, fake_quant(w'))
//! y' = y / f[c] + b[c]                          ChannelAffine { axis: 1, divide: true } (bias optional)
//! z  = batch_norm(y')
//! ```
//!
//! `f` is computed in f32 exactly as PyTorch does (`weight / sqrt(var + eps)`), and
//! [`bn_scale`] is the one place that formula lives, so that folding the trained model for
//! deployment produces bit for bit the weights the fake quantizer saw. The running variance gets
//! no gradient (it is a buffer). Depends on `tensor` only.

use super::{OpError, error::invalid};
use crate::tensor::{Tensor, from_vec, slice};
use serde::{Deserialize, Serialize};

/// Attributes of [`BnScale`](super::OpKind::BnScale).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct BnScaleAttrs {
    pub eps: f32,
}

/// Attributes of [`ChannelAffine`](super::OpKind::ChannelAffine).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ChannelAffineAttrs {
    /// Axis of the per-channel factors.
    pub axis: usize,
    /// `x / f` instead of `x · f`.
    pub divide: bool,
}

/// `gamma / sqrt(var + eps)` per channel, in f32 (PyTorch's `scale_factor`).
pub fn bn_scale(gamma: &[f32], var: &[f32], eps: f32) -> Vec<f32> {
    gamma
        .iter()
        .zip(var)
        .map(|(&g, &v)| g / (v + eps).sqrt())
        .collect()
}

/// Shape rule of `BnScale`: gamma and running_var of equal 1-D shape.
pub fn bn_scale_shape(inputs: &[&[usize]]) -> Result<Vec<usize>, OpError> {
    if inputs[0].len() != 1 || inputs[0] != inputs[1] {
        return Err(invalid(
            "BnScale",
            format!(
                "gamma {:?} and running_var {:?} must be equal 1-D shapes",
                inputs[0], inputs[1]
            ),
        ));
    }
    Ok(inputs[0].to_vec())
}

/// Forward of `BnScale`.
pub fn bn_scale_forward(a: &BnScaleAttrs, inputs: &[&Tensor]) -> Tensor {
    let f = bn_scale(slice(inputs[0]), slice(inputs[1]), a.eps);
    from_vec(inputs[0].shape(), f)
}

/// Backward of `BnScale`: `d gamma = dy / sqrt(var + eps)`,
/// `d var = −dy · gamma / (2 (var + eps)^{3/2})`.
pub fn bn_scale_backward(
    a: &BnScaleAttrs,
    inputs: &[&Tensor],
    dy: &Tensor,
    need: &[bool],
) -> Vec<Option<Tensor>> {
    let (g, v, d) = (slice(inputs[0]), slice(inputs[1]), slice(dy));
    let shape = inputs[0].shape();
    let dgamma = need[0].then(|| {
        from_vec(
            shape,
            d.iter()
                .zip(v)
                .map(|(&d, &v)| d / (v + a.eps).sqrt())
                .collect(),
        )
    });
    let dvar = need[1].then(|| {
        from_vec(
            shape,
            (0..d.len())
                .map(|i| -0.5 * d[i] * g[i] / (v[i] + a.eps).powf(1.5))
                .collect(),
        )
    });
    vec![dgamma, dvar]
}

/// Shape rule of `ChannelAffine`: x, factors `[x[axis]]`, optional bias `[x[axis]]`.
pub fn affine_shape(a: &ChannelAffineAttrs, inputs: &[&[usize]]) -> Result<Vec<usize>, OpError> {
    let x = inputs[0];
    if a.axis >= x.len() {
        return Err(invalid(
            "ChannelAffine",
            format!("axis {} out of range for shape {x:?}", a.axis),
        ));
    }
    for (i, what) in [(1, "factors"), (2, "bias")] {
        if let Some(s) = inputs.get(i)
            && *s != [x[a.axis]]
        {
            return Err(OpError::Shape {
                op: "ChannelAffine".into(),
                what: what.into(),
                expected: vec![x[a.axis]],
                found: s.to_vec(),
            });
        }
    }
    Ok(x.to_vec())
}

/// `(outer, channels, inner)` of `shape` around `axis`.
fn layout(shape: &[usize], axis: usize) -> (usize, usize, usize) {
    (
        shape[..axis].iter().product(),
        shape[axis],
        shape[axis + 1..].iter().product(),
    )
}

/// Forward of `ChannelAffine`.
pub fn affine_forward(a: &ChannelAffineAttrs, inputs: &[&Tensor]) -> Tensor {
    let x = inputs[0];
    let (_, c, inner) = layout(x.shape(), a.axis);
    let f = slice(inputs[1]);
    let b = inputs.get(2).map(|t| slice(t));
    let mut y = slice(x).to_vec();
    if inner > 0 {
        for (k, part) in y.chunks_mut(inner).enumerate() {
            let ch = k % c;
            let add = b.map_or(0.0, |b| b[ch]);
            if a.divide {
                part.iter_mut().for_each(|v| *v = *v / f[ch] + add);
            } else {
                part.iter_mut().for_each(|v| *v = *v * f[ch] + add);
            }
        }
    }
    from_vec(x.shape(), y)
}

/// Backward of `ChannelAffine`: `dx = dy·f` (or `dy/f`), `df = Σ dy·x` (or `−Σ dy·x/f²`),
/// `db = Σ dy`, sums in f64.
pub fn affine_backward(
    a: &ChannelAffineAttrs,
    inputs: &[&Tensor],
    dy: &Tensor,
    need: &[bool],
) -> Vec<Option<Tensor>> {
    let x = inputs[0];
    let (_, c, inner) = layout(x.shape(), a.axis);
    let (xs, f, d) = (slice(x), slice(inputs[1]), slice(dy));
    let inner = inner.max(1);
    let dx = need[0].then(|| {
        let mut dx = d.to_vec();
        for (k, part) in dx.chunks_mut(inner).enumerate() {
            let ch = k % c;
            if a.divide {
                part.iter_mut().for_each(|v| *v /= f[ch]);
            } else {
                part.iter_mut().for_each(|v| *v *= f[ch]);
            }
        }
        from_vec(x.shape(), dx)
    });
    let want_f = need.get(1) == Some(&true);
    let want_b = need.get(2) == Some(&true) && inputs.len() > 2;
    let (mut sf, mut sb) = (vec![0.0f64; c], vec![0.0f64; c]);
    if want_f || want_b {
        for (k, (xp, dp)) in xs.chunks(inner).zip(d.chunks(inner)).enumerate() {
            let ch = k % c;
            if want_f {
                sf[ch] += xp
                    .iter()
                    .zip(dp)
                    .map(|(&x, &g)| f64::from(x) * f64::from(g))
                    .sum::<f64>();
            }
            if want_b {
                sb[ch] += dp.iter().map(|&g| f64::from(g)).sum::<f64>();
            }
        }
    }
    let df = want_f.then(|| {
        let v = (0..c)
            .map(|ch| {
                let fc = f64::from(f[ch]);
                (if a.divide {
                    -sf[ch] / (fc * fc)
                } else {
                    sf[ch]
                }) as f32
            })
            .collect();
        from_vec(&[c], v)
    });
    let mut out = vec![dx, df];
    if inputs.len() > 2 {
        out.push(want_b.then(|| from_vec(&[c], sb.iter().map(|&v| v as f32).collect())));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::OpKind;
    use crate::ops::gradcheck::{check_op, rand_tensor};

    #[test]
    fn bn_scale_matches_hand_values_and_gradients() {
        let g = from_vec(&[2], vec![2.0, -1.0]);
        let v = from_vec(&[2], vec![3.0, 0.25]);
        let a = BnScaleAttrs { eps: 1.0 };
        let f = bn_scale_forward(&a, &[&g, &v]);
        assert_eq!(f.as_slice().unwrap(), &[1.0, -1.0 / 1.25f32.sqrt()]);
        let v = rand_tensor(&[3], 2).mapv(|t| 1.0 + 0.5 * t);
        check_op(
            &OpKind::BnScale(BnScaleAttrs { eps: 1e-5 }),
            &[rand_tensor(&[3], 1), v],
            &[true, true],
        );
    }

    #[test]
    fn channel_affine_hand_values() {
        let x = from_vec(&[1, 2, 2], vec![1.0, 2.0, 3.0, 4.0]);
        let f = from_vec(&[2], vec![2.0, 4.0]);
        let b = from_vec(&[2], vec![0.5, -1.0]);
        let mul = ChannelAffineAttrs {
            axis: 1,
            divide: false,
        };
        let div = ChannelAffineAttrs {
            axis: 1,
            divide: true,
        };
        assert_eq!(
            affine_forward(&mul, &[&x, &f]).as_slice().unwrap(),
            &[2.0, 4.0, 12.0, 16.0]
        );
        assert_eq!(
            affine_forward(&div, &[&x, &f, &b]).as_slice().unwrap(),
            &[1.0, 1.5, -0.25, 0.0]
        );
    }

    #[test]
    fn channel_affine_gradients() {
        let x = rand_tensor(&[2, 3, 2, 2], 1);
        let f = rand_tensor(&[3], 2).mapv(|v| 1.0 + 0.5 * v);
        let b = rand_tensor(&[3], 3);
        for divide in [false, true] {
            let op = OpKind::ChannelAffine(ChannelAffineAttrs { axis: 1, divide });
            check_op(&op, &[x.clone(), f.clone(), b.clone()], &[true, true, true]);
            check_op(&op, &[x.clone(), f.clone()], &[true, true]);
            let w = OpKind::ChannelAffine(ChannelAffineAttrs { axis: 0, divide });
            check_op(&w, &[rand_tensor(&[3, 2, 2], 4), f.clone()], &[true, true]);
        }
    }

    #[test]
    fn shape_rules_reject_mismatches() {
        let a = ChannelAffineAttrs {
            axis: 1,
            divide: false,
        };
        assert!(affine_shape(&a, &[&[2, 3, 4], &[4]]).is_err());
        assert!(affine_shape(&a, &[&[2, 3, 4], &[3], &[2]]).is_err());
        assert!(
            affine_shape(
                &ChannelAffineAttrs {
                    axis: 3,
                    divide: true
                },
                &[&[2, 3], &[3]]
            )
            .is_err()
        );
        assert!(bn_scale_shape(&[&[3], &[4]]).is_err());
    }
}
