//! Layout ops: Transpose (a permutation of the axes: ShuffleNet's channel shuffle, ConvNeXt's
//! and ViT's permutes) and Slice along one axis (channel splits). Backward of Transpose applies
//! the inverse permutation; of Slice it scatters the gradient into zeros.

use super::OpError;
use super::error::invalid;
use crate::tensor::Tensor;
use ndarray::{Axis, Slice};
use serde::{Deserialize, Serialize};

/// Output axis `i` is input axis `perm[i]`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TransposeAttrs {
    pub perm: Vec<usize>,
}

/// `start..end` by `step` (> 0) along `axis`, bounds already clamped to the axis length at
/// import when known; they are clamped again at run time.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SliceAttrs {
    pub axis: usize,
    pub start: i64,
    pub end: i64,
    pub step: i64,
}

fn check_perm(a: &TransposeAttrs, rank: usize) -> Result<(), OpError> {
    let mut seen = vec![false; rank];
    if a.perm.len() != rank {
        return Err(invalid(
            "Transpose",
            format!("perm {:?} does not fit a rank-{rank} input", a.perm),
        ));
    }
    for &p in &a.perm {
        if p >= rank || seen[p] {
            return Err(invalid(
                "Transpose",
                format!("perm {:?} is not a permutation", a.perm),
            ));
        }
        seen[p] = true;
    }
    Ok(())
}

pub fn transpose_shape(a: &TransposeAttrs, x: &[usize]) -> Result<Vec<usize>, OpError> {
    check_perm(a, x.len())?;
    Ok(a.perm.iter().map(|&p| x[p]).collect())
}

pub fn transpose(a: &TransposeAttrs, x: &Tensor) -> Tensor {
    crate::tensor::standard(x.view().permuted_axes(a.perm.clone()).to_owned())
}

pub fn transpose_backward(a: &TransposeAttrs, dy: &Tensor) -> Tensor {
    let mut inv = vec![0; a.perm.len()];
    for (i, &p) in a.perm.iter().enumerate() {
        inv[p] = i;
    }
    crate::tensor::standard(dy.view().permuted_axes(inv).to_owned())
}

/// The clamped range of a slice over an axis of length `n`: (start, end), numpy's rules for
/// positive steps.
fn range(a: &SliceAttrs, n: usize) -> (usize, usize) {
    let n = n as i64;
    let fix = |v: i64| if v < 0 { (v + n).max(0) } else { v.min(n) };
    let (s, e) = (fix(a.start), fix(a.end));
    (s as usize, e.max(s) as usize)
}

pub fn slice_shape(a: &SliceAttrs, x: &[usize]) -> Result<Vec<usize>, OpError> {
    if a.axis >= x.len() || a.step <= 0 {
        return Err(invalid(
            "Slice",
            format!(
                "axis {} step {} on a rank-{} input",
                a.axis,
                a.step,
                x.len()
            ),
        ));
    }
    let (s, e) = range(a, x[a.axis]);
    let mut out = x.to_vec();
    out[a.axis] = (e - s).div_ceil(a.step as usize);
    Ok(out)
}

pub fn slice(a: &SliceAttrs, x: &Tensor) -> Tensor {
    let (s, e) = range(a, x.shape()[a.axis]);
    let sl = Slice::new(s as isize, Some(e as isize), a.step as isize);
    crate::tensor::standard(x.slice_axis(Axis(a.axis), sl).to_owned())
}

pub fn slice_backward(a: &SliceAttrs, x: &Tensor, dy: &Tensor) -> Tensor {
    let (s, e) = range(a, x.shape()[a.axis]);
    let sl = Slice::new(s as isize, Some(e as isize), a.step as isize);
    let mut dx = Tensor::zeros(x.raw_dim());
    dx.slice_axis_mut(Axis(a.axis), sl).assign(dy);
    dx
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::OpKind;
    use crate::ops::gradcheck::{check_op, rand_tensor};
    use crate::tensor::from_vec;

    #[test]
    fn values_and_shapes() {
        let x = from_vec(&[2, 3], vec![0.0, 1.0, 2.0, 3.0, 4.0, 5.0]);
        let t = transpose(&TransposeAttrs { perm: vec![1, 0] }, &x);
        assert_eq!(t.shape(), &[3, 2]);
        assert_eq!(t.as_slice().unwrap(), &[0.0, 3.0, 1.0, 4.0, 2.0, 5.0]);
        assert!(transpose_shape(&TransposeAttrs { perm: vec![0, 0] }, &[2, 3]).is_err());
        let a = SliceAttrs {
            axis: 1,
            start: -2,
            end: i64::MAX,
            step: 1,
        };
        assert_eq!(slice_shape(&a, &[2, 3]).unwrap(), vec![2, 2]);
        assert_eq!(slice(&a, &x).as_slice().unwrap(), &[1.0, 2.0, 4.0, 5.0]);
        let odd = SliceAttrs {
            axis: 1,
            start: 0,
            end: 3,
            step: 2,
        };
        assert_eq!(slice(&odd, &x).as_slice().unwrap(), &[0.0, 2.0, 3.0, 5.0]);
    }

    #[test]
    fn gradients() {
        let x = rand_tensor(&[2, 3, 4, 2], 8);
        let t = OpKind::Transpose(TransposeAttrs {
            perm: vec![0, 2, 3, 1],
        });
        check_op(&t, &[x.clone()], &[true]);
        let s = OpKind::Slice(SliceAttrs {
            axis: 2,
            start: 1,
            end: 4,
            step: 2,
        });
        check_op(&s, &[x], &[true]);
    }
}
