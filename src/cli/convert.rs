//! `qatlas convert`: turns a quantized model into an integer-runtime bundle
//! (`.qat.safetensors`: s8 / packed int4 / f16 weights plus the program as RON), and with
//! `--eval` measures it against the fake-quant simulation on the test split.
//!
//! `--model` is a float model (native or ONNX) with `--plan` (a plan with ranges, from
//! `qatlas ptq --out plan.ron`), or a native model that already holds `FakeQuant` nodes (from
//! `qatlas ptq --out m.safetensors` or `qatlas qat`), or an integer bundle (then `--eval` only
//! evaluates it).

use super::common::{DataArgs, batch_for, default_model, print_json};
use crate::data::{Loader, Normalization, Split};
use crate::graph::Graph;
use crate::io::load_any;
use crate::ops::OpKind;
use crate::quant::{QuantPlan, prepare_from_plan};
use crate::runtime::{ConvertOptions, IntModel, Requantization, evaluate};
use anyhow::Context;
use clap::{Args, ValueEnum};
use serde_json::json;
use std::path::{Path, PathBuf};

/// Requantization mode on the command line.
#[derive(Clone, Copy, Debug, ValueEnum, PartialEq, Eq)]
pub enum RequantArg {
    /// f32 `acc · s_in·s_w + bias`, then the fake quantizer's rounding (closest to the
    /// simulation).
    Float,
    /// 31-bit fixed-point multiplier + shift, round half to even, fused into the GEMM.
    FixedPoint,
}

/// Flags of `qatlas convert`.
#[derive(Args, Debug)]
pub struct ConvertArgs {
    /// A fake-quant model, a float model with --plan, or an integer bundle (default: the
    /// built-in pretrained seed-cnn, which needs --plan).
    #[arg(long)]
    pub model: Option<PathBuf>,
    /// Plan with calibrated ranges (RON) for a float model.
    #[arg(long)]
    pub plan: Option<PathBuf>,
    /// Output bundle (.safetensors).
    #[arg(long)]
    pub out: Option<PathBuf>,
    #[arg(long, value_enum, default_value = "float")]
    pub requant: RequantArg,
    /// Evaluate on the test split: integer model (and the simulation it came from, with
    /// accuracy difference and argmax / logit agreement).
    #[arg(long)]
    pub eval: bool,
    #[command(flatten)]
    pub data: DataArgs,
    /// Evaluate on the first N test images only.
    #[arg(long)]
    pub limit: Option<usize>,
    /// Images per batch (default: up to 250, fewer for large images: about 4M input values).
    #[arg(long)]
    pub batch: Option<usize>,
    #[arg(long)]
    pub json: bool,
}

fn has_fake_quant(g: &Graph) -> bool {
    g.nodes.iter().any(|n| matches!(n.op, OpKind::FakeQuant(_)))
}

/// Agreement of simulation and integer model on a dataset.
struct Agreement {
    images: usize,
    sim_correct: usize,
    int_correct: usize,
    argmax_agree: usize,
    logits_equal: usize,
    logits: usize,
    /// Integer logits against the simulation's (signal: the simulation).
    sqnr: crate::analysis::sqnr::Sqnr,
}

fn argmax(r: &[f32]) -> usize {
    r.iter()
        .enumerate()
        .fold(0, |b, (i, &v)| if v > r[b] { i } else { b })
}

fn agreement(
    sim: &Graph,
    m: &IntModel,
    ds: &crate::data::Dataset,
    norm: &Normalization,
    batch: usize,
) -> anyhow::Result<Agreement> {
    let mut a = Agreement {
        images: 0,
        sim_correct: 0,
        int_correct: 0,
        argmax_agree: 0,
        logits_equal: 0,
        logits: 0,
        sqnr: Default::default(),
    };
    for (x, y) in Loader::new(ds, norm, batch, None, false) {
        let ls = sim.infer(&x)?;
        let li = m.infer(&x)?;
        let k = ls.shape().get(1).copied().unwrap_or(1);
        let (ls, li) = (crate::tensor::slice(&ls), crate::tensor::slice(&li));
        anyhow::ensure!(ls.len() == li.len(), "output sizes differ");
        a.sqnr.add(ls, li);
        for (i, &label) in y.iter().enumerate() {
            let (rs, ri) = (&ls[i * k..(i + 1) * k], &li[i * k..(i + 1) * k]);
            let (ps, pi) = (argmax(rs), argmax(ri));
            a.sim_correct += (ps == label as usize) as usize;
            a.int_correct += (pi == label as usize) as usize;
            a.argmax_agree += (ps == pi) as usize;
            a.logits_equal += rs.iter().zip(ri).filter(|(u, v)| u == v).count();
            a.logits += k;
        }
        a.images += y.len();
    }
    ds.check()?;
    Ok(a)
}

