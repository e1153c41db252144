//! Layer normalisation (ConvNeXt, vision transformers): each row over the trailing axes from
//! `axis` on is normalised to zero mean and unit variance, then scaled and shifted by
//! per-element `scale` and `bias` of the trailing shape (ONNX `LayerNormalization`).
//! Statistics in f64 per row; backward gives x, scale and bias.

use super::OpError;
use super::error::invalid;
use crate::tensor::Tensor;
use serde::{Deserialize, Serialize};

/// First normalised axis (negative counts from the end) and epsilon.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LayerNormAttrs {
    pub axis: i64,
    pub eps: f32,
}

fn split(a: &LayerNormAttrs, x: &[usize]) -> Result<(usize, usize), OpError> {
    let r = x.len() as i64;
    let ax = if a.axis < 0 { a.axis + r } else { a.axis };
    if ax < 1 || ax >= r {
        return Err(invalid(
            "LayerNorm",
            format!(
                "axis {} must leave the batch axis out of a rank-{r} input",
                a.axis
            ),
        ));
    }
    let inner: usize = x[ax as usize..].iter().product();
    Ok((x.iter().product::<usize>() / inner.max(1), inner))
}

/// Inputs x, scale (trailing shape), optional bias (trailing shape).
pub fn output_shape(a: &LayerNormAttrs, inputs: &[&[usize]]) -> Result<Vec<usize>, OpError> {
    let x = inputs[0];
    let (_, inner) = split(a, x)?;
    for (i, s) in inputs.iter().enumerate().skip(1) {
        if s.iter().product::<usize>() != inner {
            return Err(invalid(
                "LayerNorm",
                format!("input {i} has shape {s:?}, not the {inner} normalised elements"),
            ));
        }
    }
    Ok(x.to_vec())
}

/// Per row: (mean, 1/std).
fn stats(x: &[f32], inner: usize, eps: f32) -> Vec<(f32, f32)> {
    x.chunks(inner)
        .map(|r| {
            let n = inner as f64;
            let m = r.iter().map(|&v| v as f64).sum::<f64>() / n;
            let var = r.iter().map(|&v| (v as f64 - m).powi(2)).sum::<f64>() / n;
            (m as f32, (1.0 / (var + eps as f64).sqrt()) as f32)
        })
        .collect()
}

/// The contiguous values of a tensor (a copy only when it is not in standard layout).
fn values(t: &Tensor) -> ndarray::CowArray<'_, f32, ndarray::IxDyn> {
    t.as_standard_layout()
}

pub fn forward(a: &LayerNormAttrs, inputs: &[&Tensor]) -> Result<Tensor, OpError> {
    let (_, inner) = split(a, inputs[0].shape())?;
    let (x, g) = (values(inputs[0]), values(inputs[1]));
    let b = inputs.get(2).map(|t| values(t));
    let (xs, gs) = (
        x.as_slice().expect("standard"),
        g.as_slice().expect("standard"),
    );
    let bs = b.as_ref().map(|b| b.as_slice().expect("standard"));
    let st = stats(xs, inner, a.eps);
    let mut y = Tensor::zeros(inputs[0].raw_dim());
    for ((row, out), (m, inv)) in xs
        .chunks(inner)
        .zip(crate::tensor::slice_mut(&mut y).chunks_mut(inner))
        .zip(st)
    {
        for j in 0..inner {
            out[j] = (row[j] - m) * inv * gs[j] + bs.map_or(0.0, |b| b[j]);
        }
    }
    Ok(y)
}

pub fn backward(
    a: &LayerNormAttrs,
    inputs: &[&Tensor],
    dy: &Tensor,
    need: &[bool],
) -> Result<Vec<Option<Tensor>>, OpError> {
    let (_, inner) = split(a, inputs[0].shape())?;
    let (x, g, dy) = (values(inputs[0]), values(inputs[1]), values(dy));
    let (xs, gs, ds) = (
        x.as_slice().expect("standard"),
        g.as_slice().expect("standard"),
        dy.as_slice().expect("standard"),
    );
    let st = stats(xs, inner, a.eps);
    let mut dx = Tensor::zeros(inputs[0].raw_dim());
    let (mut dg, mut db) = (vec![0f64; inner], vec![0f64; inner]);
    let n = inner as f32;
    for (((row, d), out), (m, inv)) in xs
        .chunks(inner)
        .zip(ds.chunks(inner))
        .zip(crate::tensor::slice_mut(&mut dx).chunks_mut(inner))
        .zip(st)
    {
        let xhat: Vec<f32> = row.iter().map(|&v| (v - m) * inv).collect();
        let dxh: Vec<f32> = d.iter().zip(gs).map(|(&d, &g)| d * g).collect();
        let s1: f32 = dxh.iter().sum();
        let s2: f32 = dxh.iter().zip(&xhat).map(|(a, b)| a * b).sum();
        for j in 0..inner {
            out[j] = inv / n * (n * dxh[j] - s1 - xhat[j] * s2);
            dg[j] += (d[j] * xhat[j]) as f64;
            db[j] += d[j] as f64;
        }
    }
    let shaped = |v: Vec<f64>, like: &Tensor| {
        crate::tensor::from_vec(like.shape(), v.into_iter().map(|x| x as f32).collect())
    };
    Ok(vec![
        need[0].then_some(dx),
        need.get(1)
            .copied()
            .unwrap_or(false)
            .then(|| shaped(dg, inputs[1])),
        match inputs.get(2) {
            Some(b) if need.get(2).copied().unwrap_or(false) => Some(shaped(db, b)),
            _ => None,
        },
    ][..inputs.len()]
        .to_vec())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::OpKind;
    use crate::ops::gradcheck::{check_op, rand_tensor};
    use crate::tensor::from_vec;

    #[test]
    fn rows_are_normalised_then_scaled() {
        let x = from_vec(&[1, 2, 2], vec![1.0, 3.0, -2.0, 2.0]);
        let g = from_vec(&[2], vec![1.0, 2.0]);
        let b = from_vec(&[2], vec![0.5, 0.0]);
        let a = LayerNormAttrs { axis: -1, eps: 0.0 };
        let y = forward(&a, &[&x, &g, &b]).unwrap();
        assert_eq!(y.as_slice().unwrap(), &[-0.5, 2.0, -0.5, 2.0]);
        assert!(output_shape(&LayerNormAttrs { axis: 0, eps: 0.0 }, &[&[1, 2, 2], &[2]]).is_err());
    }

    #[test]
    fn gradients() {
        let a = LayerNormAttrs { axis: 2, eps: 1e-5 };
        let op = OpKind::LayerNorm(a);
        let xs = [
            rand_tensor(&[2, 3, 4, 5], 11).mapv(|v| v * 3.0),
            rand_tensor(&[4, 5], 12),
            rand_tensor(&[4, 5], 13),
        ];
        check_op(&op, &xs, &[true, true, true]);
        check_op(&op, &xs[..2], &[true, true]);
    }
}
