//! `qatlas qat`: quantization-aware training. Starts from PTQ ranges on a float model (or
//! resumes a checkpoint), fine-tunes with fake quantization through the same background job the
//! studio uses, keeps the best checkpoint, and writes the deployable fake-quant model (runnable
//! by `qatlas eval`, convertible to the integer runtime). `--float-control` also fine-tunes the
//! float model with the same settings, the fair baseline for QAT accuracy.

use super::common::{DataArgs, default_model, print_json, progress};
use super::ptq::PlanArgs;
use crate::data::Split;
use crate::graph::Graph;
use crate::io::atomic::write_atomic;
use crate::io::{Model, load_any, save_model};
use crate::jobs::{Job, JobEvent, QatEvent, QatSpec};
use crate::quant::oscillation::overall_flip_rate;
use crate::quant::recipe::QatRecipe;
use crate::quant::{Precision, QatOptions, QuantPlan};
use crate::train::{Control, OptimizerConfig, Schedule, TrainConfig, TrainEvent, evaluate, train};
use anyhow::Context;
use clap::Args;
use serde_json::json;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Flags of `qatlas qat`.
#[derive(Args, Debug)]
pub struct QatArgs {
    /// Float model, .safetensors or .onnx (default: the built-in pretrained seed-cnn).
    #[arg(long)]
    pub model: Option<PathBuf>,
    /// Continue a QAT checkpoint (written by an earlier run) instead of starting from --model.
    #[arg(long, conflicts_with = "model")]
    pub resume: Option<PathBuf>,
    #[command(flatten)]
    pub data: DataArgs,
    #[command(flatten)]
    pub plan: PlanArgs,
    /// Fine-tuning epochs (when resuming: the total, including those already done).
    #[arg(long, default_value_t = 1)]
    pub epochs: usize,
    #[arg(long, default_value_t = 64)]
    pub batch: usize,
    /// Peak learning rate (AdamW, cosine decay to 0; default: the recipe's, 1e-4 for int8,
    /// 5e-4 for 4-bit grids).
    #[arg(long)]
    pub lr: Option<f32>,
    #[arg(long, default_value_t = 0.0)]
    pub weight_decay: f32,
    /// Learning-rate warm-up steps.
    #[arg(long, default_value_t = 0)]
    pub warmup: usize,
    /// Start from the int8 recipe (observers, nothing else) whatever the precision.
    #[arg(long)]
    pub plain: bool,
    /// Learnable scales (LSQ) instead of moving-average observers (the 4-bit recipe's default).
    #[arg(long, conflicts_with = "no_lsq")]
    pub lsq: bool,
    /// Moving-average observers instead of LSQ.
    #[arg(long)]
    pub no_lsq: bool,
    /// Learning rate of LSQ scales relative to the weights' (4-bit recipe: 0.1).
    #[arg(long)]
    pub quantizer_lr_factor: Option<f32>,
    /// Oscillation damping strength on weight quantizers (off by default; e.g. 1e-3).
    #[arg(long)]
    pub damping: Option<f32>,
    /// Training batches to re-estimate BatchNorm statistics on after QAT (4-bit recipe: 50 in
    /// one-epoch runs, whose BatchNorm is not frozen; 0 turns it off).
    #[arg(long)]
    pub bn_reestimate: Option<usize>,
    /// Quantize the first and last layers like the others (the 4-bit recipe keeps them W8A8 in
    /// generated plans).
    #[arg(long)]
    pub no_keep_ends: bool,
    /// 4-bit weight scales from min-max instead of the recipe's MSE search.
    #[arg(long)]
    pub no_mse_weights: bool,
    /// Freeze BatchNorm statistics after this many epochs (4-bit recipe: the last epoch of
    /// runs of two or more).
    #[arg(long, conflicts_with = "no_freeze_bn")]
    pub freeze_bn_after: Option<usize>,
    /// Never freeze BatchNorm statistics.
    #[arg(long)]
    pub no_freeze_bn: bool,
    /// Freeze the observers (scales) after this many epochs.
    #[arg(long)]
    pub freeze_observers_after: Option<usize>,
    /// Training images for the PTQ starting ranges.
    #[arg(long, default_value_t = 1000)]
    pub calib_samples: usize,
    /// Train on the first N training images only.
    #[arg(long)]
    pub limit: Option<usize>,
    /// Evaluate on the first N test images (default: all; 0: no evaluation).
    #[arg(long)]
    pub eval_limit: Option<usize>,
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Best checkpoint (default: next to --out, `<name>.best.safetensors`).
    #[arg(long)]
    pub checkpoint: Option<PathBuf>,
    /// Also fine-tune the float model with the same settings and report its accuracy.
    #[arg(long)]
    pub float_control: bool,
    /// The deployable fake-quant model (.safetensors).
    #[arg(long)]
    pub out: PathBuf,
    /// Also write the plan with the final ranges (.ron).
    #[arg(long)]
    pub plan_out: Option<PathBuf>,
    #[arg(long)]
    pub json: bool,
}

