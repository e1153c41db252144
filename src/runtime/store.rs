//! The integer model bundle: one `.safetensors` file holding the weights in their deployed
//! storage (s8 as `I8`, int4 two per byte as `U8`, fp16 as `F16`, f32 biases and float weights
//! as `F32`) and, in its metadata, the [`ModelSpec`] as RON (`qatlas.int_model`) with a format
//! key (`qatlas.format` = `int-1`).
//!
//! Loading never trusts the file: the safetensors header is parsed by the `safetensors` crate
//! (which checks offsets against the file size, so no tensor can claim more bytes than the file
//! holds), the metadata must decode, every referenced tensor must exist with the right dtype and
//! length, and the spec's shapes are re-derived with checked arithmetic and a size cap before
//! anything is allocated from them. Every problem is an error naming the file. Written
//! atomically (`io::atomic`).

use super::error::RuntimeError;
use super::spec::ModelSpec;
use crate::io::atomic::write_atomic;
use half::f16;
use safetensors::{Dtype, SafeTensors, tensor::TensorView};
use std::collections::{BTreeMap, HashMap};
use std::path::Path;

const FORMAT_KEY: &str = "qatlas.format";
const FORMAT_VERSION: &str = "int-1";
const SPEC_KEY: &str = "qatlas.int_model";

/// One stored tensor (flat; its meaning comes from the spec).
#[derive(Clone, Debug, PartialEq)]
pub enum TensorData {
    I8(Vec<i8>),
    U8(Vec<u8>),
    F16(Vec<f16>),
    F32(Vec<f32>),
}

impl TensorData {
    /// Bytes of the stored data.
    pub fn bytes(&self) -> usize {
        match self {
            TensorData::I8(v) => v.len(),
            TensorData::U8(v) => v.len(),
            TensorData::F16(v) => v.len() * 2,
            TensorData::F32(v) => v.len() * 4,
        }
    }

    fn encode(&self) -> (Dtype, usize, Vec<u8>) {
        match self {
            TensorData::I8(v) => (Dtype::I8, v.len(), v.iter().map(|&x| x as u8).collect()),
            TensorData::U8(v) => (Dtype::U8, v.len(), v.clone()),
            TensorData::F16(v) => (
                Dtype::F16,
                v.len(),
                v.iter().flat_map(|x| x.to_bits().to_le_bytes()).collect(),
            ),
            TensorData::F32(v) => (
                Dtype::F32,
                v.len(),
                v.iter().flat_map(|x| x.to_le_bytes()).collect(),
            ),
        }
    }

    fn decode(view: &TensorView<'_>) -> Option<Self> {
        let d = view.data();
        Some(match view.dtype() {
            Dtype::I8 => TensorData::I8(d.iter().map(|&b| b as i8).collect()),
            Dtype::U8 => TensorData::U8(d.to_vec()),
            Dtype::F16 => TensorData::F16(
                d.chunks_exact(2)
                    .map(|c| f16::from_bits(u16::from_le_bytes([c[0], c[1]])))
                    .collect(),
            ),
            Dtype::F32 => TensorData::F32(
                d.chunks_exact(4)
                    .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                    .collect(),
            ),
            _ => return None,
        })
    }
}

fn format_err(path: &Path, problem: impl Into<String>) -> RuntimeError {
    RuntimeError::Format {
        path: path.to_path_buf(),
        problem: problem.into(),
    }
}

/// Encodes a spec and its tensors as bundle bytes.
pub fn encode(
    spec: &ModelSpec,
    tensors: &BTreeMap<String, TensorData>,
    path: &Path,
) -> Result<Vec<u8>, RuntimeError> {
    let mut meta = HashMap::new();
    meta.insert(FORMAT_KEY.to_string(), FORMAT_VERSION.to_string());
    meta.insert(
        SPEC_KEY.to_string(),
        ron::to_string(spec)
            .map_err(|e| format_err(path, format!("cannot encode the model ({e})")))?,
    );
    let enc: Vec<(&String, (Dtype, usize, Vec<u8>))> =
        tensors.iter().map(|(k, t)| (k, t.encode())).collect();
    let views = enc
        .iter()
        .map(|(name, (dt, n, bytes))| {
            TensorView::new(*dt, vec![*n], bytes).map(|v| ((*name).clone(), v))
        })
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format_err(path, format!("cannot encode tensors ({e})")))?;
    safetensors::serialize(views, Some(meta))
        .map_err(|e| format_err(path, format!("cannot encode tensors ({e})")))
}

