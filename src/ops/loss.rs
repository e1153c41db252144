//! Softmax cross-entropy loss over logits [N, C] with integer labels, mean over the batch.

use super::{OpError, error::invalid};
use crate::tensor::{Tensor, from_vec, slice};

/// Loss value, its gradient with respect to the logits, and the number of correct argmax
/// predictions.
pub struct LossOut {
    pub loss: f32,
    pub grad: Tensor,
    pub correct: usize,
}

/// Mean softmax cross-entropy. Labels must be `< C`.
pub fn softmax_cross_entropy(logits: &Tensor, labels: &[u32]) -> Result<LossOut, OpError> {
    let s = logits.shape();
    if s.len() != 2 || s[0] != labels.len() {
        return Err(invalid(
            "CrossEntropy",
            format!("logits {s:?} do not match {} labels", labels.len()),
        ));
    }
    let (n, c) = (s[0], s[1]);
    let mut grad = vec![0.0f32; n * c];
    let mut loss = 0.0f64;
    let mut correct = 0;
    for (i, (row, &y)) in slice(logits).chunks(c).zip(labels).enumerate() {
        let y = y as usize;
        if y >= c {
            return Err(invalid(
                "CrossEntropy",
                format!("label {y} out of range for {c} classes"),
            ));
        }
        let (arg, max) = argmax(row);
        correct += usize::from(arg == y);
        let z: f64 = row.iter().map(|v| ((v - max) as f64).exp()).sum();
        loss += z.ln() - (row[y] - max) as f64;
        let g = &mut grad[i * c..(i + 1) * c];
        for (gj, v) in g.iter_mut().zip(row) {
            *gj = (((v - max) as f64).exp() / z / n as f64) as f32;
        }
        g[y] -= 1.0 / n as f32;
    }
    Ok(LossOut {
        loss: (loss / n.max(1) as f64) as f32,
        grad: from_vec(s, grad),
        correct,
    })
}

/// Index and value of the largest element (first on ties).
pub fn argmax(row: &[f32]) -> (usize, f32) {
    row.iter()
        .enumerate()
        .fold((0, f32::NEG_INFINITY), |(bi, bv), (i, &v)| {
            if v > bv { (i, v) } else { (bi, bv) }
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::gradcheck::rand_tensor;

    #[test]
    fn uniform_logits_give_log_c() {
        let l = softmax_cross_entropy(&Tensor::zeros(ndarray::IxDyn(&[2, 4])), &[1, 3]).unwrap();
        assert!((l.loss - 4f32.ln()).abs() < 1e-6);
        assert!((l.grad[[0, 1]] - (0.25 - 1.0) / 2.0).abs() < 1e-6);
    }

    #[test]
    fn gradient_matches_finite_differences() {
        let x = rand_tensor(&[3, 5], 1).mapv(|v| 3.0 * v);
        let labels = [0, 4, 2];
        let g = softmax_cross_entropy(&x, &labels).unwrap().grad;
        for k in 0..x.len() {
            let mut p = x.clone();
            p.as_slice_mut().unwrap()[k] += 1e-2;
            let mut m = x.clone();
            m.as_slice_mut().unwrap()[k] -= 1e-2;
            let num = (softmax_cross_entropy(&p, &labels).unwrap().loss
                - softmax_cross_entropy(&m, &labels).unwrap().loss)
                / 2e-2;
            assert!(
                (num - g.as_slice().unwrap()[k]).abs() < 1e-3,
                "{num} vs {}",
                g.as_slice().unwrap()[k]
            );
        }
    }

    #[test]
    fn rejects_bad_labels() {
        assert!(softmax_cross_entropy(&Tensor::zeros(ndarray::IxDyn(&[1, 3])), &[3]).is_err());
        assert!(softmax_cross_entropy(&Tensor::zeros(ndarray::IxDyn(&[2, 3])), &[0]).is_err());
    }
}