impl QatArgs {
    /// The recipe for `plan` (`generated`: from `--precision`, not a plan file) with the flags'
    /// overrides; shapes a generated plan (first and last layer, weight observers).
    fn recipe(&self, g: &Graph, plan: &mut QuantPlan, generated: bool) -> QatRecipe {
        let mut r = if self.plain {
            QatRecipe::int8()
        } else {
            QatRecipe::for_plan(g, plan, self.epochs)
        };
        if let Some(lr) = self.lr {
            r.lr = lr;
        }
        if self.lsq {
            r.lsq = true;
        }
        if self.no_lsq {
            r.lsq = false;
        }
        if let Some(f) = self.quantizer_lr_factor {
            r.quantizer_lr_factor = f;
        }
        if let Some(d) = self.damping {
            r.damping = d;
        }
        if let Some(n) = self.bn_reestimate {
            r.bn_reestimate_batches = n;
        }
        if self.no_keep_ends {
            r.keep_ends_8bit = false;
        }
        if self.no_mse_weights {
            r.mse_weights = false;
        }
        if self.freeze_bn_after.is_some() || self.no_freeze_bn {
            r.freeze_bn_after = self.freeze_bn_after;
        }
        if self.freeze_observers_after.is_some() {
            r.freeze_observers_after = self.freeze_observers_after;
        }
        if !generated {
            r.keep_ends_8bit = false;
            r.mse_weights = false;
        }
        r.shape_plan(g, plan);
        r
    }

    fn config(&self, lr: f32) -> anyhow::Result<TrainConfig> {
        anyhow::ensure!(self.epochs > 0, "--epochs must be at least 1");
        anyhow::ensure!(self.batch > 0, "--batch must be at least 1");
        anyhow::ensure!(lr > 0.0 && lr.is_finite(), "--lr must be a positive number");
        Ok(TrainConfig {
            epochs: self.epochs,
            batch_size: self.batch,
            optimizer: OptimizerConfig::AdamW {
                lr,
                beta1: 0.9,
                beta2: 0.999,
                eps: 1e-8,
                weight_decay: self.weight_decay,
            },
            schedule: Schedule::Cosine {
                warmup_steps: self.warmup,
                min_factor: 0.0,
            },
            seed: self.seed,
        })
    }
}

/// `dir/name.best.safetensors` for `dir/name.safetensors`.
fn default_checkpoint(out: &Path) -> PathBuf {
    let stem = out.file_stem().and_then(|s| s.to_str()).unwrap_or("qat");
    out.with_file_name(format!("{stem}.best.safetensors"))
}

