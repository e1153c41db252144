//! `qatlas info`: a model's layers, parameter counts and metadata.

use super::common::{default_model, print_json};
use crate::graph::summarize;
use crate::io::load_any;
use clap::Args;
use serde_json::json;
use std::path::PathBuf;

/// Flags of `qatlas info`.
#[derive(Args, Debug)]
pub struct InfoArgs {
    /// Model file, .safetensors or .onnx (default: the built-in pretrained seed-cnn).
    #[arg(long)]
    pub model: Option<PathBuf>,
    #[arg(long)]
    pub json: bool,
}

/// Runs `qatlas info`.
pub fn run(a: InfoArgs) -> anyhow::Result<()> {
    let path = a.model.clone().unwrap_or_else(default_model);
    let m = load_any(&path)?;
    let layers = summarize(&m.graph)?;
    let final_acc = m
        .meta
        .history
        .as_ref()
        .and_then(|h| h.epochs.last())
        .and_then(|e| e.eval.as_ref())
        .map(|e| e.accuracy);
    if a.json {
        return print_json(&json!({
            "model": path.display().to_string(),
            "name": m.graph.name,
            "input_shape": m.graph.input_shape,
            "parameters": m.graph.num_trainable(),
            "layers": layers,
            "normalization": m.meta.normalization,
            "command": m.meta.command,
            "final_test_accuracy": final_acc,
            "qat_checkpoint": m.meta.qat.as_ref().map(|q| json!({
                "epochs_done": q.epochs_done,
                "fake_quant_accuracy": q.accuracy,
                "float_accuracy": q.float_accuracy,
                "lsq": q.lsq,
            })),
        }));
    }
    println!(
        "{} ({}), input {:?}, {} trainable parameters",
        m.graph.name,
        path.display(),
        m.graph.input_shape,
        m.graph.num_trainable()
    );
    println!(
        "{:<22} {:<14} {:<18} {:>9} {:>11}",
        "layer", "op", "output", "params", "MACs"
    );
    for l in &layers {
        println!(
            "{:<22} {:<14} {:<18} {:>9} {:>11}",
            l.name,
            l.op,
            format!("{:?}", l.output_shape),
            l.params,
            l.macs
        );
    }
    if let Some(c) = &m.meta.command {
        println!("made by: {c}");
    }
    if let Some(acc) = final_acc {
        println!("test accuracy when saved: {:.2}%", acc * 100.0);
    }
    if let Some(q) = &m.meta.qat {
        let pct = |v: Option<f64>| v.map_or("-".to_string(), |x| format!("{:.2}%", x * 100.0));
        println!(
            "QAT checkpoint ({}): {} epochs done, fake-quant accuracy {} (float model {}); continue with `qatlas qat --resume`",
            if q.lsq { "LSQ" } else { "observers" },
            q.epochs_done,
            pct(q.accuracy),
            pct(q.float_accuracy)
        );
    }
    Ok(())
}
