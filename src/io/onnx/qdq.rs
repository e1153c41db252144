//! Fake quantizers -> ONNX QDQ pairs, so that a quantized qatlas model (PTQ or QAT) exports as a
//! model ONNX Runtime runs with its own integer kernels.
//!
//! An integer `FakeQuant` becomes `QuantizeLinear(x, s, zp) -> DequantizeLinear(., s, zp)`:
//! per tensor with scalar scale and zero point, per channel with 1-D ones and the `axis`
//! attribute. The grid picks the zero point's type: u8 -> UINT8, s8 -> INT8, and the 4-bit grids
//! -> UINT4 / INT4 (opset 21, where QuantizeLinear takes them). An fp16 quantizer becomes
//! `Cast(float16) -> Cast(float)`. A weight (a parameter read only by its quantizer) is stored
//! quantized instead, as ONNX Runtime's own QDQ files do: its integers as an INT8 / INT4
//! initializer read by `DequantizeLinear` alone, or FLOAT16 values read by `Cast(float)`, so the
//! file is about as small as the integer bundle. Scale and zero point are the effective values the fake
//! quantizer uses (`|s|` floored at f32 epsilon, the zero point rounded and clamped).
//!
//! ONNX quantizes `x / s` with round-half-to-even while qatlas multiplies by `1/s`: the two agree
//! except when `x / s` lands within an ulp of a tie, which changes a value by one step at most.

use super::OnnxError;
use super::proto::{AttributeProto, NodeProto, TensorProto, tensor_proto::DataType};
use super::tensor::encode_f32;
use crate::graph::{Graph, Node};
use crate::ops::fake_quant::{effective_scale, effective_zero_point, quantize_unclamped};
use crate::ops::{FakeQuantAttrs, QuantGrid};
use crate::tensor::slice;

/// The ONNX zero-point type of an integer grid, and the lowest opset that has it.
fn grid_type(qmin: i32, qmax: i32) -> Option<(DataType, i64)> {
    match (qmin, qmax) {
        (0, 255) => Some((DataType::Uint8, 13)),
        (-128, 127) => Some((DataType::Int8, 13)),
        (0, 15) => Some((DataType::Uint4, 21)),
        (-8, 7) => Some((DataType::Int4, 21)),
        _ => None,
    }
}

/// Zero points as an ONNX tensor of `dt` (4-bit types packed two per byte, low nibble first).
fn encode_zero_points(name: &str, dims: &[usize], zp: &[i32], dt: DataType) -> TensorProto {
    let raw_data = match dt {
        DataType::Uint4 | DataType::Int4 => zp
            .chunks(2)
            .map(|p| (p[0] as u8 & 0x0f) | ((p.get(1).copied().unwrap_or(0) as u8 & 0x0f) << 4))
            .collect(),
        _ => zp.iter().map(|&z| z as u8).collect(),
    };
    TensorProto {
        name: name.to_string(),
        dims: dims.iter().map(|&d| d as i64).collect(),
        data_type: dt as i32,
        raw_data,
        ..Default::default()
    }
}

fn attr_int(name: &str, i: i64) -> AttributeProto {
    AttributeProto {
        name: name.into(),
        r#type: super::proto::attribute_proto::AttributeType::Int as i32,
        i,
        ..Default::default()
    }
}

fn node(
    name: String,
    op: &str,
    input: Vec<String>,
    output: String,
    attribute: Vec<AttributeProto>,
) -> NodeProto {
    NodeProto {
        name,
        op_type: op.into(),
        input,
        output: vec![output],
        attribute,
        ..Default::default()
    }
}

