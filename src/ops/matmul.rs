//! Matrix product `a·b` over the last two axes: a [..,M,K] with b [K,N] (shared) or b [..,K,N]
//! (same leading dimensions as a).

use super::{OpError, error::invalid};
use crate::kernels::{MatMut, MatRef, sgemm};
use crate::tensor::{Tensor, from_vec, slice};

struct Dims {
    batch: usize,
    m: usize,
    k: usize,
    n: usize,
    b_batched: bool,
}

fn dims(a: &[usize], b: &[usize]) -> Result<Dims, OpError> {
    if a.len() < 2 || b.len() < 2 {
        return Err(invalid(
            "MatMul",
            format!("operands must be at least 2-D, found {a:?} and {b:?}"),
        ));
    }
    let (m, k) = (a[a.len() - 2], a[a.len() - 1]);
    let (kb, n) = (b[b.len() - 2], b[b.len() - 1]);
    let lead_a = &a[..a.len() - 2];
    let lead_b = &b[..b.len() - 2];
    if kb != k || (!lead_b.is_empty() && lead_b != lead_a) {
        return Err(invalid("MatMul", format!("cannot multiply {a:?} by {b:?}")));
    }
    Ok(Dims {
        batch: lead_a.iter().product(),
        m,
        k,
        n,
        b_batched: !lead_b.is_empty(),
    })
}

/// Shape rule.
pub fn output_shape(inputs: &[&[usize]]) -> Result<Vec<usize>, OpError> {
    let d = dims(inputs[0], inputs[1])?;
    let mut s = inputs[0][..inputs[0].len() - 2].to_vec();
    s.extend([d.m, d.n]);
    Ok(s)
}

/// Forward pass.
pub fn forward(a: &Tensor, b: &Tensor) -> Tensor {
    let d = dims(a.shape(), b.shape()).expect("validated matmul shapes");
    let shape = output_shape(&[a.shape(), b.shape()]).expect("validated");
    let mut c = vec![0.0f32; d.batch * d.m * d.n];
    let (sa, sb) = (slice(a), slice(b));
    if !d.b_batched {
        sgemm(
            MatRef::row_major(sa, d.batch * d.m, d.k),
            MatRef::row_major(sb, d.k, d.n),
            MatMut::row_major(&mut c, d.batch * d.m, d.n),
            false,
            true,
        );
    } else {
        for i in 0..d.batch {
            sgemm(
                MatRef::row_major(&sa[i * d.m * d.k..][..d.m * d.k], d.m, d.k),
                MatRef::row_major(&sb[i * d.k * d.n..][..d.k * d.n], d.k, d.n),
                MatMut::row_major(&mut c[i * d.m * d.n..][..d.m * d.n], d.m, d.n),
                false,
                true,
            );
        }
    }
    from_vec(&shape, c)
}

/// Backward pass: da = dc·bᵀ, db = aᵀ·dc (summed over the batch when b is shared).
pub fn backward(a: &Tensor, b: &Tensor, dc: &Tensor, need: &[bool]) -> Vec<Option<Tensor>> {
    let d = dims(a.shape(), b.shape()).expect("validated matmul shapes");
    let (sa, sb, sdc) = (slice(a), slice(b), slice(dc));
    let bs = if d.b_batched { d.k * d.n } else { 0 };
    let da = need[0].then(|| {
        let mut da = vec![0.0f32; sa.len()];
        for i in 0..d.batch {
            sgemm(
                MatRef::row_major(&sdc[i * d.m * d.n..][..d.m * d.n], d.m, d.n),
                MatRef::row_major_t(&sb[i * bs..][..d.k * d.n], d.k, d.n),
                MatMut::row_major(&mut da[i * d.m * d.k..][..d.m * d.k], d.m, d.k),
                false,
                true,
            );
        }
        from_vec(a.shape(), da)
    });
    let db = need[1].then(|| {
        let mut db = vec![0.0f32; sb.len()];
        if !d.b_batched {
            sgemm(
                MatRef::row_major_t(sa, d.batch * d.m, d.k),
                MatRef::row_major(sdc, d.batch * d.m, d.n),
                MatMut::row_major(&mut db, d.k, d.n),
                false,
                true,
            );
        } else {
            for i in 0..d.batch {
                sgemm(
                    MatRef::row_major_t(&sa[i * d.m * d.k..][..d.m * d.k], d.m, d.k),
                    MatRef::row_major(&sdc[i * d.m * d.n..][..d.m * d.n], d.m, d.n),
                    MatMut::row_major(&mut db[i * d.k * d.n..][..d.k * d.n], d.k, d.n),
                    false,
                    true,
                );
            }
        }
        from_vec(b.shape(), db)
    });
    vec![da, db]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::OpKind;
    use crate::ops::gradcheck::{check_op, rand_tensor};

    #[test]
    fn hand_computed() {
        let a = from_vec(&[2, 2], vec![1.0, 2.0, 3.0, 4.0]);
        let b = from_vec(&[2, 1], vec![5.0, 6.0]);
        assert_eq!(forward(&a, &b).as_slice().unwrap(), &[17.0, 39.0]);
    }

    #[test]
    fn gradients_shared_and_batched() {
        check_op(
            &OpKind::MatMul,
            &[rand_tensor(&[2, 3, 4], 1), rand_tensor(&[4, 5], 2)],
            &[true, true],
        );
        check_op(
            &OpKind::MatMul,
            &[rand_tensor(&[2, 3, 4], 3), rand_tensor(&[2, 4, 2], 4)],
            &[true, true],
        );
    }

    #[test]
    fn rejects_mismatch() {
        assert!(output_shape(&[&[3, 4], &[5, 2]]).is_err());
        assert!(output_shape(&[&[2, 3, 4], &[3, 4, 2]]).is_err());
    }
}