/// Runs `qatlas convert`.
pub fn run(a: ConvertArgs) -> anyhow::Result<()> {
    anyhow::ensure!(a.batch != Some(0), "--batch must be at least 1");
    anyhow::ensure!(
        a.out.is_some() || a.eval,
        "nothing to do: give --out (write the bundle) and/or --eval"
    );
    let path = a.model.clone().unwrap_or_else(default_model);
    if crate::runtime::is_bundle(&path) {
        anyhow::ensure!(
            a.plan.is_none() && a.out.is_none(),
            "{} is already an integer model: only --eval applies",
            path.display()
        );
        let m = IntModel::load(&path)?;
        let norm = a.data.normalization(&m.spec().normalization)?;
        let ds = a.data.load(Split::Test, a.limit)?;
        norm.validate(ds.c)?;
        let r = evaluate(&m, &ds, &norm, batch_for(a.batch, &ds))?;
        if a.json {
            return print_json(&json!({
                "model": path.display().to_string(),
                "integer_accuracy": r.accuracy, "loss": r.loss, "images": r.images,
                "images_per_s": r.images_per_s, "layers": m.layers(),
            }));
        }
        println!(
            "{}: integer model accuracy {:.2}%, loss {:.4} on {} images ({:.0} img/s)",
            path.display(),
            r.accuracy * 100.0,
            r.loss,
            r.images,
            r.images_per_s
        );
        return Ok(());
    }
    let model = load_any(&path)?;
    let sim = match &a.plan {
        Some(p) => {
            let plan = QuantPlan::load(p, Some(&model.graph))?;
            anyhow::ensure!(
                !plan.ranges.is_empty(),
                "{} has no calibrated ranges (write it with `qatlas ptq --out plan.ron`)",
                p.display()
            );
            prepare_from_plan(&model.graph, &plan)
                .with_context(|| format!("applying {}", p.display()))?
                .1
                .graph
        }
        None if has_fake_quant(&model.graph) => model.graph.clone(),
        None => anyhow::bail!(
            "{} has no fake quantizers: give --plan (a plan with ranges from `qatlas ptq --out plan.ron`) or a fake-quant model",
            path.display()
        ),
    };
    let norm = a.data.normalization(&model.meta.normalization)?;
    let opts = ConvertOptions {
        requantization: match a.requant {
            RequantArg::FixedPoint => Requantization::FixedPoint,
            RequantArg::Float => Requantization::Float,
        },
        normalization: norm.clone(),
        class_names: model.meta.class_names.clone(),
    };
    let m =
        IntModel::convert(&sim, &opts).with_context(|| format!("converting {}", path.display()))?;
    if let Some(out) = &a.out {
        m.save(out)?;
        // Read it back: what was written must load.
        IntModel::load(out)?;
    }
    let bytes = |p: &Path| std::fs::metadata(p).map(|m| m.len()).ok();
    let agree = if a.eval {
        let ds = a.data.load(Split::Test, a.limit)?;
        norm.validate(ds.c)?;
        Some(agreement(&sim, &m, &ds, &norm, batch_for(a.batch, &ds))?)
    } else {
        None
    };
    let frac = |n: usize, d: usize| n as f64 / d.max(1) as f64;
    if a.json {
        return print_json(&json!({
            "model": path.display().to_string(),
            "out": a.out.as_ref().map(|p| p.display().to_string()),
            "out_bytes": a.out.as_deref().and_then(bytes),
            "weight_bytes": m.weight_bytes(),
            "requantization": format!("{:?}", opts.requantization),
            "layers": m.layers(),
            "images": agree.as_ref().map(|g| g.images),
            "simulation_accuracy": agree.as_ref().map(|g| frac(g.sim_correct, g.images)),
            "integer_accuracy": agree.as_ref().map(|g| frac(g.int_correct, g.images)),
            "argmax_agreement": agree.as_ref().map(|g| frac(g.argmax_agree, g.images)),
            "logits_equal": agree.as_ref().map(|g| frac(g.logits_equal, g.logits)),
            "sqnr_db": agree.as_ref().and_then(|g| crate::analysis::sqnr::finite_db(g.sqnr.db())),
        }));
    }
    for l in m.layers() {
        println!(
            "  {:<12} {:<22} {:<5} {:>8} B  {}",
            l.name,
            format!("{:?}", l.storage),
            l.compute,
            l.weight_bytes,
            l.kernel.unwrap_or("")
        );
    }
    if let Some(out) = &a.out {
        println!(
            "wrote {} ({} bytes; weights {} bytes)",
            out.display(),
            bytes(out).unwrap_or(0),
            m.weight_bytes()
        );
    }
    if let Some(g) = agree {
        let (s, i) = (frac(g.sim_correct, g.images), frac(g.int_correct, g.images));
        println!(
            "simulation {:.2}%, integer {:.2}% ({:+.2} pp) on {} test images; argmax agree {:.3}%, logits equal {:.2}%, integer vs simulation SQNR {}",
            s * 100.0,
            i * 100.0,
            (i - s) * 100.0,
            g.images,
            frac(g.argmax_agree, g.images) * 100.0,
            frac(g.logits_equal, g.logits) * 100.0,
            g.sqnr
                .db()
                .map_or("inf (equal)".to_string(), |d| format!("{d:.1} dB"))
        );
    }
    Ok(())
}
