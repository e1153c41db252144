//! ONNX `TensorProto` <-> qatlas constants: decoding of every numeric data type from `raw_data`
//! (little-endian) or the typed fields (`float_data`, `int64_data`, ...), and f32 encoding for
//! export.
//!
//! Decoding checks the declared element count against the bytes actually present before it
//! allocates anything, so a tensor that claims 10^12 elements in a 100-byte file is an error, not
//! an allocation.

use super::OnnxError;
use super::proto::{TensorProto, tensor_proto::DataLocation, tensor_proto::DataType};
use crate::tensor::{Tensor, from_vec};

/// A decoded constant: dimensions and data, floats as f32 and integers as i64.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Const {
    pub dims: Vec<usize>,
    pub data: ConstData,
}

/// The element values of a [`Const`].
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum ConstData {
    F32(Vec<f32>),
    I64(Vec<i64>),
}

impl Const {
    /// A float constant.
    pub fn f32(dims: Vec<usize>, v: Vec<f32>) -> Self {
        Const {
            dims,
            data: ConstData::F32(v),
        }
    }

    /// Number of elements.
    pub fn len(&self) -> usize {
        match &self.data {
            ConstData::F32(v) => v.len(),
            ConstData::I64(v) => v.len(),
        }
    }

    /// The float values, if this is a float constant.
    pub fn f32s(&self) -> Option<&[f32]> {
        match &self.data {
            ConstData::F32(v) => Some(v),
            ConstData::I64(_) => None,
        }
    }

    /// The values as integers (floats must be integral).
    pub fn i64s(&self) -> Option<Vec<i64>> {
        match &self.data {
            ConstData::I64(v) => Some(v.clone()),
            ConstData::F32(v) => v
                .iter()
                .map(|&x| (x.fract() == 0.0 && x.abs() < 9e15).then_some(x as i64))
                .collect(),
        }
    }

    /// The single value of a one-element constant, as f32.
    pub fn scalar(&self) -> Option<f32> {
        if self.len() != 1 {
            return None;
        }
        Some(match &self.data {
            ConstData::F32(v) => v[0],
            ConstData::I64(v) => v[0] as f32,
        })
    }

    /// The constant as a float tensor (integers converted), or `None` for integer data.
    pub fn to_tensor(&self) -> Option<Tensor> {
        self.f32s().map(|v| from_vec(&self.dims, v.to_vec()))
    }
}

/// Element size in bytes of each numeric type qatlas reads, and whether it is a float type.
fn layout(dt: DataType) -> Option<(usize, bool)> {
    Some(match dt {
        DataType::Float => (4, true),
        DataType::Double => (8, true),
        DataType::Float16 | DataType::Bfloat16 => (2, true),
        DataType::Int64 | DataType::Uint64 => (8, false),
        DataType::Int32 | DataType::Uint32 => (4, false),
        DataType::Int16 | DataType::Uint16 => (2, false),
        DataType::Int8 | DataType::Uint8 | DataType::Bool => (1, false),
        _ => return None,
    })
}

/// IEEE half precision to f32.
fn f16_to_f32(h: u16) -> f32 {
    let sign = ((h >> 15) as u32) << 31;
    let exp = ((h >> 10) & 0x1f) as u32;
    let frac = (h & 0x3ff) as u32;
    let bits = match (exp, frac) {
        (0, 0) => sign,
        (0, f) => {
            // Subnormal: value = f * 2^-24.
            let v = f as f32 * f32::powi(2.0, -24);
            return if sign != 0 { -v } else { v };
        }
        (0x1f, 0) => sign | 0x7f80_0000,
        (0x1f, f) => sign | 0x7f80_0000 | (f << 13),
        (e, f) => sign | ((e + 127 - 15) << 23) | (f << 13),
    };
    f32::from_bits(bits)
}

