//! Files: the native model file (safetensors weights + a RON graph description), ONNX import and
//! export (`onnx`, with [`load_any`] opening either kind), and atomic writes so that no
//! half-written output is ever left behind.
//!
//! Depends on `graph`, `data` (normalisation) and `train` (the run that made a model); knows
//! nothing of the GUI.

pub mod atomic;
pub mod error;
pub mod model_file;
pub mod onnx;

pub use error::IoError;
pub use model_file::{Model, ModelMeta, load_model, load_model_bytes, save_model};
pub use onnx::{load_any, load_onnx, save_onnx, save_onnx_with};
