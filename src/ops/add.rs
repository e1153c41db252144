//! Elementwise addition with numpy broadcasting (residual connections, bias adds).

use super::{OpError, error::invalid};
use crate::tensor::Tensor;
use ndarray::{Axis, IxDyn};

/// Broadcast shape of `a` and `b` (numpy rules); `op` names the operator in the error.
pub fn broadcast_shape(op: &str, a: &[usize], b: &[usize]) -> Result<Vec<usize>, OpError> {
    let r = a.len().max(b.len());
    let at = |s: &[usize], i: usize| {
        if i + s.len() < r {
            1
        } else {
            s[i + s.len() - r]
        }
    };
    (0..r)
        .map(|i| match (at(a, i), at(b, i)) {
            (x, y) if x == y => Ok(x),
            (1, y) => Ok(y),
            (x, 1) => Ok(x),
            _ => Err(invalid(
                op,
                format!("shapes {a:?} and {b:?} do not broadcast"),
            )),
        })
        .collect()
}

/// Broadcast shape of `a` and `b`.
pub fn output_shape(a: &[usize], b: &[usize]) -> Result<Vec<usize>, OpError> {
    broadcast_shape("Add", a, b)
}

/// a + b.
pub fn forward(a: &Tensor, b: &Tensor) -> Tensor {
    if a.shape() == b.shape() {
        let mut y = a.clone();
        if y.len() >= super::par::PAR_MIN {
            ndarray::Zip::from(&mut y)
                .and(b)
                .par_for_each(|y, &b| *y += b);
        } else {
            y += b;
        }
        return y;
    }
    let s = output_shape(a.shape(), b.shape()).expect("validated add shapes");
    let a = a.broadcast(IxDyn(&s)).expect("validated broadcast");
    let b = b.broadcast(IxDyn(&s)).expect("validated broadcast");
    &a + &b
}

/// Sums `g` down to `shape` over the broadcast axes.
pub fn reduce_to(g: &Tensor, shape: &[usize]) -> Tensor {
    if g.shape() == shape {
        return g.clone();
    }
    let mut r = g.clone();
    while r.ndim() > shape.len() {
        r = r.sum_axis(Axis(0));
    }
    for (i, &d) in shape.iter().enumerate() {
        if d == 1 && r.shape()[i] != 1 {
            r = r.sum_axis(Axis(i)).insert_axis(Axis(i));
        }
    }
    crate::tensor::standard(r)
}

/// Backward pass.
pub fn backward(a: &Tensor, b: &Tensor, dy: &Tensor, need: &[bool]) -> Vec<Option<Tensor>> {
    vec![
        need[0].then(|| reduce_to(dy, a.shape())),
        need[1].then(|| reduce_to(dy, b.shape())),
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
        let b = from_vec(&[2], vec![10.0, 20.0]);
        assert_eq!(
            forward(&a, &b).as_slice().unwrap(),
            &[11.0, 22.0, 13.0, 24.0]
        );
        assert!(output_shape(&[2, 3], &[2]).is_err());
    }

    #[test]
    fn gradients() {
        check_op(
            &OpKind::Add,
            &[rand_tensor(&[2, 3, 4], 1), rand_tensor(&[2, 3, 4], 2)],
            &[true, true],
        );
        check_op(
            &OpKind::Add,
            &[rand_tensor(&[2, 3, 4], 3), rand_tensor(&[3, 1], 4)],
            &[true, true],
        );
    }
}
