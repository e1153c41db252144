//! Softmax along one axis (ONNX opset 13+ semantics): `y = exp(x - max) / Σ exp(x - max)`,
//! computed stably in f32 with the maximum subtracted.

use super::par::PAR_MIN;
use super::{OpError, error::invalid};
use crate::tensor::{Tensor, from_vec, slice};
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

/// The axis softmax normalises over; negative values count from the last axis (-1 = last).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SoftmaxAttrs {
    pub axis: i64,
}

/// The axis as an index into a shape of rank `rank`.
pub fn resolve_axis(axis: i64, rank: usize) -> Result<usize, OpError> {
    let r = rank as i64;
    let a = if axis < 0 { axis + r } else { axis };
    if a < 0 || a >= r {
        return Err(invalid(
            "Softmax",
            format!("axis {axis} out of range for an input of rank {rank}"),
        ));
    }
    Ok(a as usize)
}

/// Shape rule: the output has the input's shape.
pub fn output_shape(a: &SoftmaxAttrs, x: &[usize]) -> Result<Vec<usize>, OpError> {
    resolve_axis(a.axis, x.len())?;
    Ok(x.to_vec())
}

/// (outer, len, inner) extents around the softmax axis.
fn layout(a: &SoftmaxAttrs, s: &[usize]) -> (usize, usize, usize) {
    let ax = resolve_axis(a.axis, s.len()).expect("validated softmax axis");
    (
        s[..ax].iter().product(),
        s[ax],
        s[ax + 1..].iter().product(),
    )
}

/// Applies `f` to every block of `len * inner` elements (one outer index), in parallel when the
/// tensor is large. Blocks are independent, so the result does not depend on the split.
fn per_block(out: &mut [f32], block: usize, f: impl Fn(usize, &mut [f32]) + Sync + Send) {
    if block == 0 {
        return;
    }
    if out.len() >= PAR_MIN {
        out.par_chunks_mut(block)
            .enumerate()
            .for_each(|(o, b)| f(o, b));
    } else {
        out.chunks_mut(block).enumerate().for_each(|(o, b)| f(o, b));
    }
}

/// Forward pass.
pub fn forward(a: &SoftmaxAttrs, x: &Tensor) -> Tensor {
    let x = crate::tensor::standard(x.clone());
    let (_, len, inner) = layout(a, x.shape());
    let mut y = slice(&x).to_vec();
    per_block(&mut y, len * inner, |_, b| {
        for i in 0..inner {
            let mut m = f32::NEG_INFINITY;
            for k in 0..len {
                m = m.max(b[k * inner + i]);
            }
            let mut sum = 0.0f32;
            for k in 0..len {
                let e = (b[k * inner + i] - m).exp();
                b[k * inner + i] = e;
                sum += e;
            }
            let inv = 1.0 / sum;
            for k in 0..len {
                b[k * inner + i] *= inv;
            }
        }
    });
    from_vec(x.shape(), y)
}

/// Backward pass from the output: `dx = y ⊙ (dy - Σ_axis dy ⊙ y)`.
pub fn backward(a: &SoftmaxAttrs, y: &Tensor, dy: &Tensor) -> Tensor {
    let y = crate::tensor::standard(y.clone());
    let dy = crate::tensor::standard(dy.clone());
    let (_, len, inner) = layout(a, y.shape());
    let (ys, gs) = (slice(&y), slice(&dy));
    let block = len * inner;
    let mut dx = vec![0.0f32; ys.len()];
    per_block(&mut dx, block, |o, d| {
        let (yb, gb) = (&ys[o * block..][..block], &gs[o * block..][..block]);
        for i in 0..inner {
            let dot: f32 = (0..len)
                .map(|k| yb[k * inner + i] * gb[k * inner + i])
                .sum();
            for k in 0..len {
                let j = k * inner + i;
                d[j] = yb[j] * (gb[j] - dot);
            }
        }
    });
    from_vec(y.shape(), dx)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::OpKind;
    use crate::ops::gradcheck::{check_op, rand_tensor};

    #[test]
    fn values() {
        // softmax([0, ln 3]) = [1/4, 3/4]; along axis 0 of a [2,1] tensor the same.
        let x = from_vec(&[1, 2], vec![0.0, 3f32.ln()]);
        let y = forward(&SoftmaxAttrs { axis: -1 }, &x);
        let y = y.as_slice().unwrap();
        assert!((y[0] - 0.25).abs() < 1e-6 && (y[1] - 0.75).abs() < 1e-6);
        let x = from_vec(&[2, 1], vec![0.0, 3f32.ln()]);
        let y = forward(&SoftmaxAttrs { axis: 0 }, &x);
        assert!((y.as_slice().unwrap()[1] - 0.75).abs() < 1e-6);
        // Large logits stay finite.
        let x = from_vec(&[1, 2], vec![1000.0, 1000.0]);
        let y = forward(&SoftmaxAttrs { axis: 1 }, &x);
        assert_eq!(y.as_slice().unwrap(), &[0.5, 0.5]);
        assert!(output_shape(&SoftmaxAttrs { axis: 2 }, &[2, 3]).is_err());
        assert!(output_shape(&SoftmaxAttrs { axis: -3 }, &[2, 3]).is_err());
    }

    #[test]
    fn gradients() {
        for axis in [-1, 0, 1] {
            check_op(
                &OpKind::Softmax(SoftmaxAttrs { axis }),
                &[rand_tensor(&[3, 4, 2], 7).mapv(|v| v * 3.0)],
                &[true],
            );
        }
    }
}