/// Decodes `t`; `node` names the reader for error messages.
pub(crate) fn decode(t: &TensorProto, node: &str) -> Result<Const, OnnxError> {
    let err = |problem: String| OnnxError::Tensor {
        node: node.to_string(),
        tensor: t.name.clone(),
        problem,
    };
    if t.data_location == DataLocation::External as i32 || !t.external_data.is_empty() {
        return Err(err(
            "keeps its data in an external file, which qatlas does not read".into(),
        ));
    }
    if t.segment.is_some() {
        return Err(err("is segmented, which qatlas does not read".into()));
    }
    let mut dims = Vec::with_capacity(t.dims.len().min(64));
    let mut n: usize = 1;
    for &d in &t.dims {
        let d = usize::try_from(d).map_err(|_| err(format!("has a negative dimension {d}")))?;
        n = n.checked_mul(d).ok_or_else(|| {
            err(format!(
                "declares dimensions {:?} whose size overflows",
                t.dims
            ))
        })?;
        dims.push(d);
    }
    let dt = DataType::try_from(t.data_type).map_err(|_| OnnxError::DataType {
        node: node.to_string(),
        tensor: t.name.clone(),
        data_type: t.data_type,
        problem: "which is not an ONNX data type".into(),
    })?;
    if matches!(dt, DataType::Int4 | DataType::Uint4) {
        let data = unpack_4bit(t, n, dt == DataType::Int4).map_err(err)?;
        return Ok(Const {
            dims,
            data: ConstData::I64(data),
        });
    }
    let (size, float) = layout(dt).ok_or_else(|| OnnxError::DataType {
        node: node.to_string(),
        tensor: t.name.clone(),
        data_type: t.data_type,
        problem: format!("{}, which qatlas cannot read", dt.as_str_name()),
    })?;
    let raw = &t.raw_data;
    if !raw.is_empty() {
        let want = n.saturating_mul(size);
        if raw.len() != want {
            return Err(err(format!(
                "declares dimensions {:?} ({n} elements of {size} bytes) but holds {} bytes",
                t.dims,
                raw.len()
            )));
        }
        let chunks = raw.chunks_exact(size);
        let le2 = |c: &[u8]| u16::from_le_bytes([c[0], c[1]]);
        let le4 = |c: &[u8]| [c[0], c[1], c[2], c[3]];
        let le8 = |c: &[u8]| [c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]];
        let data = match dt {
            DataType::Float => ConstData::F32(chunks.map(|c| f32::from_le_bytes(le4(c))).collect()),
            DataType::Double => {
                ConstData::F32(chunks.map(|c| f64::from_le_bytes(le8(c)) as f32).collect())
            }
            DataType::Float16 => ConstData::F32(chunks.map(|c| f16_to_f32(le2(c))).collect()),
            DataType::Bfloat16 => ConstData::F32(
                chunks
                    .map(|c| f32::from_bits((le2(c) as u32) << 16))
                    .collect(),
            ),
            DataType::Int64 => ConstData::I64(chunks.map(|c| i64::from_le_bytes(le8(c))).collect()),
            DataType::Uint64 => {
                ConstData::I64(chunks.map(|c| u64::from_le_bytes(le8(c)) as i64).collect())
            }
            DataType::Int32 => {
                ConstData::I64(chunks.map(|c| i32::from_le_bytes(le4(c)) as i64).collect())
            }
            DataType::Uint32 => {
                ConstData::I64(chunks.map(|c| u32::from_le_bytes(le4(c)) as i64).collect())
            }
            DataType::Int16 => ConstData::I64(chunks.map(|c| le2(c) as i16 as i64).collect()),
            DataType::Uint16 => ConstData::I64(chunks.map(|c| le2(c) as i64).collect()),
            DataType::Int8 => ConstData::I64(chunks.map(|c| c[0] as i8 as i64).collect()),
            _ => ConstData::I64(chunks.map(|c| c[0] as i64).collect()),
        };
        return Ok(Const { dims, data });
    }
    let (field, len) = match dt {
        DataType::Float => ("float_data", t.float_data.len()),
        DataType::Double => ("double_data", t.double_data.len()),
        DataType::Int64 => ("int64_data", t.int64_data.len()),
        DataType::Uint64 | DataType::Uint32 => ("uint64_data", t.uint64_data.len()),
        _ => ("int32_data", t.int32_data.len()),
    };
    if len != n {
        return Err(err(format!(
            "declares dimensions {:?} ({n} elements) but its {field} holds {len} values and raw_data is empty",
            t.dims
        )));
    }
    let data = match dt {
        DataType::Float => ConstData::F32(t.float_data.clone()),
        DataType::Double => ConstData::F32(t.double_data.iter().map(|&v| v as f32).collect()),
        DataType::Float16 => {
            ConstData::F32(t.int32_data.iter().map(|&v| f16_to_f32(v as u16)).collect())
        }
        DataType::Bfloat16 => ConstData::F32(
            t.int32_data
                .iter()
                .map(|&v| f32::from_bits((v as u32 & 0xffff) << 16))
                .collect(),
        ),
        DataType::Int64 => ConstData::I64(t.int64_data.clone()),
        DataType::Uint64 | DataType::Uint32 => {
            ConstData::I64(t.uint64_data.iter().map(|&v| v as i64).collect())
        }
        _ => ConstData::I64(t.int32_data.iter().map(|&v| v as i64).collect()),
    };
    debug_assert!(float == matches!(data, ConstData::F32(_)));
    Ok(Const { dims, data })
}

