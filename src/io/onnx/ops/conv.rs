//! ONNX `Conv` -> `Conv2d` (groups, strides, dilations, explicit pads or `auto_pad`).
//! 1-D and 3-D convolutions stay unsupported.

use super::super::OnnxError;
use super::super::ctx::{MAX_ATTR, NodeCtx, Out};
use super::super::registry::Registry;
use super::{pads, pair, spatial};
use crate::ops::{Conv2dAttrs, OpKind};

pub(super) fn register(reg: &mut Registry) {
    reg.insert("Conv", conv);
}

fn conv(ctx: &mut NodeCtx<'_, '_>) -> Result<Option<Out>, OnnxError> {
    let Some(w) = ctx.input_shape(1)? else {
        return Ok(None);
    };
    if w.len() != 4 {
        return Ok(None);
    }
    let kernel = [w[2], w[3]];
    if let Some(ks) = ctx.ints("kernel_shape")?
        && (ks.len() != 2 || ks.iter().zip(kernel).any(|(&a, b)| a != b as i64))
    {
        return Err(ctx.attr_err(
            "kernel_shape",
            format!("is {ks:?} but the weight has shape {w:?}"),
        ));
    }
    let (Some(stride), Some(dilation)) = (pair(ctx, "strides")?, pair(ctx, "dilations")?) else {
        return Ok(None);
    };
    let group = ctx.int("group", 1)?;
    let groups = ctx.bounded("group", group, 1, MAX_ATTR)?;
    let hw = spatial(ctx)?;
    let Some(pads) = pads(ctx, hw, kernel, stride, dilation)? else {
        return Ok(None);
    };
    let x = ctx.input_value(0, false)?;
    let wv = ctx.input_value(1, true)?;
    let mut ins = vec![x, wv];
    if ctx.has_input(2) {
        ins.push(ctx.input_value(2, true)?);
    }
    let attrs = Conv2dAttrs {
        stride,
        pads,
        dilation,
        groups,
    };
    Ok(Some(Out::Value(ctx.emit(OpKind::Conv2d(attrs), &ins)?)))
}
