//! Elementwise product with numpy broadcasting: scaling by a constant (a scalar or per-channel
//! factors, as ONNX `Mul` by an initializer) or the product of two activations.

use super::OpError;
use super::add::reduce_to;
use crate::tensor::Tensor;
use ndarray::IxDyn;

/// Broadcast shape of `a` and `b`.
pub fn output_shape(a: &[usize], b: &[usize]) -> Result<Vec<usize>, OpError> {
    super::add::broadcast_shape("Mul", a, b)
}

/// a ⊙ b.
pub fn forward(a: &Tensor, b: &Tensor) -> Tensor {
    if a.shape() == b.shape() {
        let mut y = a.clone();
        if y.len() >= super::par::PAR_MIN {
            ndarray::Zip::from(&mut y)
                .and(b)
                .par_for_each(|y, &b| *y *= b);
        } else {
            y *= b;
        }
        return y;
    }
    let s = output_shape(a.shape(), b.shape()).expect("validated mul shapes");
    let a = a.broadcast(IxDyn(&s)).expect("validated broadcast");
    let b = b.broadcast(IxDyn(&s)).expect("validated broadcast");
    &a * &b
}

/// Backward pass: d a = reduce(dy ⊙ b), d b = reduce(dy ⊙ a), summed over broadcast axes.
pub fn backward(a: &Tensor, b: &Tensor, dy: &Tensor, need: &[bool]) -> Vec<Option<Tensor>> {
    fn other<'t>(t: &'t Tensor, s: &[usize]) -> ndarray::ArrayViewD<'t, f32> {
        t.broadcast(IxDyn(s)).expect("validated broadcast")
    }
    let s = dy.shape();
    vec![
        need[0].then(|| reduce_to(&crate::tensor::standard(dy * &other(b, s)), a.shape())),
        need[1].then(|| reduce_to(&crate::tensor::standard(dy * &other(a, s)), b.shape())),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::OpKind;
    use crate::ops::gradcheck::{check_op, rand_tensor};
    use crate::tensor::from_vec;

    #[test]
    fn broadcasting() {
        let a = from_vec(&[2, 2], vec![1.0, 2.0, 3.0, 4.0]);
        let b = from_vec(&[2], vec![10.0, -1.0]);
        assert_eq!(
            forward(&a, &b).as_slice().unwrap(),
            &[10.0, -2.0, 30.0, -4.0]
        );
        let s = from_vec(&[], vec![0.5]);
        assert_eq!(forward(&a, &s).as_slice().unwrap(), &[0.5, 1.0, 1.5, 2.0]);
        assert!(output_shape(&[2, 3], &[2]).is_err());
        assert_eq!(
            output_shape(&[4, 3, 1, 1], &[3, 5, 1]).unwrap(),
            vec![4, 3, 5, 1]
        );
    }

    #[test]
    fn gradients() {
        check_op(
            &OpKind::Mul,
            &[rand_tensor(&[2, 3, 4], 1), rand_tensor(&[2, 3, 4], 2)],
            &[true, true],
        );
        // Per-channel scale [C,1,1] against [N,C,H,W], and a scalar.
        check_op(
            &OpKind::Mul,
            &[rand_tensor(&[2, 3, 2, 2], 3), rand_tensor(&[3, 1, 1], 4)],
            &[true, true],
        );
        check_op(
            &OpKind::Mul,
            &[rand_tensor(&[], 5), rand_tensor(&[2, 3], 6)],
            &[true, true],
        );
    }
}