/// The `n` values of a 4-bit tensor, packed two per byte (low nibble first) in `raw_data`, or
/// one byte per `int32_data` entry; `signed` for INT4 (sign-extended nibbles).
fn unpack_4bit(t: &TensorProto, n: usize, signed: bool) -> Result<Vec<i64>, String> {
    let want = n.div_ceil(2);
    let bytes: Vec<u8> = if !t.raw_data.is_empty() {
        if t.raw_data.len() != want {
            return Err(format!(
                "declares dimensions {:?} ({n} 4-bit elements, {want} bytes) but holds {} bytes",
                t.dims,
                t.raw_data.len()
            ));
        }
        t.raw_data.clone()
    } else {
        if t.int32_data.len() != want {
            return Err(format!(
                "declares dimensions {:?} ({n} 4-bit elements) but its int32_data holds {} packed bytes and raw_data is empty",
                t.dims,
                t.int32_data.len()
            ));
        }
        t.int32_data.iter().map(|&v| v as u8).collect()
    };
    let nibble = |b: u8| -> i64 {
        if signed {
            (((b & 0x0f) << 4) as i8 >> 4) as i64
        } else {
            (b & 0x0f) as i64
        }
    };
    Ok((0..n)
        .map(|i| nibble(bytes[i / 2] >> (4 * (i % 2))))
        .collect())
}

/// An f32 tensor as a `TensorProto` with little-endian `raw_data`.
pub(crate) fn encode_f32(name: &str, dims: &[usize], values: &[f32]) -> TensorProto {
    TensorProto {
        name: name.to_string(),
        dims: dims.iter().map(|&d| d as i64).collect(),
        data_type: DataType::Float as i32,
        raw_data: values.iter().flat_map(|v| v.to_le_bytes()).collect(),
        ..Default::default()
    }
}

/// A 1-D int64 tensor (Reshape's shape input).
pub(crate) fn encode_i64(name: &str, values: &[i64]) -> TensorProto {
    TensorProto {
        name: name.to_string(),
        dims: vec![values.len() as i64],
        data_type: DataType::Int64 as i32,
        raw_data: values.iter().flat_map(|v| v.to_le_bytes()).collect(),
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn proto(dt: DataType, dims: &[i64]) -> TensorProto {
        TensorProto {
            name: "t".into(),
            dims: dims.to_vec(),
            data_type: dt as i32,
            ..Default::default()
        }
    }

    #[test]
    fn raw_and_typed_fields_agree() {
        let mut a = proto(DataType::Float, &[2, 2]);
        a.float_data = vec![1.0, -2.0, 0.5, 3.25];
        let b = encode_f32("t", &[2, 2], &[1.0, -2.0, 0.5, 3.25]);
        assert_eq!(decode(&a, "n").unwrap(), decode(&b, "n").unwrap());
        let mut h = proto(DataType::Float16, &[3]);
        // 1.0, -2.0, 2^-24 (smallest subnormal) in half precision.
        h.int32_data = vec![0x3c00, 0xc000, 0x0001];
        let c = decode(&h, "n").unwrap();
        assert_eq!(c.f32s().unwrap(), &[1.0, -2.0, f32::powi(2.0, -24)]);
        let mut i = proto(DataType::Int64, &[2]);
        i.raw_data = [-1i64, 7].iter().flat_map(|v| v.to_le_bytes()).collect();
        assert_eq!(decode(&i, "n").unwrap().i64s().unwrap(), vec![-1, 7]);
    }

    #[test]
    fn declared_size_is_checked_before_allocating() {
        let mut t = proto(DataType::Float, &[1 << 40, 1 << 20]);
        t.raw_data = vec![0; 100];
        let e = decode(&t, "conv").unwrap_err().to_string();
        assert!(e.contains("holds 100 bytes") && e.contains("conv"), "{e}");
        let t = proto(DataType::Float, &[i64::MAX, 4]);
        assert!(
            decode(&t, "n")
                .unwrap_err()
                .to_string()
                .contains("overflows")
        );
        let t = proto(DataType::Float, &[-3]);
        assert!(
            decode(&t, "n")
                .unwrap_err()
                .to_string()
                .contains("negative")
        );
        let e = decode(
            &TensorProto {
                data_type: 99,
                ..proto(DataType::Float, &[1])
            },
            "n",
        )
        .unwrap_err();
        assert!(
            matches!(e, OnnxError::DataType { data_type: 99, .. }),
            "{e}"
        );
        let e = decode(&proto(DataType::String, &[1]), "n").unwrap_err();
        assert!(e.to_string().contains("STRING"), "{e}");
    }
}