/// Runs `qatlas qat`.
pub fn run(a: QatArgs) -> anyhow::Result<()> {
    anyhow::ensure!(
        a.out.extension().and_then(|e| e.to_str()) == Some("safetensors"),
        "--out must end in .safetensors: {}",
        a.out.display()
    );
    let source = a
        .resume
        .clone()
        .or(a.model.clone())
        .unwrap_or_else(default_model);
    let model = load_any(&source)?;
    if a.resume.is_some() {
        anyhow::ensure!(
            model.meta.qat.is_some(),
            "{} is not a QAT checkpoint (no QAT state in its metadata)",
            source.display()
        );
    } else {
        anyhow::ensure!(
            model.meta.qat.is_none(),
            "{} is a QAT checkpoint: continue it with --resume",
            source.display()
        );
    }
    let (plan, recipe) = match &model.meta.qat {
        Some(st) => {
            let mut r = QatRecipe::int8();
            r.name = "resumed".into();
            r.lr = a.lr.unwrap_or(r.lr);
            (r.lsq, r.damping) = (st.lsq, st.damping);
            r.quantizer_lr_factor = st.quantizer_lr_factor;
            r.bn_reestimate_batches = a.bn_reestimate.unwrap_or(st.bn_reestimate_batches);
            r.freeze_bn_after = a.freeze_bn_after.or(st.freeze_bn_after);
            r.freeze_observers_after = a.freeze_observers_after.or(st.freeze_observers_after);
            (st.plan.clone(), r)
        }
        None => {
            let mut plan = a.plan.plan(&model.graph, Precision::Int8)?;
            let r = a.recipe(&model.graph, &mut plan, a.plan.plan.is_none());
            (plan, r)
        }
    };
    let cfg = a.config(recipe.lr)?;
    let norm = a.data.normalization(&model.meta.normalization)?;
    let train_ds = Arc::new(a.data.load(Split::Train, a.limit)?);
    let eval_ds = match a.eval_limit {
        Some(0) => None,
        lim => Some(Arc::new(a.data.load(Split::Test, lim)?)),
    };
    norm.validate(train_ds.c)?;
    let mut model = model;
    model.meta.normalization = norm.clone();
    model.meta.command = Some(std::env::args().collect::<Vec<_>>().join(" "));
    let checkpoint = a
        .checkpoint
        .clone()
        .unwrap_or_else(|| default_checkpoint(&a.out));
    let spec = QatSpec {
        model: model.clone(),
        plan,
        opts: QatOptions::from_recipe(&recipe),
        train: cfg.clone(),
        calib_samples: a.calib_samples,
        freeze_bn_after: recipe.freeze_bn_after,
        freeze_observers_after: recipe.freeze_observers_after,
        bn_reestimate_batches: recipe.bn_reestimate_batches,
        checkpoint: Some(checkpoint.clone()),
    };
    let main = std::thread::current();
    let waker: crate::jobs::Waker = Arc::new(move || main.unpark());
    let t0 = Instant::now();
    let job = Job::qat(spec, train_ds.clone(), eval_ds.clone(), waker)?;
    if !a.json {
        println!("{}", recipe.describe().join("; "));
    }
    let pb = progress(0, "qat");
    let mut epoch_flips: Vec<f64> = Vec::new();
    let outcome = loop {
        // Checked before draining, so every event sent before the worker ended is seen.
        let finished = job.is_finished();
        let mut done = None;
        for e in job.drain() {
            match e {
                JobEvent::Train(TrainEvent::Step {
                    step,
                    total_steps,
                    loss,
                    images_per_s,
                    ..
                }) => {
                    pb.set_length(total_steps as u64);
                    pb.set_position(step as u64);
                    pb.set_message(format!("loss {loss:.4}  {images_per_s:.0} img/s"));
                }
                JobEvent::Qat(QatEvent::Oscillation { layers, .. }) => {
                    epoch_flips.push(overall_flip_rate(&layers));
                }
                JobEvent::Train(TrainEvent::Epoch(r)) if !a.json => {
                    let eval = r
                        .eval
                        .as_ref()
                        .map(|e| format!(", fake-quant test accuracy {:.2}%", e.accuracy * 100.0))
                        .unwrap_or_default();
                    let flips = if epoch_flips.is_empty() {
                        String::new()
                    } else {
                        let mean = epoch_flips.iter().sum::<f64>() / epoch_flips.len() as f64;
                        format!(", {:.3}% of weights flip per step", mean * 100.0)
                    };
                    epoch_flips.clear();
                    pb.println(format!(
                        "epoch {}: train loss {:.4}, {:.0} img/s{eval}{flips}",
                        r.epoch + 1,
                        r.train_loss,
                        r.images_per_s
                    ));
                }
                JobEvent::Qat(QatEvent::BatchNormReestimated {
                    batchnorms,
                    batches,
                    before,
                    after,
                }) if !a.json => {
                    let pct = |v: Option<f64>| {
                        v.map_or("-".to_string(), |x| format!("{:.2}%", x * 100.0))
                    };
                    pb.println(format!(
                        "re-estimated {batchnorms} BatchNorm on {batches} batches: {} -> {}",
                        pct(before),
                        pct(after)
                    ));
                }
                JobEvent::Qat(QatEvent::Started {
                    calib_images,
                    quantizers,
                    float_accuracy,
                    start_accuracy,
                    resumed_at_epoch,
                }) if !a.json => {
                    let pct = |v: Option<f64>| {
                        v.map_or("-".to_string(), |x| format!("{:.2}%", x * 100.0))
                    };
                    let from = match resumed_at_epoch {
                        Some(e) => format!("resuming after epoch {e}"),
                        None => format!("PTQ ranges from {calib_images} images"),
                    };
                    pb.println(format!(
                        "{quantizers} quantizers, {from}: float {}, start {}",
                        pct(float_accuracy),
                        pct(start_accuracy)
                    ));
                }
                JobEvent::Qat(QatEvent::Frozen {
                    epoch,
                    batchnorms,
                    observers,
                }) if !a.json => pb.println(format!(
                    "before epoch {}: froze {batchnorms} BatchNorm and {observers} observers",
                    epoch + 1
                )),
                JobEvent::Qat(QatEvent::Checkpoint {
                    epoch,
                    accuracy,
                    path,
                }) if !a.json => pb.println(format!(
                    "best so far: epoch {epoch} ({:.2}%), checkpoint {}",
                    accuracy * 100.0,
                    path.display()
                )),
                JobEvent::QatFinished(o) => done = Some(Ok(*o)),
                JobEvent::Failed(msg) => done = Some(Err(anyhow::anyhow!(msg))),
                _ => {}
            }
        }
        if let Some(d) = done {
            break d;
        }
        if finished {
            anyhow::bail!("the QAT worker ended without a result");
        }
        std::thread::park_timeout(Duration::from_millis(200));
    }?;
    pb.finish_and_clear();
    let seconds = t0.elapsed().as_secs_f64();
    if let Some(err) = &outcome.error {
        let best = match outcome.best {
            Some((epoch, _)) => format!(
                "the best checkpoint (epoch {epoch}) is {}",
                checkpoint.display()
            ),
            None => "no epoch finished, so there is no checkpoint".to_string(),
        };
        anyhow::bail!(
            "QAT stopped: {err}. Nothing was written to {}; {best}",
            a.out.display()
        );
    }
    save_model(&outcome.model, &a.out).context("saving the QAT model")?;
    if let Some(p) = &a.plan_out {
        let text = outcome.plan.to_ron().context("encoding the plan")?;
        write_atomic(p, text.as_bytes()).with_context(|| format!("writing {}", p.display()))?;
    }
    let float_control = if a.float_control && model.meta.qat.is_none() {
        Some(float_control(&model, &cfg, &train_ds, eval_ds.as_deref())?)
    } else {
        None
    };
    let summary = outcome.summary.as_ref();
    let epochs_run = summary.map_or(0, |s| s.history.epochs.len());
    let ips = summary.map_or(0.0, |s| {
        s.history.epochs.iter().map(|r| r.images_per_s).sum::<f64>() / epochs_run.max(1) as f64
    });
    if a.json {
        return print_json(&json!({
            "model": source.display().to_string(),
            "precision": a.plan.precision.map(|p| p.name()),
            "activations": a.plan.activations.map(|p| p.name()),
            "recipe": recipe,
            "lsq": recipe.lsq,
            "pre_reestimate_accuracy": outcome.pre_reestimate_accuracy,
            "oscillation": outcome.oscillation,
            "flip_history": outcome.flip_history,
            "epochs": cfg.epochs,
            "epochs_run": epochs_run,
            "float_accuracy": outcome.float_accuracy,
            "start_accuracy": outcome.start_accuracy,
            "quantized_accuracy": outcome.quantized_accuracy,
            "float_control_accuracy": float_control,
            "best_epoch": outcome.best.map(|b| b.0),
            "best_accuracy": outcome.best.map(|b| b.1),
            "images_per_s": ips,
            "seconds": seconds,
            "checkpoint": checkpoint.display().to_string(),
            "out": a.out.display().to_string(),
        }));
    }
    let pct = |v: Option<f64>| v.map_or("-".to_string(), |x| format!("{:.2}%", x * 100.0));
    println!(
        "float {}, PTQ start {}, after QAT {} (deployable model); {:.0} img/s, {:.1} s",
        pct(outcome.float_accuracy),
        pct(outcome.start_accuracy),
        pct(outcome.quantized_accuracy),
        ips,
        seconds
    );
    if let Some(fc) = float_control {
        println!("float model fine-tuned the same way: {:.2}%", fc * 100.0);
    }
    println!(
        "wrote {} (best checkpoint {})",
        a.out.display(),
        checkpoint.display()
    );
    Ok(())
}

/// Fine-tunes the float model with the same configuration; returns its test accuracy.
fn float_control(
    model: &Model,
    cfg: &TrainConfig,
    train_ds: &crate::data::Dataset,
    eval: Option<&crate::data::Dataset>,
) -> anyhow::Result<f64> {
    let Some(eval) = eval else {
        anyhow::bail!("--float-control needs an evaluation set (not --eval-limit 0)");
    };
    let mut g = model.graph.clone();
    let norm = &model.meta.normalization;
    let pb = progress(0, "float control");
    let control = Control::new();
    train(&mut g, train_ds, norm, cfg, None, &control, &mut |e| {
        if let TrainEvent::Step {
            step, total_steps, ..
        } = e
        {
            pb.set_length(total_steps as u64);
            pb.set_position(step as u64);
        }
    })?;
    pb.finish_and_clear();
    Ok(evaluate(&g, eval, norm, 256)?.accuracy)
}
