//! `qatlas export`: writes a model (native or ONNX) as float ONNX, or as a native `.safetensors`
//! model file, chosen by the output's extension.

use crate::io::onnx::{DEFAULT_OPSET, EXPORT_OPSETS};
use crate::io::{load_any, save_model, save_onnx};
use clap::Args;
use std::path::PathBuf;

/// Flags of `qatlas export`.
#[derive(Args, Debug)]
pub struct ExportArgs {
    /// Model to export (.safetensors or .onnx).
    #[arg(long)]
    pub model: PathBuf,
    /// Output file: `.onnx` (float ONNX) or `.safetensors` (native model file).
    #[arg(long)]
    pub out: PathBuf,
    /// ONNX opset to write (13 to 21).
    #[arg(long, default_value_t = DEFAULT_OPSET)]
    pub opset: i64,
}

/// Runs `qatlas export`.
pub fn run(a: ExportArgs) -> anyhow::Result<()> {
    anyhow::ensure!(
        EXPORT_OPSETS.contains(&a.opset),
        "--opset must be between {} and {}",
        EXPORT_OPSETS.start(),
        EXPORT_OPSETS.end()
    );
    let m = load_any(&a.model)?;
    let ext = a
        .out
        .extension()
        .map(|e| e.to_string_lossy().to_ascii_lowercase());
    match ext.as_deref() {
        Some("onnx") => save_onnx(&m.graph, &a.out, a.opset)?,
        Some("safetensors") => save_model(&m, &a.out)?,
        _ => anyhow::bail!(
            "--out must end in .onnx or .safetensors: {}",
            a.out.display()
        ),
    }
    eprintln!(
        "wrote {} ({} nodes, {} parameters)",
        a.out.display(),
        m.graph.nodes.len(),
        m.graph.num_trainable()
    );
    Ok(())
}
