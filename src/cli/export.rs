//! `qatlas export`: writes a model as QDQ ONNX, as the native integer bundle, as float ONNX, or
//! as a native `.safetensors` model file, then reads the file back and measures its accuracy on
//! the test split (the same code as the studio's Export tab, `jobs::export`).
//!
//! `--format` defaults from the output: `.onnx` is QDQ ONNX for a quantized model and float
//! ONNX otherwise; `.safetensors` is the native model file (`--format bundle` for the integer
//! bundle).

use super::common::{DataArgs, print_json};
use crate::io::onnx::EXPORT_OPSETS;
use crate::io::{load_any, save_model};
use crate::jobs::IntegerCheck;
use crate::jobs::export::{ExportFormat, ExportSpec, export, min_qdq_opset};
use crate::ops::OpKind;
use clap::{Args, ValueEnum};
use serde_json::json;
use std::path::PathBuf;
use std::sync::Arc;

/// `--format` values.
#[derive(Clone, Copy, Debug, ValueEnum, PartialEq, Eq)]
pub enum FormatArg {
    /// QDQ ONNX of a quantized model (int4 grids as ONNX INT4, opset 21).
    OnnxQdq,
    /// The native integer bundle (.safetensors) run by qatlas's integer runtime.
    Bundle,
    /// Float ONNX.
    Onnx,
    /// The native model file (.safetensors: weights plus the graph).
    Native,
}

/// Flags of `qatlas export`.
#[derive(Args, Debug)]
pub struct ExportArgs {
    /// Model to export (.safetensors or .onnx; a quantized model for onnx-qdq and bundle).
    #[arg(long)]
    pub model: PathBuf,
    /// Output file.
    #[arg(long)]
    pub out: PathBuf,
    /// What to write (default: from the output's extension and the model).
    #[arg(long, value_enum)]
    pub format: Option<FormatArg>,
    /// ONNX opset to write (13 to 21; default 17, or 21 when the model has 4-bit grids).
    #[arg(long)]
    pub opset: Option<i64>,
    /// Do not read the file back and measure it.
    #[arg(long)]
    pub no_eval: bool,
    #[command(flatten)]
    pub data: DataArgs,
    /// Measure on the first N test images only.
    #[arg(long)]
    pub limit: Option<usize>,
    #[arg(long)]
    pub json: bool,
}

/// Runs `qatlas export`.
pub fn run(a: ExportArgs) -> anyhow::Result<()> {
    let m = load_any(&a.model)?;
    let quantized = m
        .graph
        .nodes
        .iter()
        .any(|n| matches!(n.op, OpKind::FakeQuant(_)));
    let ext = a
        .out
        .extension()
        .map(|e| e.to_string_lossy().to_ascii_lowercase());
    let format = match (a.format, ext.as_deref()) {
        (Some(f), _) => f,
        (None, Some("onnx")) if quantized => FormatArg::OnnxQdq,
        (None, Some("onnx")) => FormatArg::Onnx,
        (None, Some("safetensors")) => FormatArg::Native,
        _ => anyhow::bail!(
            "{}: --out must end in .onnx or .safetensors (or give --format)",
            a.out.display()
        ),
    };
    let want_ext = match format {
        FormatArg::Onnx | FormatArg::OnnxQdq => "onnx",
        _ => "safetensors",
    };
    anyhow::ensure!(
        ext.as_deref() == Some(want_ext),
        "{}: --format {} writes a .{want_ext} file",
        a.out.display(),
        format.to_possible_value().unwrap().get_name()
    );
    if format == FormatArg::Native {
        save_model(&m, &a.out)?;
        eprintln!("wrote {} (native model file)", a.out.display());
        return Ok(());
    }
    let format = match format {
        FormatArg::OnnxQdq => ExportFormat::OnnxQdq,
        FormatArg::Bundle => ExportFormat::Bundle,
        _ => ExportFormat::OnnxFloat,
    };
    anyhow::ensure!(
        format == ExportFormat::OnnxFloat || quantized,
        "{}: the model is not quantized: run `qatlas ptq --out m.safetensors` or `qatlas qat` first",
        a.model.display()
    );
    anyhow::ensure!(
        format != ExportFormat::OnnxFloat || !quantized,
        "{}: the model is quantized: --format onnx-qdq writes it as QDQ ONNX",
        a.model.display()
    );
    let opset = a.opset.unwrap_or(if format == ExportFormat::OnnxQdq {
        min_qdq_opset(&m.graph).max(crate::io::onnx::DEFAULT_OPSET)
    } else {
        crate::io::onnx::DEFAULT_OPSET
    });
    anyhow::ensure!(
        EXPORT_OPSETS.contains(&opset),
        "--opset must be between {} and {}",
        EXPORT_OPSETS.start(),
        EXPORT_OPSETS.end()
    );
    let norm = a.data.normalization(&m.meta.normalization)?;
    let check = if a.no_eval {
        None
    } else {
        let test = a.data.load(crate::data::Split::Test, a.limit)?;
        Some(IntegerCheck {
            samples: test.len(),
            data: Arc::new(test),
            norm: norm.clone(),
        })
    };
    let spec = ExportSpec {
        format,
        path: a.out.clone(),
        opset,
        check,
    };
    let q = (format != ExportFormat::OnnxFloat).then_some(&m.graph);
    let r = export(&m.graph, q, &norm, &spec).map_err(anyhow::Error::msg)?;
    if a.json {
        return print_json(&json!({
            "path": r.path,
            "format": r.format.name(),
            "opset": (format != ExportFormat::Bundle).then_some(opset),
            "bytes": r.bytes,
            "float_parameter_bytes": r.float_bytes,
            "compression": r.compression(),
            "accuracy": r.accuracy.map(|(acc, _)| acc),
            "images": r.accuracy.map(|(_, n)| n),
            "measured_by": r.measured_by,
        }));
    }
    println!(
        "wrote {} ({}, {} bytes, {:.2}x smaller than the f32 parameters)",
        r.path.display(),
        r.format.name(),
        r.bytes,
        r.compression()
    );
    if let Some((acc, n)) = r.accuracy {
        println!(
            "read back: accuracy {:.2}% on {n} test images ({})",
            acc * 100.0,
            r.measured_by
        );
    }
    Ok(())
}
