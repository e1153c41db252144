//! Fully connected layer `y = x·Wᵀ + b` with PyTorch's weight layout [out, in].

use super::OpError;
use crate::kernels::{MatMut, MatRef, sgemm};
use crate::tensor::{Tensor, from_vec, slice};
use ndarray::Axis;

/// Shape rule: x [N, in], weight [out, in], bias [out].
pub fn output_shape(inputs: &[&[usize]]) -> Result<Vec<usize>, OpError> {
    let (x, w) = (inputs[0], inputs[1]);
    let bad = |what: &str, expected: Vec<usize>, found: &[usize]| OpError::Shape {
        op: "Linear".into(),
        what: what.into(),
        expected,
        found: found.to_vec(),
    };
    if w.len() != 2 {
        return Err(bad("weight", vec![0, x.last().copied().unwrap_or(0)], w));
    }
    if x.len() != 2 || x[1] != w[1] {
        return Err(bad("input", vec![x.first().copied().unwrap_or(1), w[1]], x));
    }
    if let Some(b) = inputs.get(2) {
        if *b != [w[0]] {
            return Err(bad("bias", vec![w[0]], b));
        }
    }
    Ok(vec![x[0], w[0]])
}

/// Forward pass.
pub fn forward(inputs: &[&Tensor]) -> Tensor {
    let (x, w) = (inputs[0], inputs[1]);
    let (n, k, m) = (x.shape()[0], x.shape()[1], w.shape()[0]);
    let mut y = vec![0.0f32; n * m];
    if let Some(b) = inputs.get(2) {
        for row in y.chunks_mut(m) {
            row.copy_from_slice(slice(b));
        }
    }
    sgemm(
        MatRef::row_major(slice(x), n, k),
        MatRef::row_major_t(slice(w), m, k),
        MatMut::row_major(&mut y, n, m),
        inputs.len() > 2,
        true,
    );
    from_vec(&[n, m], y)
}

/// Backward pass: dx = dy·W, dW = dyᵀ·x, db = Σ dy.
pub fn backward(inputs: &[&Tensor], dy: &Tensor, need: &[bool]) -> Vec<Option<Tensor>> {
    let (x, w) = (inputs[0], inputs[1]);
    let (n, k, m) = (x.shape()[0], x.shape()[1], w.shape()[0]);
    let dys = slice(dy);
    let dx = need[0].then(|| {
        let mut dx = vec![0.0f32; n * k];
        sgemm(
            MatRef::row_major(dys, n, m),
            MatRef::row_major(slice(w), m, k),
            MatMut::row_major(&mut dx, n, k),
            false,
            true,
        );
        from_vec(&[n, k], dx)
    });
    let dw = need[1].then(|| {
        let mut dw = vec![0.0f32; m * k];
        sgemm(
            MatRef::row_major_t(dys, n, m),
            MatRef::row_major(slice(x), n, k),
            MatMut::row_major(&mut dw, m, k),
            false,
            true,
        );
        from_vec(&[m, k], dw)
    });
    let mut g = vec![dx, dw];
    if inputs.len() > 2 {
        g.push(Some(dy.sum_axis(Axis(0))));
    }
    g
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::OpKind;
    use crate::ops::gradcheck::{check_op, rand_tensor};

    #[test]
    fn hand_computed() {
        let x = from_vec(&[1, 2], vec![1.0, 2.0]);
        let w = from_vec(&[2, 2], vec![1.0, -1.0, 0.5, 2.0]);
        let b = from_vec(&[2], vec![0.25, 0.0]);
        let y = forward(&[&x, &w, &b]);
        assert_eq!(y.as_slice().unwrap(), &[-0.75, 4.5]);
    }

    #[test]
    fn gradients() {
        check_op(
            &OpKind::Linear,
            &[
                rand_tensor(&[3, 5], 1),
                rand_tensor(&[4, 5], 2),
                rand_tensor(&[4], 3),
            ],
            &[true, true, true],
        );
        check_op(
            &OpKind::Linear,
            &[rand_tensor(&[2, 3], 4), rand_tensor(&[6, 3], 5)],
            &[true, true],
        );
    }

    #[test]
    fn rejects_mismatched_weight() {
        assert!(output_shape(&[&[2, 5], &[4, 6]]).is_err());
        assert!(output_shape(&[&[2, 5], &[4, 5], &[3]]).is_err());
    }
}
