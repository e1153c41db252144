//! `qatlas eval`: accuracy and loss of a model on a dataset split: a float or fake-quant model
//! (native or ONNX) on the float engine, or an integer bundle (`qatlas convert`) on the integer
//! runtime.

use super::common::{DataArgs, SplitArg, batch_for, default_model, print_json};
use crate::io::load_any;
use clap::Args;
use serde_json::json;
use std::path::PathBuf;

/// Flags of `qatlas eval`.
#[derive(Args, Debug)]
pub struct EvalArgs {
    /// Model file: .safetensors (float, fake-quant or integer bundle) or .onnx (default: the
    /// built-in pretrained seed-cnn).
    #[arg(long)]
    pub model: Option<PathBuf>,
    #[command(flatten)]
    pub data: DataArgs,
    #[arg(long, value_enum, default_value = "test")]
    pub split: SplitArg,
    /// Evaluate the first N images only.
    #[arg(long)]
    pub limit: Option<usize>,
    /// Images per batch (default: up to 250, fewer for large images: about 4M input values).
    #[arg(long)]
    pub batch: Option<usize>,
    #[arg(long)]
    pub json: bool,
}

/// Runs `qatlas eval`.
pub fn run(a: EvalArgs) -> anyhow::Result<()> {
    anyhow::ensure!(a.batch != Some(0), "--batch must be at least 1");
    let path = a.model.clone().unwrap_or_else(default_model);
    let (r, runtime) = if crate::runtime::is_bundle(&path) {
        let m = crate::runtime::IntModel::load(&path)?;
        let norm = a.data.normalization(&m.spec().normalization)?;
        let ds = a.data.load(a.split.into(), a.limit)?;
        norm.validate(ds.c)?;
        (
            crate::runtime::evaluate(&m, &ds, &norm, batch_for(a.batch, &ds))?,
            "integer",
        )
    } else {
        let model = load_any(&path)?;
        let norm = a.data.normalization(&model.meta.normalization)?;
        let ds = a.data.load(a.split.into(), a.limit)?;
        norm.validate(ds.c)?;
        let (r, engine) =
            crate::runtime::evaluate_float(&model.graph, &ds, &norm, batch_for(a.batch, &ds))?;
        (r, engine.name())
    };
    if a.json {
        print_json(&json!({
            "model": path.display().to_string(),
            "split": format!("{:?}", a.split).to_lowercase(),
            "accuracy": r.accuracy,
            "loss": r.loss,
            "images": r.images,
            "images_per_s": r.images_per_s,
            "runtime": runtime,
        }))
    } else {
        println!(
            "{} ({runtime}): accuracy {:.2}%, loss {:.4} on {} images ({:.0} img/s)",
            path.display(),
            r.accuracy * 100.0,
            r.loss,
            r.images,
            r.images_per_s
        );
        Ok(())
    }
}
