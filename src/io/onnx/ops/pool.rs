//! ONNX pooling: `MaxPool`, `AveragePool` (2-D windows, no dilation), `GlobalAveragePool`, and
//! `ReduceMean` over the two spatial axes of an NCHW tensor (PyTorch's `x.mean((2, 3))`), which
//! becomes a global average pool (followed by a Reshape when `keepdims` is 0).

use super::super::OnnxError;
use super::super::ctx::{MAX_ATTR, NodeCtx, Out};
use super::super::registry::Registry;
use super::{pads, pair, spatial};
use crate::ops::{OpKind, PoolAttrs, ReshapeAttrs};

pub(super) fn register(reg: &mut Registry) {
    reg.insert("MaxPool", max_pool);
    reg.insert("AveragePool", avg_pool);
    reg.insert("GlobalAveragePool", global_avg_pool);
    reg.insert("ReduceMean", reduce_mean);
}

/// Window attributes shared by MaxPool and AveragePool; `None` when qatlas cannot express them.
fn window(ctx: &mut NodeCtx<'_, '_>) -> Result<Option<PoolAttrs>, OnnxError> {
    let Some(ks) = ctx.ints("kernel_shape")? else {
        return Err(ctx.attr_err("kernel_shape", "is required"));
    };
    let [kh, kw] = ks else { return Ok(None) };
    let kernel = [
        ctx.bounded("kernel_shape", *kh, 1, MAX_ATTR)?,
        ctx.bounded("kernel_shape", *kw, 1, MAX_ATTR)?,
    ];
    let (Some(stride), Some(dilation)) = (pair(ctx, "strides")?, pair(ctx, "dilations")?) else {
        return Ok(None);
    };
    if dilation != [1, 1] {
        return Ok(None);
    }
    let hw = spatial(ctx)?;
    let Some(pads) = pads(ctx, hw, kernel, stride, dilation)? else {
        return Ok(None);
    };
    let ceil_mode = ctx.int("ceil_mode", 0)? != 0;
    let count_include_pad = ctx.int("count_include_pad", 0)? != 0;
    Ok(Some(PoolAttrs {
        kernel,
        stride,
        pads,
        ceil_mode,
        count_include_pad,
    }))
}

fn max_pool(ctx: &mut NodeCtx<'_, '_>) -> Result<Option<Out>, OnnxError> {
    let Some(a) = window(ctx)? else {
        return Ok(None);
    };
    let x = ctx.input_value(0, false)?;
    Ok(Some(Out::Value(ctx.emit(OpKind::MaxPool2d(a), &[x])?)))
}

fn avg_pool(ctx: &mut NodeCtx<'_, '_>) -> Result<Option<Out>, OnnxError> {
    let Some(a) = window(ctx)? else {
        return Ok(None);
    };
    let x = ctx.input_value(0, false)?;
    Ok(Some(Out::Value(ctx.emit(OpKind::AvgPool2d(a), &[x])?)))
}

fn global_avg_pool(ctx: &mut NodeCtx<'_, '_>) -> Result<Option<Out>, OnnxError> {
    if spatial(ctx)?.is_none() {
        return Ok(None);
    }
    let x = ctx.input_value(0, false)?;
    Ok(Some(Out::Value(ctx.emit(OpKind::GlobalAvgPool, &[x])?)))
}

fn reduce_mean(ctx: &mut NodeCtx<'_, '_>) -> Result<Option<Out>, OnnxError> {
    if spatial(ctx)?.is_none() {
        return Ok(None);
    }
    // Opset 18 moved `axes` from an attribute to an optional input.
    let axes: Vec<i64> = if ctx.opset() >= 18 {
        if !ctx.has_input(1) {
            return Ok(None);
        }
        match ctx.input_const(1)?.and_then(|c| c.i64s()) {
            Some(a) => a,
            None => return Ok(None),
        }
    } else {
        match ctx.ints("axes")? {
            Some(a) => a.to_vec(),
            None => return Ok(None),
        }
    };
    let mut norm: Vec<i64> = axes
        .iter()
        .map(|&a| if a < 0 { a + 4 } else { a })
        .collect();
    norm.sort_unstable();
    if norm != [2, 3] {
        return Ok(None);
    }
    let keep = ctx.int("keepdims", 1)? != 0;
    let x = ctx.input_value(0, false)?;
    let y = ctx.emit(OpKind::GlobalAvgPool, &[x])?;
    if keep {
        return Ok(Some(Out::Value(y)));
    }
    let r = ReshapeAttrs { shape: vec![0, 0] };
    Ok(Some(Out::Value(ctx.emit(OpKind::Reshape(r), &[y])?)))
}
