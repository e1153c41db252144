//! ONNX elementwise ops: `Add`, `Mul`, `Sub` and `Div` by a constant (as Add of the negation and
//! Mul by the reciprocal), `Relu`, `Clip` (ReLU6; bounds as attributes before opset 11, constant
//! inputs from 11), `Softmax`, `Dropout`, the gates `Sigmoid`, `HardSigmoid`, `HardSwish`, and
//! `Erf`, and `Concat` of tensors.

use super::super::OnnxError;
use super::super::ctx::{NodeCtx, Out};
use super::super::registry::Registry;
use crate::ops::{ClipAttrs, ConcatAttrs, DropoutAttrs, HardSigmoidAttrs, OpKind, SoftmaxAttrs};
use crate::tensor::from_vec;

pub(super) fn register(reg: &mut Registry) {
    reg.insert("Add", add);
    reg.insert("Sub", sub);
    reg.insert("Mul", mul);
    reg.insert("Div", div);
    reg.insert("Relu", relu);
    reg.insert("Clip", clip);
    reg.insert("Softmax", softmax);
    reg.insert("Dropout", dropout);
    reg.insert("Sigmoid", |c| unary(c, OpKind::Sigmoid));
    reg.insert("HardSwish", |c| unary(c, OpKind::HardSwish));
    reg.insert("Erf", |c| unary(c, OpKind::Erf));
    reg.insert("HardSigmoid", hard_sigmoid);
    reg.insert("Concat", concat);
    reg.insert("Sum", sum);
}

/// `Sum` of n tensors (opset 8+: broadcasting) as a chain of `Add`s; one input is itself.
fn sum(ctx: &mut NodeCtx<'_, '_>) -> Result<Option<Out>, OnnxError> {
    let n = ctx.num_inputs();
    if n == 0 {
        return Err(ctx.err("Sum needs at least one input"));
    }
    for i in 0..n {
        if ctx.input_const(i)?.is_some_and(|c| c.f32s().is_none()) {
            return Ok(None);
        }
    }
    let mut acc = ctx.input_value(0, true)?;
    for i in 1..n {
        let b = ctx.input_value(i, true)?;
        acc = ctx.emit(OpKind::Add, &[acc, b])?;
    }
    Ok(Some(Out::Value(acc)))
}

fn unary(ctx: &mut NodeCtx<'_, '_>, op: OpKind) -> Result<Option<Out>, OnnxError> {
    let x = ctx.input_value(0, false)?;
    Ok(Some(Out::Value(ctx.emit(op, &[x])?)))
}

fn hard_sigmoid(ctx: &mut NodeCtx<'_, '_>) -> Result<Option<Out>, OnnxError> {
    let d = HardSigmoidAttrs::default();
    let a = HardSigmoidAttrs {
        alpha: ctx.float("alpha", d.alpha)?,
        beta: ctx.float("beta", d.beta)?,
    };
    unary(ctx, OpKind::HardSigmoid(a))
}

/// Concat of activations (constant inputs would need folding into a parameter: kept
/// unsupported).
fn concat(ctx: &mut NodeCtx<'_, '_>) -> Result<Option<Out>, OnnxError> {
    let axis = ctx.int("axis", i64::MIN)?;
    if axis == i64::MIN {
        return Err(ctx.err("has no 'axis' attribute (required)"));
    }
    let n = ctx.num_inputs();
    let mut xs = Vec::with_capacity(n);
    for i in 0..n {
        if ctx.input_const(i)?.is_some() {
            return Ok(None);
        }
    }
    for i in 0..n {
        xs.push(ctx.input_value(i, false)?);
    }
    Ok(Some(Out::Value(
        ctx.emit(OpKind::Concat(ConcatAttrs { axis }), &xs)?,
    )))
}

/// Constant operands of Add are trainable (biases); of Mul they are fixed scales.
fn binary(
    ctx: &mut NodeCtx<'_, '_>,
    op: OpKind,
    trainable: bool,
) -> Result<Option<Out>, OnnxError> {
    // Integer constants (shape arithmetic the folder could not fold) are not float tensors.
    for i in 0..2 {
        if ctx.input_const(i)?.is_some_and(|c| c.f32s().is_none()) {
            return Ok(None);
        }
    }
    let a = ctx.input_value(0, trainable)?;
    let b = ctx.input_value(1, trainable)?;
    Ok(Some(Out::Value(ctx.emit(op, &[a, b])?)))
}

fn add(ctx: &mut NodeCtx<'_, '_>) -> Result<Option<Out>, OnnxError> {
    binary(ctx, OpKind::Add, true)
}

