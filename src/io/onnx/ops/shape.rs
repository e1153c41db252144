//! ONNX shape and plumbing ops: `Flatten`, `Reshape` (to a constant shape, folded shape
//! arithmetic included: see `fold`), `Transpose`, `Slice` of activations, `Identity`,
//! `Constant` and `Cast` (folded for constants; float-to-float casts of activations vanish; a
//! cast to float16 is an fp16 fake quantizer).
//!
//! A model exported with a fixed batch size often reshapes to `[batch, -1]` with the batch size
//! written out; qatlas runs any batch size, so when the input's batch axis is fixed and a Reshape
//! target starts with that number on a tensor whose first axis has it, the entry becomes 0 ("copy
//! the batch axis").

use super::super::OnnxError;
use super::super::ctx::{NodeCtx, Out};
use super::super::fold::BATCH;
use super::super::proto::tensor_proto::DataType;
use super::super::registry::Registry;
use super::super::tensor::{Const, ConstData};
use crate::ops::{
    FakeQuantAttrs, FlattenAttrs, OpKind, QuantGrid, ReshapeAttrs, SliceAttrs, TransposeAttrs,
};
use std::rc::Rc;

pub(super) fn register(reg: &mut Registry) {
    reg.insert("Flatten", flatten);
    reg.insert("Reshape", reshape);
    reg.insert("Identity", identity);
    reg.insert("Constant", constant);
    reg.insert("Cast", cast);
    reg.insert("Transpose", transpose);
    reg.insert("Slice", slice);
}

fn transpose(ctx: &mut NodeCtx<'_, '_>) -> Result<Option<Out>, OnnxError> {
    let Some(rank) = ctx.input_shape(0)?.map(|s| s.len()) else {
        return Ok(None);
    };
    let perm: Vec<usize> = match ctx.ints("perm")? {
        Some(p) => {
            let mut v = Vec::with_capacity(p.len());
            for &d in p {
                v.push(ctx.bounded("perm", d, 0, rank as i64 - 1)?);
            }
            v
        }
        None => (0..rank).rev().collect(),
    };
    // A constant (a weight transposed for a MatMul when the exporter did not fold it) is
    // transposed here.
    if let Some(c) = ctx.input_const(0)? {
        let Some(t) = c.to_tensor().filter(|t| t.ndim() == perm.len()) else {
            return Ok(None);
        };
        let t = crate::ops::layout::transpose(&TransposeAttrs { perm }, &t);
        let v = crate::tensor::slice(&t).to_vec();
        return Ok(Some(Out::Const(Rc::new(Const::f32(t.shape().to_vec(), v)))));
    }
    // The batch axis stays first: qatlas runs any batch size along axis 0.
    if perm.first() != Some(&0) {
        return Ok(None);
    }
    let x = ctx.input_value(0, false)?;
    Ok(Some(Out::Value(
        ctx.emit(OpKind::Transpose(TransposeAttrs { perm }), &[x])?,
    )))
}

/// Slice of an activation (opset 10+: bounds as constant inputs; before: attributes), one
/// qatlas Slice per axis; not along the batch axis, positive steps only.
fn slice(ctx: &mut NodeCtx<'_, '_>) -> Result<Option<Out>, OnnxError> {
    let Some(shape) = ctx.input_shape(0)? else {
        return Ok(None);
    };
    let r = shape.len() as i64;
    let (starts, ends, axes, steps) = if ctx.opset() < 10 {
        let get = |n: &str| ctx.ints(n).map(|v| v.map(<[i64]>::to_vec));
        let (Some(s), Some(e)) = (get("starts")?, get("ends")?) else {
            return Err(ctx.err("has no 'starts' or 'ends'"));
        };
        let a = get("axes")?.unwrap_or_else(|| (0..s.len() as i64).collect());
        let st = vec![1; s.len()];
        (s, e, a, st)
    } else {
        let mut v = Vec::new();
        for i in 1..5 {
            if !ctx.has_input(i) {
                v.push(None);
                continue;
            }
            match ctx.input_const(i)?.and_then(|c| c.i64s()) {
                Some(x) => v.push(Some(x)),
                None => return Ok(None),
            }
        }
        let (Some(s), Some(e)) = (v[0].clone(), v[1].clone()) else {
            return Err(ctx.err("has no starts or ends"));
        };
        let a = v[2]
            .clone()
            .unwrap_or_else(|| (0..s.len() as i64).collect());
        let st = v[3].clone().unwrap_or_else(|| vec![1; s.len()]);
        (s, e, a, st)
    };
    if starts.len() != ends.len() || axes.len() != starts.len() || steps.len() != starts.len() {
        return Err(ctx.err("starts, ends, axes and steps differ in length"));
    }
    let mut x = ctx.input_value(0, false)?;
    for k in 0..starts.len() {
        let axis = if axes[k] < 0 { axes[k] + r } else { axes[k] };
        if !(1..r).contains(&axis) || steps[k] <= 0 || starts[k] == BATCH || ends[k] == BATCH {
            return Ok(None);
        }
        let a = SliceAttrs {
            axis: axis as usize,
            start: starts[k],
            end: ends[k],
            step: steps[k],
        };
        x = ctx.emit(OpKind::Slice(a), &[x])?;
    }
    Ok(Some(Out::Value(x)))
}

fn flatten(ctx: &mut NodeCtx<'_, '_>) -> Result<Option<Out>, OnnxError> {
    let axis = ctx.int("axis", 1)?;
    let axis = if axis < 0 {
        let Some(rank) = ctx.input_shape(0)?.map(|s| s.len() as i64) else {
            return Ok(None);
        };
        axis + rank
    } else {
        axis
    };
    if axis < 0 {
        return Err(ctx.attr_err("axis", "is out of range for the input's rank"));
    }
    let x = ctx.input_value(0, false)?;
    let a = FlattenAttrs {
        axis: axis.min(i64::from(u32::MAX)) as usize,
    };
    Ok(Some(Out::Value(ctx.emit(OpKind::Flatten(a), &[x])?)))
}

