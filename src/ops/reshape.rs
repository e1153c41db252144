//! Flatten and Reshape (ONNX semantics: 0 copies a dimension, -1 is inferred).

use super::{OpError, error::invalid};
use crate::tensor::Tensor;
use ndarray::IxDyn;
use serde::{Deserialize, Serialize};

/// Flatten to 2-D: [prod(d[..axis]), prod(d[axis..])].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FlattenAttrs {
    pub axis: usize,
}

/// Target shape of a Reshape.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReshapeAttrs {
    pub shape: Vec<i64>,
}

/// Shape rule of Flatten.
pub fn flatten_shape(a: &FlattenAttrs, x: &[usize]) -> Result<Vec<usize>, OpError> {
    if a.axis > x.len() {
        return Err(invalid(
            "Flatten",
            format!("axis {} out of range for shape {x:?}", a.axis),
        ));
    }
    Ok(vec![
        x[..a.axis].iter().product(),
        x[a.axis..].iter().product(),
    ])
}

/// Shape rule of Reshape.
pub fn reshape_shape(a: &ReshapeAttrs, x: &[usize]) -> Result<Vec<usize>, OpError> {
    let total: usize = x.iter().product();
    let mut out = Vec::with_capacity(a.shape.len());
    let mut infer = None;
    for (i, &d) in a.shape.iter().enumerate() {
        match d {
            0 => out.push(*x.get(i).ok_or_else(|| {
                invalid(
                    "Reshape",
                    format!("0 at axis {i} but input has rank {}", x.len()),
                )
            })?),
            -1 if infer.is_none() => {
                infer = Some(i);
                out.push(1);
            }
            d if d > 0 => out.push(d as usize),
            _ => {
                return Err(invalid(
                    "Reshape",
                    format!("invalid target shape {:?}", a.shape),
                ));
            }
        }
    }
    let known: usize = out.iter().product();
    if let Some(i) = infer {
        if known == 0 || total % known != 0 {
            return Err(invalid(
                "Reshape",
                format!("cannot reshape {x:?} to {:?}", a.shape),
            ));
        }
        out[i] = total / known;
    }
    if out.iter().product::<usize>() != total {
        return Err(invalid(
            "Reshape",
            format!("cannot reshape {x:?} ({total} elements) to {:?}", a.shape),
        ));
    }
    Ok(out)
}

fn to_shape(x: &Tensor, s: &[usize]) -> Tensor {
    crate::tensor::standard(x.clone())
        .into_shape_with_order(IxDyn(s))
        .expect("element counts were checked")
}

/// Flatten forward.
pub fn flatten(a: &FlattenAttrs, x: &Tensor) -> Result<Tensor, OpError> {
    Ok(to_shape(x, &flatten_shape(a, x.shape())?))
}

/// Reshape forward.
pub fn reshape(a: &ReshapeAttrs, x: &Tensor) -> Result<Tensor, OpError> {
    Ok(to_shape(x, &reshape_shape(a, x.shape())?))
}

/// Backward of both: the gradient reshaped to the input's shape.
pub fn reshape_back(dy: &Tensor, input_shape: &[usize]) -> Tensor {
    to_shape(dy, input_shape)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::OpKind;
    use crate::ops::gradcheck::{check_op, rand_tensor};

    #[test]
    fn shapes() {
        assert_eq!(
            flatten_shape(&FlattenAttrs { axis: 1 }, &[4, 32, 14, 14]).unwrap(),
            vec![4, 6272]
        );
        let r = ReshapeAttrs { shape: vec![0, -1] };
        assert_eq!(reshape_shape(&r, &[4, 2, 3]).unwrap(), vec![4, 6]);
        assert!(reshape_shape(&ReshapeAttrs { shape: vec![5, -1] }, &[4, 2, 3]).is_err());
        assert!(
            reshape_shape(
                &ReshapeAttrs {
                    shape: vec![-1, -1]
                },
                &[4]
            )
            .is_err()
        );
    }

    #[test]
    fn gradients() {
        check_op(
            &OpKind::Flatten(FlattenAttrs { axis: 1 }),
            &[rand_tensor(&[2, 3, 2], 1)],
            &[true],
        );
        check_op(
            &OpKind::Reshape(ReshapeAttrs { shape: vec![3, -1] }),
            &[rand_tensor(&[2, 3, 2], 2)],
            &[true],
        );
    }
}
