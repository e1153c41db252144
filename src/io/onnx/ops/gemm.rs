//! ONNX `Gemm` and `MatMul`.
//!
//! `Gemm` (`Y = alpha·A'·B' + beta·C`) with a constant B becomes `Linear`: B is transposed to
//! PyTorch's [out, in] layout if `transB` is 0 and scaled by `alpha` at import, and `beta·C`
//! becomes the bias when it is a vector (else an `Add` after a bias-free Linear). A Gemm whose B
//! is an activation becomes `MatMul` (with `Mul`/`Add` for alpha and C); a transposed A is not
//! expressible and stays unsupported. `MatMul` maps to `MatMul` when qatlas's batching rule
//! (b 2-D, or the same leading dimensions as a) covers the shapes.

use super::super::OnnxError;
use super::super::ctx::{NodeCtx, Out};
use super::super::registry::Registry;
use crate::graph::{Source, ValueId};
use crate::ops::OpKind;
use crate::tensor::from_vec;

pub(super) fn register(reg: &mut Registry) {
    reg.insert("Gemm", gemm);
    reg.insert("MatMul", matmul);
}

fn gemm(ctx: &mut NodeCtx<'_, '_>) -> Result<Option<Out>, OnnxError> {
    let alpha = ctx.float("alpha", 1.0)?;
    let beta = ctx.float("beta", 1.0)?;
    let trans_a = ctx.int("transA", 0)? != 0;
    let trans_b = ctx.int("transB", 0)? != 0;
    for (name, v) in [("alpha", alpha), ("beta", beta)] {
        if !v.is_finite() {
            return Err(ctx.attr_err(name, format!("is {v}")));
        }
    }
    if trans_a || !ctx.has_input(0) || !ctx.has_input(1) {
        return Ok(None);
    }
    let Some(b) = ctx.input_const(1)? else {
        let bv = ctx.input_value(1, false)?;
        // A fake-quantized weight (a QDQ model): Linear on it, as for a constant B.
        if trans_b
            && alpha == 1.0
            && let Some([n, _]) = weight_fq_shape(ctx, bv)
        {
            let a = ctx.input_value(0, false)?;
            return linear(ctx, a, bv, n, beta);
        }
        // B is an activation: MatMul, then alpha and C.
        if trans_b {
            return Ok(None);
        }
        let a = ctx.input_value(0, false)?;
        let mut y = ctx.emit(OpKind::MatMul, &[a, bv])?;
        if alpha != 1.0 {
            let s = ctx.add_param(
                &format!("{}.alpha", ctx.name),
                from_vec(&[], vec![alpha]),
                false,
            )?;
            y = ctx.emit(OpKind::Mul, &[y, s])?;
        }
        return Ok(Some(Out::Value(add_c(ctx, y, beta, None)?)));
    };
    if b.dims.len() != 2 {
        return Err(ctx.err(format!("B must be 2-D, found shape {:?}", b.dims)));
    }
    let Some(bf) = b.f32s() else {
        return Err(ctx.err("B is an integer tensor where qatlas expects floats"));
    };
    let (k, n) = if trans_b {
        (b.dims[1], b.dims[0])
    } else {
        (b.dims[0], b.dims[1])
    };
    let a = ctx.input_value(0, false)?;
    let w = if trans_b && alpha == 1.0 {
        ctx.input_value(1, true)?
    } else {
        // W[o][i] = alpha · B'[i][o].
        let mut wt = vec![0.0f32; n * k];
        for o in 0..n {
            for i in 0..k {
                let src = if trans_b { o * k + i } else { i * n + o };
                wt[o * k + i] = alpha * bf[src];
            }
        }
        let hint = format!(
            "{}.{}",
            ctx.node.input[1],
            if trans_b { "scaled" } else { "t" }
        );
        ctx.add_param(&hint, from_vec(&[n, k], wt), true)?
    };
    linear(ctx, a, w, n, beta)
}

