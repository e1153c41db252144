//! Smooth and piecewise-linear gates of mobile and efficient CNNs: Sigmoid (SiLU is
//! `x · sigmoid(x)`, a Mul of two tensors), HardSigmoid `clamp(αx + β, 0, 1)` and HardSwish
//! `x · hardsigmoid(x)` with α = 1/6, β = 1/2 (ONNX's definitions), and Erf (GELU is exported
//! as `x · (1 + erf(x / √2)) / 2`).
//!
//! Backward of the piecewise ops passes the gradient strictly inside the linear part (PyTorch's
//! convention at the kinks).

use super::activation::{map, zip_map};
use crate::tensor::Tensor;
use serde::{Deserialize, Serialize};

/// HardSigmoid's slope and offset.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct HardSigmoidAttrs {
    pub alpha: f32,
    pub beta: f32,
}

impl Default for HardSigmoidAttrs {
    /// ONNX's defaults (α = 0.2, β = 0.5).
    fn default() -> Self {
        HardSigmoidAttrs {
            alpha: 0.2,
            beta: 0.5,
        }
    }
}

/// Sigmoid of one value (the integer runtime applies the same formula).
#[inline]
pub fn sigmoid1(v: f32) -> f32 {
    1.0 / (1.0 + (-v).exp())
}

/// HardSigmoid of one value.
#[inline]
pub fn hard_sigmoid1(alpha: f32, beta: f32, v: f32) -> f32 {
    (alpha * v + beta).clamp(0.0, 1.0)
}

/// HardSwish of one value.
#[inline]
pub fn hard_swish1(v: f32) -> f32 {
    v * (v / 6.0 + 0.5).clamp(0.0, 1.0)
}

/// The error function (libm's `erff`).
pub fn erf(x: &Tensor) -> Tensor {
    map(x, libm::erff)
}

/// Gradient of Erf: 2/√π · e^(-x²).
pub fn erf_backward(x: &Tensor, dy: &Tensor) -> Tensor {
    zip_map(x, dy, |x, g| {
        g * std::f32::consts::FRAC_2_SQRT_PI * (-x * x).exp()
    })
}

/// 1 / (1 + e^-x).
pub fn sigmoid(x: &Tensor) -> Tensor {
    map(x, sigmoid1)
}

/// Gradient of Sigmoid from its output: y (1 - y).
pub fn sigmoid_backward(y: &Tensor, dy: &Tensor) -> Tensor {
    zip_map(y, dy, |y, g| g * y * (1.0 - y))
}

/// clamp(αx + β, 0, 1).
pub fn hard_sigmoid(a: &HardSigmoidAttrs, x: &Tensor) -> Tensor {
    let (al, be) = (a.alpha, a.beta);
    map(x, move |v| hard_sigmoid1(al, be, v))
}

/// Gradient of HardSigmoid.
pub fn hard_sigmoid_backward(a: &HardSigmoidAttrs, x: &Tensor, dy: &Tensor) -> Tensor {
    let (al, be) = (a.alpha, a.beta);
    zip_map(x, dy, move |x, g| {
        let t = al * x + be;
        if t > 0.0 && t < 1.0 { g * al } else { 0.0 }
    })
}

/// x · clamp(x/6 + 1/2, 0, 1).
pub fn hard_swish(x: &Tensor) -> Tensor {
    map(x, hard_swish1)
}

/// Gradient of HardSwish: 0 below -3, 1 above 3, (2x + 3) / 6 between.
pub fn hard_swish_backward(x: &Tensor, dy: &Tensor) -> Tensor {
    zip_map(x, dy, |x, g| {
        if x <= -3.0 {
            0.0
        } else if x >= 3.0 {
            g
        } else {
            g * (2.0 * x + 3.0) / 6.0
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::OpKind;
    use crate::ops::gradcheck::{away_from, check_op, rand_tensor};
    use crate::tensor::from_vec;

    #[test]
    fn values_match_the_onnx_definitions() {
        let x = from_vec(&[5], vec![-4.0, -1.0, 0.0, 1.5, 4.0]);
        let e = erf(&x);
        assert!((e[[3]] - 0.966_105_1).abs() < 1e-6 && e[[2]] == 0.0);
        let s = sigmoid(&x);
        assert!((s[[2]] - 0.5).abs() < 1e-7);
        assert!((s[[3]] - 0.817_574_5).abs() < 1e-6);
        let h = hard_sigmoid(&HardSigmoidAttrs::default(), &x);
        assert_eq!(h.as_slice().unwrap(), &[0.0, 0.3, 0.5, 0.8, 1.0]);
        let w = hard_swish(&x);
        let want = [0.0, -1.0 / 3.0, 0.0, 1.5 * 0.75, 4.0];
        for (a, b) in w.iter().zip(want) {
            assert!((a - b).abs() < 1e-6, "{a} vs {b}");
        }
    }

    #[test]
    fn gradients() {
        // Scaled to cover both linear parts and the flat ends of the piecewise ops.
        let x = rand_tensor(&[3, 4, 5], 3).mapv(|v| v * 5.0);
        check_op(&OpKind::Sigmoid, &[x.clone()], &[true]);
        check_op(&OpKind::Erf, &[x.mapv(|v| v * 0.4)], &[true]);
        check_op(
            &OpKind::HardSwish,
            &[away_from(x.clone(), &[-3.0, 3.0])],
            &[true],
        );
        let a = HardSigmoidAttrs {
            alpha: 0.25,
            beta: 0.4,
        };
        let kinks = [-0.4 / 0.25, 0.6 / 0.25];
        check_op(&OpKind::HardSigmoid(a), &[away_from(x, &kinks)], &[true]);
    }
}