fn reshape(ctx: &mut NodeCtx<'_, '_>) -> Result<Option<Out>, OnnxError> {
    let Some(target) = ctx.input_const(1)? else {
        return Ok(None);
    };
    let Some(mut shape) = target.i64s() else {
        return Err(ctx.err("the shape input is not an integer tensor"));
    };
    if ctx.int("allowzero", 0)? != 0 && shape.contains(&0) {
        return Ok(None);
    }
    // The dynamic batch size from folded shape arithmetic: "copy the batch axis" at position 0,
    // nothing qatlas can express elsewhere.
    if shape.first() == Some(&BATCH) {
        shape[0] = 0;
    }
    if shape.contains(&BATCH) {
        return Ok(None);
    }
    if shape.iter().filter(|&&d| d == -1).count() > 1 || shape.iter().any(|&d| d < -1) {
        return Err(ctx.err(format!("invalid target shape {shape:?}")));
    }
    // Guard the shape rule's arithmetic against absurd targets.
    let mut known: u64 = 1;
    for &d in shape.iter().filter(|&&d| d > 0) {
        known = known.saturating_mul(d as u64);
    }
    if known > u64::from(u32::MAX) * 16 {
        return Err(ctx.err(format!("target shape {shape:?} is too large")));
    }
    let x_shape = ctx.input_shape(0)?;
    if let (Some(b), Some(xs)) = (ctx.imp.static_batch, &x_shape)
        && shape.first() == Some(&(b as i64))
        && xs.first() == Some(&b)
    {
        shape[0] = 0;
    }
    let x = ctx.input_value(0, false)?;
    let y = ctx.emit(OpKind::Reshape(ReshapeAttrs { shape }), &[x])?;
    Ok(Some(Out::Value(y)))
}

fn identity(ctx: &mut NodeCtx<'_, '_>) -> Result<Option<Out>, OnnxError> {
    if let Some(c) = ctx.input_const(0)? {
        return Ok(Some(Out::Const(c)));
    }
    Ok(Some(Out::Value(ctx.input_value(0, false)?)))
}

fn constant(ctx: &mut NodeCtx<'_, '_>) -> Result<Option<Out>, OnnxError> {
    let c = if let Some(t) = ctx.tensor_attr("value")? {
        t
    } else if ctx.has_attr(&["value_float"]) {
        Const::f32(vec![], vec![ctx.float("value_float", 0.0)?])
    } else if let Some(v) = ctx.floats("value_floats")? {
        Const::f32(vec![v.len()], v.to_vec())
    } else if ctx.has_attr(&["value_int"]) {
        Const {
            dims: vec![],
            data: ConstData::I64(vec![ctx.int("value_int", 0)?]),
        }
    } else if let Some(v) = ctx.ints("value_ints")? {
        Const {
            dims: vec![v.len()],
            data: ConstData::I64(v.to_vec()),
        }
    } else {
        // sparse_value, value_string(s): not numeric tensors qatlas can use.
        return Ok(None);
    };
    Ok(Some(Out::Const(Rc::new(c))))
}

fn cast(ctx: &mut NodeCtx<'_, '_>) -> Result<Option<Out>, OnnxError> {
    let to = DataType::try_from(ctx.int("to", 0)? as i32).ok();
    let float = matches!(
        to,
        Some(DataType::Float | DataType::Double | DataType::Float16 | DataType::Bfloat16)
    );
    let int = matches!(
        to,
        Some(
            DataType::Int64
                | DataType::Int32
                | DataType::Int16
                | DataType::Int8
                | DataType::Uint64
                | DataType::Uint32
                | DataType::Uint16
                | DataType::Uint8
        )
    );
    let constant = ctx.input_const(0)?;
    // A FLOAT16 initializer cast to float is an fp16 weight as qatlas writes them.
    let half_weight = to == Some(DataType::Float)
        && constant.is_some()
        && ctx.input_elem_type(0)? == Some(DataType::Float16 as i32);
    if half_weight
        || (to == Some(DataType::Float16) && constant.as_ref().is_none_or(|c| c.f32s().is_some()))
    {
        // Rounding through half precision (an fp16 layer's weight or activation in a QDQ
        // export): an fp16 fake quantizer; the Cast back to float then vanishes.
        let trainable = constant.is_some();
        let x = ctx.input_value(0, trainable)?;
        let attrs = FakeQuantAttrs {
            grid: QuantGrid::Fp16,
            axis: None,
            observer: None,
            damping: 0.0,
        };
        return Ok(Some(Out::Value(ctx.emit(OpKind::FakeQuant(attrs), &[x])?)));
    }
    if let Some(c) = constant {
        let data = match (&c.data, float, int) {
            (ConstData::F32(v), true, _) => ConstData::F32(v.clone()),
            (ConstData::I64(v), true, _) => ConstData::F32(v.iter().map(|&x| x as f32).collect()),
            (ConstData::I64(v), _, true) => ConstData::I64(v.clone()),
            (ConstData::F32(v), _, true) => ConstData::I64(v.iter().map(|&x| x as i64).collect()),
            _ => return Ok(None),
        };
        return Ok(Some(Out::Const(Rc::new(Const {
            dims: c.dims.clone(),
            data,
        }))));
    }
    // Activations are f32 already, so a cast to float32 vanishes; other casts of activations
    // (to integers, or rounding through f16) are not expressible.
    if to == Some(DataType::Float) {
        return Ok(Some(Out::Value(ctx.input_value(0, false)?)));
    }
    Ok(None)
}