/// The [out, in] shape of `v` when it is a fake quantizer's output over a stored parameter.
fn weight_fq_shape(ctx: &NodeCtx<'_, '_>, v: ValueId) -> Option<[usize; 2]> {
    let g = &ctx.imp.g;
    let Source::Node(i) = g.values[v].source else {
        return None;
    };
    let n = &g.nodes[i];
    if !matches!(n.op, OpKind::FakeQuant(_))
        || !matches!(g.values[n.inputs[0]].source, Source::Param(_))
    {
        return None;
    }
    match ctx.imp.shapes[v].as_deref() {
        Some(&[o, k]) => Some([o, k]),
        _ => None,
    }
}

/// `Linear(a, w)` with `n` outputs, plus `beta·C` (the bias when it is a vector).
fn linear(
    ctx: &mut NodeCtx<'_, '_>,
    a: ValueId,
    w: ValueId,
    n: usize,
    beta: f32,
) -> Result<Option<Out>, OnnxError> {
    // A vector C (after broadcasting) is the bias.
    let c = if ctx.has_input(2) && beta != 0.0 {
        ctx.input_const(2)?
    } else {
        None
    };
    let bias_vec = c.as_ref().and_then(|c| {
        let v = c.f32s()?;
        match c.dims.as_slice() {
            [] | [1] => Some(vec![v[0] * beta; n]),
            [m] | [1, m] if *m == n => Some(v.iter().map(|x| x * beta).collect()),
            _ => None,
        }
    });
    if let Some(bias) = bias_vec {
        let bv = if beta == 1.0 && c.as_ref().is_some_and(|c| c.dims == [n]) {
            ctx.input_value(2, true)?
        } else {
            let hint = format!("{}.bias", ctx.node.input[2]);
            ctx.add_param(&hint, from_vec(&[n], bias), true)?
        };
        return Ok(Some(Out::Value(ctx.emit(OpKind::Linear, &[a, w, bv])?)));
    }
    let y = ctx.emit(OpKind::Linear, &[a, w])?;
    Ok(Some(Out::Value(add_c(ctx, y, beta, c.as_deref())?)))
}

/// `y + beta·C` when C is present and beta is not 0; `c` is C when it is constant.
fn add_c(
    ctx: &mut NodeCtx<'_, '_>,
    y: ValueId,
    beta: f32,
    c: Option<&super::super::tensor::Const>,
) -> Result<ValueId, OnnxError> {
    if !ctx.has_input(2) || beta == 0.0 {
        return Ok(y);
    }
    let hint = format!("{}.scaled", ctx.node.input[2]);
    let cv = match c.and_then(|c| c.f32s().map(|v| (c, v))) {
        Some((c, v)) if beta != 1.0 => ctx.add_param(
            &hint,
            from_vec(&c.dims, v.iter().map(|x| x * beta).collect()),
            true,
        )?,
        _ => {
            let cv = ctx.input_value(2, true)?;
            if beta == 1.0 || c.is_some() {
                cv
            } else {
                let s = ctx.add_param(
                    &format!("{}.beta", ctx.name),
                    from_vec(&[], vec![beta]),
                    false,
                )?;
                ctx.emit(OpKind::Mul, &[cv, s])?
            }
        }
    };
    ctx.emit(OpKind::Add, &[y, cv])
}

fn matmul(ctx: &mut NodeCtx<'_, '_>) -> Result<Option<Out>, OnnxError> {
    if let (Some(a), Some(b)) = (ctx.input_shape(0)?, ctx.input_shape(1)?) {
        let batched_ok = b.len() == 2
            || (b.len() >= 2 && a.len() == b.len() && a[..a.len() - 2] == b[..b.len() - 2]);
        if a.len() < 2 || !batched_ok {
            return Ok(None);
        }
    }
    let a = ctx.input_value(0, false)?;
    let b = ctx.input_value(1, true)?;
    Ok(Some(Out::Value(ctx.emit(OpKind::MatMul, &[a, b])?)))
}
