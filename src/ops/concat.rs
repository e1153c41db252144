//! Concat: joins tensors along one axis (SqueezeNet's fire modules, DenseNet, GoogLeNet,
//! ShuffleNet). Backward hands each input its slice of the gradient.

use super::OpError;
use crate::tensor::Tensor;
use ndarray::{Axis, Slice};
use serde::{Deserialize, Serialize};

/// The axis joined (negative counts from the end).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ConcatAttrs {
    pub axis: i64,
}

fn axis_of(a: &ConcatAttrs, rank: usize) -> Result<usize, OpError> {
    let r = rank as i64;
    let ax = if a.axis < 0 { a.axis + r } else { a.axis };
    if ax < 0 || ax >= r {
        return Err(super::error::invalid(
            "Concat",
            format!("axis {} is outside a rank-{rank} input", a.axis),
        ));
    }
    Ok(ax as usize)
}

/// All inputs agree except along the axis, which adds up.
pub fn output_shape(a: &ConcatAttrs, inputs: &[&[usize]]) -> Result<Vec<usize>, OpError> {
    let first = inputs[0];
    let ax = axis_of(a, first.len())?;
    let mut out = first.to_vec();
    out[ax] = 0;
    for (i, s) in inputs.iter().enumerate() {
        let same = s.len() == first.len()
            && s.iter()
                .zip(first)
                .enumerate()
                .all(|(d, (x, y))| d == ax || x == y);
        if !same {
            return Err(OpError::Shape {
                op: "Concat".into(),
                what: format!("input {i}"),
                expected: first.to_vec(),
                found: s.to_vec(),
            });
        }
        out[ax] += s[ax];
    }
    Ok(out)
}

/// The inputs joined along the axis.
pub fn forward(a: &ConcatAttrs, inputs: &[&Tensor]) -> Result<Tensor, OpError> {
    let ax = axis_of(a, inputs[0].ndim())?;
    let views: Vec<_> = inputs.iter().map(|t| t.view()).collect();
    ndarray::concatenate(Axis(ax), &views)
        .map(crate::tensor::standard)
        .map_err(|e| super::error::invalid("Concat", e.to_string()))
}

/// Each input's slice of the output gradient.
pub fn backward(
    a: &ConcatAttrs,
    inputs: &[&Tensor],
    dy: &Tensor,
    need: &[bool],
) -> Result<Vec<Option<Tensor>>, OpError> {
    let ax = axis_of(a, dy.ndim())?;
    let mut at = 0isize;
    let mut out = Vec::with_capacity(inputs.len());
    for (t, &n) in inputs.iter().zip(need) {
        let len = t.shape()[ax] as isize;
        out.push(n.then(|| {
            dy.slice_axis(Axis(ax), Slice::from(at..at + len))
                .to_owned()
        }));
        at += len;
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::OpKind;
    use crate::ops::gradcheck::{check_op, rand_tensor};
    use crate::tensor::from_vec;

    #[test]
    fn joins_along_the_axis_and_checks_the_others() {
        let a = from_vec(&[1, 2, 1], vec![1.0, 2.0]);
        let b = from_vec(&[1, 1, 1], vec![3.0]);
        let y = forward(&ConcatAttrs { axis: -2 }, &[&a, &b]).unwrap();
        assert_eq!(y.shape(), &[1, 3, 1]);
        assert_eq!(y.as_slice().unwrap(), &[1.0, 2.0, 3.0]);
        let bad = output_shape(&ConcatAttrs { axis: 1 }, &[&[1, 2, 1], &[1, 1, 2]]);
        assert!(bad.is_err());
        assert!(output_shape(&ConcatAttrs { axis: 3 }, &[&[1, 2, 1]]).is_err());
    }

    #[test]
    fn gradients() {
        let op = OpKind::Concat(ConcatAttrs { axis: 1 });
        let xs = [
            rand_tensor(&[2, 3, 2, 2], 4),
            rand_tensor(&[2, 1, 2, 2], 5),
            rand_tensor(&[2, 2, 2, 2], 6),
        ];
        check_op(&op, &xs, &[true, false, true]);
    }
}
