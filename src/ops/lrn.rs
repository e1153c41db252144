//! Local response normalisation across channels (AlexNet, GoogLeNet v1, the ONNX Model Zoo's
//! classic CNNs; ONNX `LRN`): for input `[N, C, ...]`,
//! `y[c] = x[c] / (bias + alpha / size * sum(x[c']^2))^beta` over the channels
//! `c - floor((size - 1) / 2) ..= c + ceil((size - 1) / 2)` that exist. Sums in f64; backward
//! gives x.

use super::OpError;
use super::error::invalid;
use crate::tensor::Tensor;
use serde::{Deserialize, Serialize};

/// Window size (channels), alpha, beta and bias.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LrnAttrs {
    pub size: usize,
    pub alpha: f32,
    pub beta: f32,
    pub bias: f32,
}

impl LrnAttrs {
    /// Channels before and after `c` in its window.
    fn reach(&self) -> (usize, usize) {
        let s = self.size.max(1) - 1;
        (s / 2, s.div_ceil(2))
    }
}

pub fn output_shape(a: &LrnAttrs, inputs: &[&[usize]]) -> Result<Vec<usize>, OpError> {
    let x = inputs[0];
    if x.len() < 3 {
        return Err(invalid(
            "LRN",
            format!("input of rank {} (needs N, C, spatial)", x.len()),
        ));
    }
    if a.size == 0 || !(a.bias > 0.0) || !a.alpha.is_finite() || !a.beta.is_finite() {
        return Err(invalid(
            "LRN",
            format!("size {} and bias {} must be positive", a.size, a.bias),
        ));
    }
    Ok(x.to_vec())
}

/// `(n, c, inner)` of a shape.
fn dims(x: &[usize]) -> (usize, usize, usize) {
    (x[0], x[1], x[2..].iter().product())
}

/// The denominators before the power: `bias + alpha / size * window sum of squares`.
fn denominators(a: &LrnAttrs, xs: &[f32], c: usize, inner: usize) -> Vec<f64> {
    let (lo, hi) = a.reach();
    let k = a.alpha as f64 / a.size as f64;
    let mut d = vec![0f64; xs.len()];
    for (img, out) in xs.chunks(c * inner).zip(d.chunks_mut(c * inner)) {
        for ch in 0..c {
            let (from, to) = (ch.saturating_sub(lo), (ch + hi).min(c - 1));
            for i in 0..inner {
                let s: f64 = (from..=to)
                    .map(|cc| (img[cc * inner + i] as f64).powi(2))
                    .sum();
                out[ch * inner + i] = a.bias as f64 + k * s;
            }
        }
    }
    d
}

pub fn forward(a: &LrnAttrs, x: &Tensor) -> Result<Tensor, OpError> {
    output_shape(a, &[x.shape()])?;
    let (_, c, inner) = dims(x.shape());
    let xv = x.as_standard_layout();
    let xs = xv.as_slice().expect("standard");
    let d = denominators(a, xs, c, inner);
    let beta = a.beta as f64;
    let y: Vec<f32> = xs
        .iter()
        .zip(&d)
        .map(|(&v, &dd)| (v as f64 * dd.powf(-beta)) as f32)
        .collect();
    Ok(crate::tensor::from_vec(x.shape(), y))
}

/// `dx[c'] = g[c'] d[c']^-beta - 2 beta alpha / size * x[c'] * sum g[c] x[c] d[c]^(-beta-1)`
/// over the channels `c` whose window holds `c'`.
pub fn backward(a: &LrnAttrs, x: &Tensor, dy: &Tensor) -> Result<Tensor, OpError> {
    let (_, c, inner) = dims(x.shape());
    let (xv, gv) = (x.as_standard_layout(), dy.as_standard_layout());
    let (xs, gs) = (
        xv.as_slice().expect("standard"),
        gv.as_slice().expect("standard"),
    );
    let d = denominators(a, xs, c, inner);
    let beta = a.beta as f64;
    let t: Vec<f64> = (0..xs.len())
        .map(|i| gs[i] as f64 * xs[i] as f64 * d[i].powf(-beta - 1.0))
        .collect();
    let (lo, hi) = a.reach();
    let k = 2.0 * beta * a.alpha as f64 / a.size as f64;
    let mut dx = vec![0f32; xs.len()];
    let img = c * inner;
    for start in (0..xs.len()).step_by(img.max(1)) {
        for ch in 0..c {
            // Windows of channels `ch - hi ..= ch + lo` hold `ch`.
            let (from, to) = (ch.saturating_sub(hi), (ch + lo).min(c - 1));
            for i in 0..inner {
                let j = start + ch * inner + i;
                let s: f64 = (from..=to).map(|cc| t[start + cc * inner + i]).sum();
                dx[j] = (gs[j] as f64 * d[j].powf(-beta) - k * xs[j] as f64 * s) as f32;
            }
        }
    }
    Ok(crate::tensor::from_vec(x.shape(), dx))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::OpKind;
    use crate::ops::gradcheck::{check_op, rand_tensor};
    use crate::tensor::from_vec;

    #[test]
    fn matches_the_formula() {
        // size 3 over 2 channels: both windows hold both channels.
        let x = from_vec(&[1, 2, 1, 1], vec![1.0, 2.0]);
        let a = LrnAttrs {
            size: 3,
            alpha: 3.0,
            beta: 0.5,
            bias: 1.0,
        };
        let y = forward(&a, &x).unwrap();
        let d: f32 = 1.0 + 1.0 * (1.0 + 4.0);
        let want = [1.0 / d.sqrt(), 2.0 / d.sqrt()];
        for (g, w) in y.iter().zip(want) {
            assert!((g - w).abs() < 1e-6, "{g} vs {w}");
        }
        // size 2: channel c sees c and c + 1 (ceil after, floor before).
        let a2 = LrnAttrs {
            size: 2,
            ..a.clone()
        };
        let y = forward(&a2, &x).unwrap();
        let d0: f32 = 1.0 + 1.5 * 5.0;
        let d1: f32 = 1.0 + 1.5 * 4.0;
        assert!((y[[0, 0, 0, 0]] - 1.0 / d0.sqrt()).abs() < 1e-6);
        assert!((y[[0, 1, 0, 0]] - 2.0 / d1.sqrt()).abs() < 1e-6);
        assert!(output_shape(&a, &[&[2, 3]]).is_err());
        assert!(output_shape(&LrnAttrs { bias: 0.0, ..a }, &[&[1, 2, 3, 3]]).is_err());
    }

    #[test]
    fn gradients() {
        for size in [1, 2, 3, 5] {
            let op = OpKind::Lrn(LrnAttrs {
                size,
                alpha: 0.5,
                beta: 0.75,
                bias: 2.0,
            });
            check_op(
                &op,
                &[rand_tensor(&[2, 6, 3, 2], 40 + size as u64)],
                &[true],
            );
        }
    }
}