/// Writes a bundle atomically.
pub fn save(
    spec: &ModelSpec,
    tensors: &BTreeMap<String, TensorData>,
    path: &Path,
) -> Result<(), RuntimeError> {
    let bytes = encode(spec, tensors, path)?;
    write_atomic(path, &bytes).map_err(|e| RuntimeError::Write {
        path: path.to_path_buf(),
        source: e,
    })
}

/// Reads a bundle: the spec (not yet validated against the tensors; the engine does that) and
/// the tensors it names. Problems are [`RuntimeError::Format`] naming `path`.
/// Whether `path` is an integer bundle, by its safetensors metadata (only the header is read,
/// at most 16 MiB of it); any I/O or format problem means "no".
pub fn is_bundle(path: &Path) -> bool {
    use std::io::Read;
    let Ok(mut f) = std::fs::File::open(path) else {
        return false;
    };
    let mut len = [0u8; 8];
    if f.read_exact(&mut len).is_err() {
        return false;
    }
    let n = u64::from_le_bytes(len);
    if n == 0 || n > 16 << 20 {
        return false;
    }
    let mut header = vec![0u8; n as usize];
    if f.read_exact(&mut header).is_err() {
        return false;
    }
    serde_json::from_slice::<serde_json::Value>(&header).is_ok_and(|h| {
        h.get("__metadata__")
            .and_then(|m| m.get(FORMAT_KEY))
            .and_then(|v| v.as_str())
            .is_some_and(|v| v.starts_with("int-"))
    })
}

pub fn load(path: &Path) -> Result<(ModelSpec, BTreeMap<String, TensorData>), RuntimeError> {
    let bytes = std::fs::read(path).map_err(|e| RuntimeError::Read {
        path: path.to_path_buf(),
        source: e,
    })?;
    decode(&bytes, path)
}

/// [`load`] from bytes already in memory (`path` names them in errors).
pub fn decode(
    bytes: &[u8],
    path: &Path,
) -> Result<(ModelSpec, BTreeMap<String, TensorData>), RuntimeError> {
    let bad = |e: safetensors::SafeTensorError| {
        format_err(path, format!("not a valid safetensors file ({e})"))
    };
    let (_, header) = SafeTensors::read_metadata(bytes).map_err(bad)?;
    let st = SafeTensors::deserialize(bytes).map_err(bad)?;
    let md = header.metadata().as_ref().ok_or_else(|| {
        format_err(
            path,
            "safetensors file without qatlas metadata (not a qatlas integer model)",
        )
    })?;
    match md.get(FORMAT_KEY).map(String::as_str) {
        Some(FORMAT_VERSION) => {}
        Some("1") => {
            return Err(format_err(
                path,
                "this is a float qatlas model, not an integer model (convert it with `qatlas convert`)",
            ));
        }
        Some(v) => {
            return Err(format_err(
                path,
                format!(
                    "integer model format {v} is not supported (this build reads {FORMAT_VERSION})"
                ),
            ));
        }
        None => {
            return Err(format_err(
                path,
                "safetensors file without qatlas metadata (not a qatlas integer model)",
            ));
        }
    }
    let spec: ModelSpec = ron::from_str(
        md.get(SPEC_KEY)
            .ok_or_else(|| format_err(path, "missing integer model description"))?,
    )
    .map_err(|e| {
        format_err(
            path,
            format!("integer model description is malformed ({e})"),
        )
    })?;
    let mut tensors = BTreeMap::new();
    for (name, view) in st.tensors() {
        let t = TensorData::decode(&view).ok_or_else(|| {
            format_err(
                path,
                format!(
                    "tensor '{name}' has dtype {:?}; integer models hold I8, U8, F16 or F32",
                    view.dtype()
                ),
            )
        })?;
        tensors.insert(name, t);
    }
    Ok((spec, tensors))
}
