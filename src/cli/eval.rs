//! `qatlas eval`: accuracy and loss of a model on a dataset split.

use super::common::{DataArgs, SplitArg, default_model, print_json};
use crate::io::load_any;
use crate::train::evaluate;
use clap::Args;
use serde_json::json;
use std::path::PathBuf;

/// Flags of `qatlas eval`.
#[derive(Args, Debug)]
pub struct EvalArgs {
    /// Model file, .safetensors or .onnx (default: the built-in pretrained seed-cnn).
    #[arg(long)]
    pub model: Option<PathBuf>,
    #[command(flatten)]
    pub data: DataArgs,
    #[arg(long, value_enum, default_value = "test")]
    pub split: SplitArg,
    /// Evaluate the first N images only.
    #[arg(long)]
    pub limit: Option<usize>,
    #[arg(long, default_value_t = 256)]
    pub batch: usize,
    #[arg(long)]
    pub json: bool,
}

/// Runs `qatlas eval`.
pub fn run(a: EvalArgs) -> anyhow::Result<()> {
    anyhow::ensure!(a.batch > 0, "--batch must be at least 1");
    let path = a.model.clone().unwrap_or_else(default_model);
    let model = load_any(&path)?;
    let norm = a.data.normalization(&model.meta.normalization)?;
    let ds = a.data.load(a.split.into(), a.limit)?;
    norm.validate(ds.c)?;
    let r = evaluate(&model.graph, &ds, &norm, a.batch)?;
    if a.json {
        print_json(&json!({
            "model": path.display().to_string(),
            "split": format!("{:?}", a.split).to_lowercase(),
            "accuracy": r.accuracy,
            "loss": r.loss,
            "images": r.images,
            "images_per_s": r.images_per_s,
        }))
    } else {
        println!(
            "{}: accuracy {:.2}%, loss {:.4} on {} images ({:.0} img/s)",
            path.display(),
            r.accuracy * 100.0,
            r.loss,
            r.images,
            r.images_per_s
        );
        Ok(())
    }
}