fn mul(ctx: &mut NodeCtx<'_, '_>) -> Result<Option<Out>, OnnxError> {
    binary(ctx, OpKind::Mul, false)
}

/// `x - c` as `x + (-c)`, `x / c` as `x · (1/c)`, for a float constant c.
fn by_constant(
    ctx: &mut NodeCtx<'_, '_>,
    op: OpKind,
    f: fn(f32) -> Option<f32>,
    suffix: &str,
) -> Result<Option<Out>, OnnxError> {
    let Some(c) = ctx.input_const(1)? else {
        return Ok(None);
    };
    let Some(v) = c.f32s() else { return Ok(None) };
    let Some(t) = v.iter().map(|&x| f(x)).collect::<Option<Vec<f32>>>() else {
        return Ok(None);
    };
    let x = ctx.input_value(0, false)?;
    let hint = format!("{}.{suffix}", ctx.node.input[1]);
    let p = ctx.add_param(&hint, from_vec(&c.dims, t), false)?;
    Ok(Some(Out::Value(ctx.emit(op, &[x, p])?)))
}

fn sub(ctx: &mut NodeCtx<'_, '_>) -> Result<Option<Out>, OnnxError> {
    by_constant(ctx, OpKind::Add, |x| Some(-x), "neg")
}

fn div(ctx: &mut NodeCtx<'_, '_>) -> Result<Option<Out>, OnnxError> {
    by_constant(ctx, OpKind::Mul, |x| (x != 0.0).then(|| 1.0 / x), "recip")
}

fn relu(ctx: &mut NodeCtx<'_, '_>) -> Result<Option<Out>, OnnxError> {
    let x = ctx.input_value(0, false)?;
    Ok(Some(Out::Value(ctx.emit(OpKind::Relu, &[x])?)))
}

fn clip(ctx: &mut NodeCtx<'_, '_>) -> Result<Option<Out>, OnnxError> {
    let (mut lo, mut hi) = (f32::NEG_INFINITY, f32::INFINITY);
    if ctx.opset() < 11 {
        lo = ctx.float("min", lo)?;
        hi = ctx.float("max", hi)?;
    } else {
        for (i, bound) in [(1, &mut lo), (2, &mut hi)] {
            if !ctx.has_input(i) {
                continue;
            }
            match ctx.input_const(i)?.and_then(|c| c.scalar()) {
                Some(v) => *bound = v,
                None => return Ok(None),
            }
        }
    }
    if lo.is_nan() || hi.is_nan() || lo > hi {
        return Err(ctx.err(format!("bounds [{lo}, {hi}] do not form an interval")));
    }
    let x = ctx.input_value(0, false)?;
    let y = ctx.emit(OpKind::Clip(ClipAttrs { min: lo, max: hi }), &[x])?;
    Ok(Some(Out::Value(y)))
}

fn softmax(ctx: &mut NodeCtx<'_, '_>) -> Result<Option<Out>, OnnxError> {
    let axis = if ctx.opset() < 13 {
        // Before opset 13 Softmax flattens the input to 2-D at `axis`: the same as a softmax
        // over one axis only when that axis is the last.
        let axis = ctx.int("axis", 1)?;
        let Some(rank) = ctx.input_shape(0)?.map(|s| s.len() as i64) else {
            return Ok(None);
        };
        if axis != -1 && axis != rank - 1 {
            return Ok(None);
        }
        -1
    } else {
        ctx.int("axis", -1)?
    };
    let x = ctx.input_value(0, false)?;
    let y = ctx.emit(OpKind::Softmax(SoftmaxAttrs { axis }), &[x])?;
    Ok(Some(Out::Value(y)))
}

fn dropout(ctx: &mut NodeCtx<'_, '_>) -> Result<Option<Out>, OnnxError> {
    let mut p = 0.5f32;
    if ctx.opset() < 12 {
        p = ctx.float("ratio", p)?;
    } else {
        if ctx.has_input(1) {
            match ctx.input_const(1)?.and_then(|c| c.scalar()) {
                Some(v) => p = v,
                None => return Ok(None),
            }
        }
        // training_mode = true drops activations at inference too.
        if ctx.has_input(2) {
            match ctx.input_const(2)?.and_then(|c| c.scalar()) {
                Some(0.0) => {}
                _ => return Ok(None),
            }
        }
    }
    if !(0.0..1.0).contains(&p) {
        return Err(ctx.err(format!("ratio {p} is outside [0, 1)")));
    }
    let x = ctx.input_value(0, false)?;
    let y = ctx.emit(OpKind::Dropout(DropoutAttrs { p }), &[x])?;
    Ok(Some(Out::Value(y)))
}
