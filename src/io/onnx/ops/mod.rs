//! ONNX op families, one file each, every one with a `register` function that adds its op types
//! to the [`Registry`]. ONNX op-type strings appear only here. Shared helpers for the window
//! attributes of Conv and pooling (strides, dilations, pads and `auto_pad`) live in this file.

mod conv;
mod elementwise;
mod gemm;
mod norm;
mod pool;
mod quant;
mod shape;

use super::OnnxError;
use super::ctx::{MAX_ATTR, NodeCtx};
use super::registry::Registry;

/// Registers every op family.
pub(crate) fn register_all_ops(reg: &mut Registry) {
    conv::register(reg);
    elementwise::register(reg);
    gemm::register(reg);
    norm::register(reg);
    pool::register(reg);
    quant::register(reg);
    shape::register(reg);
}

/// A two-element positive attribute (strides, dilations), `None` if it is not 2-D.
fn pair(ctx: &NodeCtx<'_, '_>, attr: &str) -> Result<Option<[usize; 2]>, OnnxError> {
    match ctx.ints(attr)? {
        None => Ok(Some([1, 1])),
        Some([a, b]) => Ok(Some([
            ctx.bounded(attr, *a, 1, MAX_ATTR)?,
            ctx.bounded(attr, *b, 1, MAX_ATTR)?,
        ])),
        Some(_) => Ok(None),
    }
}

/// Padding [top, left, bottom, right] from `pads` or `auto_pad`. SAME_* needs the input's
/// spatial size `hw`; `Ok(None)` when it is unknown.
fn pads(
    ctx: &NodeCtx<'_, '_>,
    hw: Option<[usize; 2]>,
    kernel: [usize; 2],
    stride: [usize; 2],
    dilation: [usize; 2],
) -> Result<Option<[usize; 4]>, OnnxError> {
    let auto = ctx.string("auto_pad", "NOTSET")?;
    match auto.as_str() {
        "NOTSET" | "" => match ctx.ints("pads")? {
            None => Ok(Some([0; 4])),
            Some(p) if p.len() == 4 => {
                let mut out = [0usize; 4];
                for (o, &v) in out.iter_mut().zip(p) {
                    *o = ctx.bounded("pads", v, 0, MAX_ATTR)?;
                }
                Ok(Some(out))
            }
            Some(p) => Err(ctx.attr_err(
                "pads",
                format!("has {} values, expected 4 for a 2-D window", p.len()),
            )),
        },
        "VALID" => Ok(Some([0; 4])),
        "SAME_UPPER" | "SAME_LOWER" => {
            let Some(hw) = hw else { return Ok(None) };
            let mut begin = [0usize; 2];
            let mut end = [0usize; 2];
            for i in 0..2 {
                let out = hw[i].div_ceil(stride[i]);
                let span = dilation[i] * (kernel[i].max(1) - 1) + 1;
                let total = ((out.max(1) - 1) * stride[i] + span).saturating_sub(hw[i]);
                let small = total / 2;
                (begin[i], end[i]) = if auto == "SAME_UPPER" {
                    (small, total - small)
                } else {
                    (total - small, small)
                };
            }
            Ok(Some([begin[0], begin[1], end[0], end[1]]))
        }
        other => Err(ctx.attr_err(
            "auto_pad",
            format!("is '{other}', expected NOTSET, VALID, SAME_UPPER or SAME_LOWER"),
        )),
    }
}

/// The spatial size of input 0 when it is a known 4-D shape.
fn spatial(ctx: &mut NodeCtx<'_, '_>) -> Result<Option<[usize; 2]>, OnnxError> {
    Ok(ctx
        .input_shape(0)?
        .filter(|s| s.len() == 4)
        .map(|s| [s[2], s[3]]))
}
