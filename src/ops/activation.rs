//! Elementwise activations: ReLU and Clip (ReLU6 is `Clip { min: 0, max: 6 }`).
//!
//! Backward passes the gradient where the input lies strictly inside the range (PyTorch's
//! convention at the kinks).

use super::par::PAR_MIN;
use crate::tensor::Tensor;
use ndarray::Zip;
use serde::{Deserialize, Serialize};

/// Clip bounds.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ClipAttrs {
    pub min: f32,
    pub max: f32,
}

impl ClipAttrs {
    /// ReLU6.
    pub fn relu6() -> Self {
        ClipAttrs { min: 0.0, max: 6.0 }
    }
}

pub(super) fn map(x: &Tensor, f: impl Fn(f32) -> f32 + Sync + Send) -> Tensor {
    if x.len() >= PAR_MIN {
        Zip::from(x).par_map_collect(|&v| f(v))
    } else {
        x.mapv(f)
    }
}

pub(super) fn zip_map(a: &Tensor, b: &Tensor, f: impl Fn(f32, f32) -> f32 + Sync + Send) -> Tensor {
    let z = Zip::from(a).and(b);
    if a.len() >= PAR_MIN {
        z.par_map_collect(|&a, &b| f(a, b))
    } else {
        z.map_collect(|&a, &b| f(a, b))
    }
}

/// max(x, 0).
pub fn relu(x: &Tensor) -> Tensor {
    map(x, |v| v.max(0.0))
}

/// Gradient of ReLU, from its output (positive exactly where the input was).
pub fn relu_backward(y: &Tensor, dy: &Tensor) -> Tensor {
    zip_map(y, dy, |y, g| if y > 0.0 { g } else { 0.0 })
}

/// clamp(x, min, max).
pub fn clip(a: &ClipAttrs, x: &Tensor) -> Tensor {
    let (lo, hi) = (a.min, a.max);
    map(x, move |v| v.clamp(lo, hi))
}

/// Gradient of Clip.
pub fn clip_backward(a: &ClipAttrs, x: &Tensor, dy: &Tensor) -> Tensor {
    let (lo, hi) = (a.min, a.max);
    zip_map(x, dy, move |x, g| if x > lo && x < hi { g } else { 0.0 })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::OpKind;
    use crate::ops::gradcheck::{away_from, check_op, rand_tensor};
    use crate::tensor::from_vec;

    #[test]
    fn values() {
        let x = from_vec(&[4], vec![-1.0, 0.5, 3.0, 7.0]);
        assert_eq!(relu(&x).as_slice().unwrap(), &[0.0, 0.5, 3.0, 7.0]);
        assert_eq!(
            clip(&ClipAttrs::relu6(), &x).as_slice().unwrap(),
            &[0.0, 0.5, 3.0, 6.0]
        );
    }

    #[test]
    fn gradients() {
        check_op(
            &OpKind::Relu,
            &[away_from(rand_tensor(&[3, 4, 5], 1), &[0.0])],
            &[true],
        );
        let x = away_from(rand_tensor(&[3, 4, 5], 2).mapv(|v| v * 8.0), &[0.0, 6.0]);
        check_op(&OpKind::Clip(ClipAttrs::relu6()), &[x], &[true]);
    }
}