/// The nodes and initializers standing for fake quantizer `n` of `g`, writing `out`.
pub(crate) fn fake_quant(
    g: &Graph,
    n: &Node,
    a: &FakeQuantAttrs,
    out: String,
    opset: i64,
    stored_weight: bool,
) -> Result<(Vec<NodeProto>, Vec<TensorProto>), OnnxError> {
    let err = |problem: String| OnnxError::Export {
        node: n.name.clone(),
        op: "FakeQuant".into(),
        problem,
    };
    let x = g.values[n.inputs[0]].name.clone();
    let (qmin, qmax) = match a.grid {
        QuantGrid::Fp16 if stored_weight => {
            // The weight as FLOAT16, cast back to float where it is read.
            let w = &g.params[g.param_of(n.inputs[0]).expect("a stored weight")].tensor;
            let half = format!("{}.half", n.name);
            let raw_data = slice(w)
                .iter()
                .flat_map(|&v| half::f16::from_f32(v).to_bits().to_le_bytes())
                .collect();
            let init = TensorProto {
                name: half.clone(),
                dims: w.shape().iter().map(|&d| d as i64).collect(),
                data_type: DataType::Float16 as i32,
                raw_data,
                ..Default::default()
            };
            let cast = node(
                format!("{}.cast_float", n.name),
                "Cast",
                vec![half],
                out,
                vec![attr_int("to", DataType::Float as i64)],
            );
            return Ok((vec![cast], vec![init]));
        }
        QuantGrid::Fp16 => {
            let mid = format!("{}.half", n.name);
            let to = |t: DataType| vec![attr_int("to", t as i64)];
            let nodes = vec![
                node(
                    format!("{}.cast_half", n.name),
                    "Cast",
                    vec![x],
                    mid.clone(),
                    to(DataType::Float16),
                ),
                node(
                    format!("{}.cast_float", n.name),
                    "Cast",
                    vec![mid],
                    out,
                    to(DataType::Float),
                ),
            ];
            return Ok((nodes, Vec::new()));
        }
        QuantGrid::Int { qmin, qmax } => (qmin, qmax),
    };
    let (dt, min_opset) = grid_type(qmin, qmax)
        .ok_or_else(|| err(format!("the grid {qmin}..={qmax} has no ONNX integer type")))?;
    if opset < min_opset {
        return Err(err(format!(
            "a {qmin}..={qmax} grid needs opset {min_opset} or later (--opset {min_opset})"
        )));
    }
    let param = |i: usize, what: &str| {
        g.param_of(n.inputs[i])
            .map(|p| slice(&g.params[p].tensor).to_vec())
            .ok_or_else(|| err(format!("its {what} is not a stored parameter")))
    };
    let scale: Vec<f32> = param(1, "scale")?
        .into_iter()
        .map(effective_scale)
        .collect();
    let zp: Vec<i32> = param(2, "zero point")?
        .into_iter()
        .map(|z| effective_zero_point(z, qmin, qmax) as i32)
        .collect();
    let dims: Vec<usize> = match a.axis {
        Some(_) => vec![scale.len()],
        None => Vec::new(),
    };
    let (s_name, z_name) = (
        format!("{}.y_scale", n.name),
        format!("{}.y_zero_point", n.name),
    );
    let inits = vec![
        encode_f32(&s_name, &dims, &scale),
        encode_zero_points(&z_name, &dims, &zp, dt),
    ];
    let axis: Vec<AttributeProto> = a
        .axis
        .map(|ax| attr_int("axis", ax as i64))
        .into_iter()
        .collect();
    let q = format!("{}.q", n.name);
    if stored_weight {
        // The weight's integers, dequantized where they are read.
        let w = &g.params[g.param_of(n.inputs[0]).expect("a stored weight")].tensor;
        let ints = quantized_weight(slice(w), w.shape(), a.axis, &scale, &zp, qmin, qmax);
        let init = TensorProto {
            dims: w.shape().iter().map(|&d| d as i64).collect(),
            ..encode_zero_points(&q, &[], &ints, dt)
        };
        let mut inits = inits;
        inits.push(init);
        let dq = node(
            format!("{}.dequantize", n.name),
            "DequantizeLinear",
            vec![q, s_name, z_name],
            out,
            axis,
        );
        return Ok((vec![dq], inits));
    }
    let nodes = vec![
        node(
            format!("{}.quantize", n.name),
            "QuantizeLinear",
            vec![x, s_name.clone(), z_name.clone()],
            q.clone(),
            axis.clone(),
        ),
        node(
            format!("{}.dequantize", n.name),
            "DequantizeLinear",
            vec![q, s_name, z_name],
            out,
            axis,
        ),
    ];
    Ok((nodes, inits))
}

/// The integers a fake quantizer maps weight `w` to (per channel along `axis`), with the
/// same arithmetic as the op (`round_half_even(x · (1/s)) + zp`, clamped).
fn quantized_weight(
    w: &[f32],
    shape: &[usize],
    axis: Option<usize>,
    scale: &[f32],
    zp: &[i32],
    qmin: i32,
    qmax: i32,
) -> Vec<i32> {
    let inner: usize = match axis {
        Some(a) => shape[a + 1..].iter().product(),
        None => w.len().max(1),
    };
    let c = scale.len();
    w.iter()
        .enumerate()
        .map(|(i, &x)| {
            let ch = if c == 1 { 0 } else { (i / inner) % c };
            let q = quantize_unclamped(x, 1.0 / scale[ch], zp[ch] as f32);
            (q.clamp(qmin as f32, qmax as f32)) as i32
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn four_bit_zero_points_pack_low_nibble_first() {
        let t = encode_zero_points("z", &[3], &[-8, 7, -1], DataType::Int4);
        assert_eq!(t.raw_data, vec![0x78, 0x0f]);
        let t = encode_zero_points("z", &[], &[128], DataType::Uint8);
        assert_eq!(t.raw_data, vec![128]);
        assert_eq!(grid_type(0, 127), None);
    }
}
