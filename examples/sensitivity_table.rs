//! Per-layer quantization sensitivity of the built-in pretrained seed-cnn at W4A8: for every
//! layer, the accuracy with only that layer quantized and with every layer but it, printed as
//! a table, most sensitive first.
//!
//! ```text
//! cargo run --release --example sensitivity_table
//! ```

use qatlas::analysis::sensitivity::{SweepConfig, SweepData, SweepMode, sensitivity};
use qatlas::data::{Split, load_split};
use qatlas::io::load_model;
use qatlas::quant::{Precision, QuantPlan};
use std::path::PathBuf;
use std::sync::atomic::AtomicBool;

fn main() -> anyhow::Result<()> {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let model = load_model(&root.join("assets/seed_cnn_mnist.safetensors"))?;
    let mnist = root.join("assets/mnist");
    let calib = load_split(&mnist, Split::Train)?;
    let eval = load_split(&mnist, Split::Test)?;
    let plan = QuantPlan::default_for(&model.graph, Precision::Int4);
    let data = SweepData {
        model: &model.graph,
        plan: &plan,
        calib: &calib,
        eval: &eval,
        norm: &model.meta.normalization,
    };
    let cfg = SweepConfig {
        mode: SweepMode::Both,
        samples: 2000,
        calib_samples: 500,
        batch: 250,
    };
    let sweep = sensitivity(&data, &cfg, None, &AtomicBool::new(false), &|_| {})?;
    let r = &sweep.report;
    println!(
        "float {:.2}%, all layers W4A8 {:.2}% on {} images ({:.1} s)",
        r.float_accuracy * 100.0,
        r.quantized.accuracy * 100.0,
        r.images,
        r.seconds
    );
    let mut rows = r.layers.clone();
    rows.sort_by(|a, b| b.only_drop_pp.partial_cmp(&a.only_drop_pp).unwrap());
    println!(
        "{:<10} {:<8} {:>14} {:>18}",
        "layer", "op", "only: drop pp", "all but: gain pp"
    );
    for l in rows {
        let f = |v: Option<f64>| v.map_or("-".to_string(), |v| format!("{v:+.2}"));
        println!(
            "{:<10} {:<8} {:>14} {:>18}",
            l.layer,
            l.op,
            f(l.only_drop_pp),
            f(l.all_but_gain_pp)
        );
    }
    Ok(())
}
