//! ONNX `QuantizeLinear` / `DequantizeLinear` (QDQ) -> qatlas `FakeQuant`, so that a quantized
//! ONNX model (qatlas's own QDQ export, int8 or int4; ONNX Runtime's `quantize_static` output)
//! opens as a quantized model with its scales rather than as an error.
//!
//! - `QuantizeLinear(x, s, zp)` becomes a `FakeQuant` on `x` whose grid is the zero point's type
//!   (UINT8, INT8, UINT4, INT4; UINT8 when there is no zero point), per tensor for a one-element
//!   scale and per channel along `axis` otherwise. Its float output is what the pair computes.
//! - The `DequantizeLinear` that reads such an output with the same grid is that value.
//! - `DequantizeLinear` of an integer constant (weights stored quantized) becomes the dequantized
//!   weight followed by a `FakeQuant` on the same grid (it reproduces those values exactly), and
//!   of an INT32 constant (a quantized bias) simply the float constant.
//!
//! Blocked quantization (`block_size`), float8 and 16-bit grids stay unsupported.

use super::super::OnnxError;
use super::super::ctx::{NodeCtx, Out};
use super::super::import::QdqGrid;
use super::super::proto::tensor_proto::DataType;
use super::super::registry::Registry;
use super::super::tensor::Const;
use crate::ops::{FakeQuantAttrs, OpKind, QuantGrid};
use crate::tensor::from_vec;
use std::rc::Rc;

pub(super) fn register(reg: &mut Registry) {
    reg.insert("QuantizeLinear", quantize);
    reg.insert("DequantizeLinear", dequantize);
}

/// The integer range of a zero-point element type.
fn range_of(dt: i32) -> Option<(i32, i32)> {
    match DataType::try_from(dt).ok()? {
        DataType::Uint8 => Some((0, 255)),
        DataType::Int8 => Some((-128, 127)),
        DataType::Uint4 => Some((0, 15)),
        DataType::Int4 => Some((-8, 7)),
        _ => None,
    }
}

/// The grid of a Q or DQ node over an input of rank `rank` and shape `shape`; `Ok(None)` when
/// it is not one qatlas expresses (unknown zero-point type, blocked quantization).
fn grid(
    ctx: &mut NodeCtx<'_, '_>,
    shape: Option<&[usize]>,
    value_type: Option<i32>,
) -> Result<Option<QdqGrid>, OnnxError> {
    if ctx.int("block_size", 0)? != 0 {
        return Ok(None);
    }
    let Some(scale) = ctx.input_const(1)? else {
        return Ok(None);
    };
    let Some(scale) = scale.f32s().map(<[f32]>::to_vec) else {
        return Err(ctx.err("its scale is an integer tensor"));
    };
    if scale.is_empty() || scale.iter().any(|s| !s.is_finite() || *s <= 0.0) {
        return Err(ctx.err("its scale must hold finite positive values"));
    }
    let (dt, zero_point) = if ctx.has_input(2) {
        let Some(z) = ctx.input_const(2)? else {
            return Ok(None);
        };
        let Some(dt) = ctx.input_elem_type(2)? else {
            return Ok(None);
        };
        let Some(zp) = z.i64s() else { return Ok(None) };
        if zp.len() != scale.len() {
            return Err(ctx.err(format!(
                "its zero point has {} values for {} scales",
                zp.len(),
                scale.len()
            )));
        }
        (dt, zp)
    } else {
        let dt = value_type.unwrap_or(ctx.int("output_dtype", DataType::Uint8 as i64)? as i32);
        (dt, vec![0; scale.len()])
    };
    let Some((qmin, qmax)) = range_of(dt) else {
        return Ok(None);
    };
    if zero_point
        .iter()
        .any(|&z| z < qmin as i64 || z > qmax as i64)
    {
        return Err(ctx.err(format!(
            "its zero point lies outside the {qmin}..={qmax} grid"
        )));
    }
    let axis = if scale.len() == 1 {
        None
    } else {
        let Some(shape) = shape else { return Ok(None) };
        let rank = shape.len() as i64;
        let a = ctx.int("axis", 1)?;
        let a = if a < 0 { a + rank } else { a };
        if !(0..rank).contains(&a) || shape[a as usize] != scale.len() {
            return Err(ctx.attr_err(
                "axis",
                format!(
                    "selects no dimension of shape {shape:?} with {} scales",
                    scale.len()
                ),
            ));
        }
        Some(a as usize)
    };
    Ok(Some(QdqGrid {
        qmin,
        qmax,
        scale,
        zero_point,
        axis,
    }))
}

/// Emits a fake quantizer of `x` on `g`.
fn fake_quant(
    ctx: &mut NodeCtx<'_, '_>,
    x: crate::graph::ValueId,
    g: &QdqGrid,
) -> Result<crate::graph::ValueId, OnnxError> {
    let c = g.scale.len();
    let s = ctx.add_param(
        &format!("{}.scale", ctx.name),
        from_vec(&[c], g.scale.clone()),
        false,
    )?;
    let zp = g.zero_point.iter().map(|&z| z as f32).collect();
    let z = ctx.add_param(
        &format!("{}.zero_point", ctx.name),
        from_vec(&[c], zp),
        false,
    )?;
    let attrs = FakeQuantAttrs {
        grid: QuantGrid::Int {
            qmin: g.qmin,
            qmax: g.qmax,
        },
        axis: g.axis,
        observer: None,
        damping: 0.0,
    };
    let y = ctx.emit(OpKind::FakeQuant(attrs), &[x, s, z])?;
    ctx.imp.quantized.insert(y, g.clone());
    Ok(y)
}

