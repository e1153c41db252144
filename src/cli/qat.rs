//! `qatlas qat`: quantization-aware training. Starts from PTQ ranges on a float model (or
//! resumes a checkpoint), fine-tunes with fake quantization through the same background job the
//! studio uses, keeps the best checkpoint, and writes the deployable fake-quant model (runnable
//! by `qatlas eval`, convertible to the integer runtime). `--float-control` also fine-tunes the
//! float model with the same settings, the fair baseline for QAT accuracy.

use super::common::{DataArgs, default_model, print_json, progress};
use super::ptq::PlanArgs;
use crate::data::Split;
use crate::io::atomic::write_atomic;
use crate::io::{Model, load_any, save_model};
use crate::jobs::{Job, JobEvent, QatEvent, QatSpec};
use crate::quant::{Precision, QatOptions};
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
    /// Peak learning rate (AdamW, cosine decay to 0).
    #[arg(long, default_value_t = 1e-4)]
    pub lr: f32,
    #[arg(long, default_value_t = 0.0)]
    pub weight_decay: f32,
    /// Learning-rate warm-up steps.
    #[arg(long, default_value_t = 0)]
    pub warmup: usize,
    /// Learnable scales (LSQ) instead of moving-average observers.
    #[arg(long)]
    pub lsq: bool,
    /// Freeze BatchNorm statistics after this many epochs.
    #[arg(long)]
    pub freeze_bn_after: Option<usize>,
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
    fn config(&self) -> anyhow::Result<TrainConfig> {
        anyhow::ensure!(self.epochs > 0, "--epochs must be at least 1");
        anyhow::ensure!(self.batch > 0, "--batch must be at least 1");
        anyhow::ensure!(
            self.lr > 0.0 && self.lr.is_finite(),
            "--lr must be a positive number"
        );
        Ok(TrainConfig {
            epochs: self.epochs,
            batch_size: self.batch,
            optimizer: OptimizerConfig::AdamW {
                lr: self.lr,
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
    let cfg = a.config()?;
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
    let plan = match &model.meta.qat {
        Some(st) => st.plan.clone(),
        None => a.plan.plan(&model.graph, Precision::Int8)?,
    };
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
        opts: QatOptions {
            lsq: a.lsq,
            ..QatOptions::default()
        },
        train: cfg.clone(),
        calib_samples: a.calib_samples,
        freeze_bn_after: a.freeze_bn_after,
        freeze_observers_after: a.freeze_observers_after,
        checkpoint: Some(checkpoint.clone()),
    };
    let main = std::thread::current();
    let waker: crate::jobs::Waker = Arc::new(move || main.unpark());
    let t0 = Instant::now();
    let job = Job::qat(spec, train_ds.clone(), eval_ds.clone(), waker)?;
    let pb = progress(0, "qat");
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
                JobEvent::Train(TrainEvent::Epoch(r)) if !a.json => {
                    let eval = r
                        .eval
                        .as_ref()
                        .map(|e| format!(", fake-quant test accuracy {:.2}%", e.accuracy * 100.0))
                        .unwrap_or_default();
                    pb.println(format!(
                        "epoch {}: train loss {:.4}, {:.0} img/s{eval}",
                        r.epoch + 1,
                        r.train_loss,
                        r.images_per_s
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
            "lsq": a.lsq,
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
