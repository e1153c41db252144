//! Quantize a float model to int8 with post-training calibration and write it as an integer
//! bundle and as QDQ ONNX, each read back and measured on the MNIST test split.
//!
//! ```text
//! cargo run --release --example quantize_to_bundle -- [MODEL.onnx|.safetensors] [OUT_DIR]
//! ```
//! Defaults: the PyTorch-exported `tests/fixtures/onnx/seed_cnn_mnist.onnx` and a temporary
//! folder. An ONNX file does not record its input normalisation, so MNIST's is used.

use qatlas::data::{Loader, Normalization, Split, load_split};
use qatlas::io::load_any;
use qatlas::jobs::export::{ExportSpec, export};
use qatlas::jobs::{ExportFormat, IntegerCheck};
use qatlas::quant::{Precision, QuantPlan, ptq};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;

fn main() -> anyhow::Result<()> {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let mut args = std::env::args().skip(1);
    let model_path = args
        .next()
        .map(PathBuf::from)
        .unwrap_or_else(|| root.join("tests/fixtures/onnx/seed_cnn_mnist.onnx"));
    let out_dir = match args.next() {
        Some(d) => PathBuf::from(d),
        None => std::env::temp_dir().join("qatlas-example"),
    };
    std::fs::create_dir_all(&out_dir)?;
    let model = load_any(&model_path)?;
    let norm = if model_path.extension().is_some_and(|e| e == "onnx") {
        Normalization::mnist()
    } else {
        model.meta.normalization.clone()
    };
    let mnist = root.join("assets/mnist");
    let calib = load_split(&mnist, Split::Train)?.limit(1000);
    let test = Arc::new(load_split(&mnist, Split::Test)?);

    // Calibrate the default int8 plan (per-channel weights, MSE activation ranges).
    let plan = QuantPlan::default_for(&model.graph, Precision::Int8);
    let batches = Loader::new(&calib, &norm, 250, None, false).map(|(x, _)| x);
    let q = ptq(
        &model.graph,
        &plan,
        batches,
        &AtomicBool::new(false),
        &mut |_| {},
    )?;

    for (format, file) in [
        (ExportFormat::Bundle, "model.int.safetensors"),
        (ExportFormat::OnnxQdq, "model_qdq.onnx"),
    ] {
        let spec = ExportSpec {
            format,
            path: out_dir.join(file),
            opset: 17,
            check: Some(IntegerCheck {
                data: test.clone(),
                norm: norm.clone(),
                samples: test.len(),
            }),
        };
        let r = export(&model.graph, Some(&q.prepared.graph), &norm, &spec)
            .map_err(anyhow::Error::msg)?;
        let (acc, n) = r.accuracy.expect("measured");
        println!(
            "{}: {} bytes ({:.2}x smaller than f32), accuracy {:.2}% on {n} images ({})",
            r.path.display(),
            r.bytes,
            r.compression(),
            acc * 100.0,
            r.measured_by
        );
    }
    Ok(())
}
