//! Errors reading or writing model files; every message names the file.

use std::path::PathBuf;
use thiserror::Error;

/// A model file could not be read or written.
#[derive(Debug, Error)]
pub enum IoError {
    #[error("cannot read {}: {source}", path.display())]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot write {}: {source}", path.display())]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{problem}: {}", path.display())]
    Format { path: PathBuf, problem: String },
    #[error("unsupported model format (expected .safetensors or .onnx): {}", path.display())]
    UnknownKind { path: PathBuf },
    /// An ONNX file could not be imported, or a graph could not be exported to ONNX.
    #[error("{error}: {}", path.display())]
    Onnx {
        path: PathBuf,
        error: Box<super::onnx::OnnxError>,
    },
}