fn quantize(ctx: &mut NodeCtx<'_, '_>) -> Result<Option<Out>, OnnxError> {
    let shape = ctx.input_shape(0)?;
    let Some(g) = grid(ctx, shape.as_deref(), None)? else {
        return Ok(None);
    };
    // A float constant (a weight) becomes a trainable parameter, as it would feeding a layer.
    let trainable = ctx.input_const(0)?.is_some();
    let x = ctx.input_value(0, trainable)?;
    Ok(Some(Out::Value(fake_quant(ctx, x, &g)?)))
}

fn dequantize(ctx: &mut NodeCtx<'_, '_>) -> Result<Option<Out>, OnnxError> {
    let shape = ctx.input_shape(0)?;
    let Some(q) = ctx.input_const(0)? else {
        // An activation: only the output of an imported QuantizeLinear is a float value here.
        let x = ctx.input_value(0, false)?;
        let Some(qg) = ctx.imp.quantized.get(&x).cloned() else {
            return Ok(None);
        };
        let Some(g) = grid(ctx, shape.as_deref(), Some(range_type(&qg)))? else {
            return Ok(None);
        };
        if g != qg {
            return Err(
                ctx.err("its scale, zero point or axis differ from the QuantizeLinear it reads")
            );
        }
        return Ok(Some(Out::Value(x)));
    };
    let Some(dt) = ctx.input_elem_type(0)? else {
        return Ok(None);
    };
    let Some(values) = q.i64s() else {
        return Err(ctx.err("its input is a float tensor where an integer one is expected"));
    };
    if dt == DataType::Int32 as i32 {
        // A quantized bias: the float constant it stands for (biases stay f32 in qatlas).
        let Some(g) = bias_grid(ctx)? else {
            return Ok(None);
        };
        let v = dequantized(&values, &q.dims, &g);
        return Ok(Some(Out::Const(Rc::new(Const::f32(q.dims.clone(), v)))));
    }
    let Some(g) = grid(ctx, Some(&q.dims), Some(dt))? else {
        return Ok(None);
    };
    if (range_of(dt) != Some((g.qmin, g.qmax)))
        || values
            .iter()
            .any(|&v| v < g.qmin as i64 || v > g.qmax as i64)
    {
        return Err(ctx.err("its integer input does not fit its zero point's grid"));
    }
    let w = dequantized(&values, &q.dims, &g);
    let x = ctx.add_param(
        &format!("{}.dequantized", ctx.node.input[0]),
        from_vec(&q.dims, w),
        true,
    )?;
    Ok(Some(Out::Value(fake_quant(ctx, x, &g)?)))
}

/// An element type with the range of `g` (the one a matching DequantizeLinear must use when
/// it has no zero point of its own).
fn range_type(g: &QdqGrid) -> i32 {
    let dt = match (g.qmin, g.qmax) {
        (-128, 127) => DataType::Int8,
        (0, 15) => DataType::Uint4,
        (-8, 7) => DataType::Int4,
        _ => DataType::Uint8,
    };
    dt as i32
}

/// Scales (and zero points, 0 when absent) of a DequantizeLinear of INT32 data.
fn bias_grid(ctx: &mut NodeCtx<'_, '_>) -> Result<Option<QdqGrid>, OnnxError> {
    let Some(scale) = ctx
        .input_const(1)?
        .and_then(|s| s.f32s().map(<[f32]>::to_vec))
    else {
        return Ok(None);
    };
    let zero_point = match ctx.has_input(2) {
        true => match ctx.input_const(2)?.and_then(|z| z.i64s()) {
            Some(z) if z.len() == scale.len() => z,
            _ => return Ok(None),
        },
        false => vec![0; scale.len()],
    };
    let axis = (scale.len() > 1).then_some(0);
    Ok(Some(QdqGrid {
        qmin: i32::MIN,
        qmax: i32::MAX,
        scale,
        zero_point,
        axis,
    }))
}

/// `(q - zp) · s` element by element, per channel along `g.axis` of `dims`.
fn dequantized(q: &[i64], dims: &[usize], g: &QdqGrid) -> Vec<f32> {
    let (outer_stride, c) = match g.axis {
        None => (q.len().max(1), 1),
        Some(a) => (dims[a + 1..].iter().product::<usize>().max(1), dims[a]),
    };
    q.iter()
        .enumerate()
        .map(|(i, &v)| {
            let ch = if c == 1 { 0 } else { (i / outer_stride) % c };
            (v - g.zero_point[ch]) as f32 * g.scale[ch]
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dequantizes_per_channel_along_the_axis() {
        let g = QdqGrid {
            qmin: -128,
            qmax: 127,
            scale: vec![0.5, 2.0],
            zero_point: vec![0, 1],
            axis: Some(0),
        };
        // Shape [2, 2]: row 0 with scale 0.5, row 1 with scale 2 and zero point 1.
        assert_eq!(
            dequantized(&[2, -4, 3, 1], &[2, 2], &g),
            vec![1.0, -2.0, 4.0, 0.0]
        );
        let g = QdqGrid { axis: Some(1), ..g };
        assert_eq!(
            dequantized(&[2, -4, 3, 1], &[2, 2], &g),
            vec![1.0, -10.0, 1.5, 0.0]
        );
    }
}
