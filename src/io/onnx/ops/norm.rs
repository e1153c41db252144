//! ONNX `BatchNormalization` -> `BatchNorm2d`, kept as a node (never folded at import: QAT may
//! train it; folding is a later, explicit step). ONNX's momentum weights the running value
//! (`running·m + batch·(1-m)`), PyTorch's and qatlas's the batch value, so qatlas's momentum is
//! `1 - m`. `LayerNormalization` -> `LayerNorm` (its Mean / InvStdDev outputs unread). `LRN` -> `Lrn`.

use super::super::OnnxError;
use super::super::ctx::{NodeCtx, Out};
use super::super::registry::Registry;
use crate::ops::{BatchNormAttrs, LayerNormAttrs, LrnAttrs, OpKind};

pub(super) fn register(reg: &mut Registry) {
    reg.insert("BatchNormalization", batch_norm);
    reg.insert("LayerNormalization", layer_norm);
    reg.insert("LRN", lrn);
}

/// `LRN` (size required; alpha 1e-4, beta 0.75, bias 1 by default).
fn lrn(ctx: &mut NodeCtx<'_, '_>) -> Result<Option<Out>, OnnxError> {
    let size = ctx.int("size", 0)?;
    if !(1..=4096).contains(&size) {
        return Err(ctx.attr_err("size", format!("is {size}, expected 1 to 4096 channels")));
    }
    let a = LrnAttrs {
        size: size as usize,
        alpha: ctx.float("alpha", 1e-4)?,
        beta: ctx.float("beta", 0.75)?,
        bias: ctx.float("bias", 1.0)?,
    };
    let x = ctx.input_value(0, false)?;
    Ok(Some(Out::Value(ctx.emit(OpKind::Lrn(a), &[x])?)))
}

fn batch_norm(ctx: &mut NodeCtx<'_, '_>) -> Result<Option<Out>, OnnxError> {
    // training_mode = 1 normalises with the batch's own statistics even at inference.
    if ctx.int("training_mode", 0)? != 0 {
        return Ok(None);
    }
    if ctx.num_inputs() != 5 || !(0..5).all(|i| ctx.has_input(i)) {
        return Err(ctx.err(format!(
            "expected 5 inputs (X, scale, B, mean, var), found {}",
            ctx.num_inputs()
        )));
    }
    let eps = ctx.float("epsilon", 1e-5)?;
    let m = ctx.float("momentum", 0.9)?;
    if !(eps.is_finite() && eps >= 0.0) {
        return Err(ctx.attr_err("epsilon", format!("is {eps}, expected a value >= 0")));
    }
    if !(0.0..=1.0).contains(&m) {
        return Err(ctx.attr_err("momentum", format!("is {m}, expected a value in [0, 1]")));
    }
    let x = ctx.input_value(0, false)?;
    let gamma = ctx.input_value(1, true)?;
    let beta = ctx.input_value(2, true)?;
    let mean = ctx.input_value(3, false)?;
    let var = ctx.input_value(4, false)?;
    let attrs = BatchNormAttrs {
        eps,
        momentum: 1.0 - m,
        frozen: false,
    };
    let y = ctx.emit(OpKind::BatchNorm2d(attrs), &[x, gamma, beta, mean, var])?;
    Ok(Some(Out::Value(y)))
}

/// Scale and bias are trainable parameters (LayerNorm's affine weights).
fn layer_norm(ctx: &mut NodeCtx<'_, '_>) -> Result<Option<Out>, OnnxError> {
    let a = LayerNormAttrs {
        axis: ctx.int("axis", -1)?,
        eps: ctx.float("epsilon", 1e-5)?,
    };
    if ctx.int("stash_type", 1)? != 1 {
        return Ok(None);
    }
    let x = ctx.input_value(0, false)?;
    let mut ins = vec![x, ctx.input_value(1, true)?];
    if ctx.has_input(2) {
        ins.push(ctx.input_value(2, true)?);
    }
    Ok(Some(Out::Value(ctx.emit(OpKind::LayerNorm(a), &ins)?)))
}
