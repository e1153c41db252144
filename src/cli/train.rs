//! `qatlas train`: trains a built-in architecture on a dataset and writes a model file.

use super::common::{DataArgs, print_json, progress};
use crate::data::{Normalization, Split};
use crate::io::{Model, ModelMeta, save_model};
use crate::train::{OptimizerConfig, Schedule, TrainConfig, TrainEvent, train};
use crate::zoo::Arch;
use anyhow::Context;
use clap::{Args, ValueEnum};
use serde_json::json;
use std::path::PathBuf;

/// Optimizer choice.
#[derive(Clone, Copy, Debug, ValueEnum, PartialEq, Eq)]
pub enum OptimizerArg {
    Adamw,
    Sgd,
}

/// Learning-rate schedule choice.
#[derive(Clone, Copy, Debug, ValueEnum, PartialEq, Eq)]
pub enum ScheduleArg {
    Constant,
    Step,
    Cosine,
}

/// Flags of `qatlas train`.
#[derive(Args, Debug)]
pub struct TrainArgs {
    #[arg(long, value_enum, default_value = "seed-cnn")]
    pub arch: Arch,
    #[command(flatten)]
    pub data: DataArgs,
    #[arg(long, default_value_t = 2)]
    pub epochs: usize,
    #[arg(long, default_value_t = 64)]
    pub batch: usize,
    #[arg(long, value_enum, default_value = "adamw")]
    pub optimizer: OptimizerArg,
    /// Peak learning rate (default: 2e-3 for AdamW, 0.05 for SGD).
    #[arg(long)]
    pub lr: Option<f32>,
    /// SGD momentum.
    #[arg(long, default_value_t = 0.9)]
    pub momentum: f32,
    /// SGD: use Nesterov momentum.
    #[arg(long)]
    pub nesterov: bool,
    /// Weight decay (L2 for SGD, decoupled for AdamW).
    #[arg(long, default_value_t = 1e-4)]
    pub weight_decay: f32,
    #[arg(long, value_enum, default_value = "cosine")]
    pub schedule: ScheduleArg,
    /// Warm-up steps of the cosine schedule.
    #[arg(long, default_value_t = 100)]
    pub warmup: usize,
    /// Step schedule: decay every N epochs by --gamma.
    #[arg(long, default_value_t = 1)]
    pub step_epochs: usize,
    #[arg(long, default_value_t = 0.1)]
    pub gamma: f32,
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Train on the first N training images only.
    #[arg(long)]
    pub limit: Option<usize>,
    /// Evaluate on the first N test images after each epoch (default: all; 0 disables).
    #[arg(long)]
    pub eval_limit: Option<usize>,
    /// Output model file (.safetensors).
    #[arg(long)]
    pub out: PathBuf,
    /// Print one JSON object with the results.
    #[arg(long)]
    pub json: bool,
}

impl TrainArgs {
    /// The validated training configuration.
    pub fn config(&self) -> anyhow::Result<TrainConfig> {
        anyhow::ensure!(self.epochs > 0, "--epochs must be at least 1");
        anyhow::ensure!(self.batch > 0, "--batch must be at least 1");
        let optimizer = match self.optimizer {
            OptimizerArg::Adamw => OptimizerConfig::AdamW {
                lr: self.lr.unwrap_or(2e-3),
                beta1: 0.9,
                beta2: 0.999,
                eps: 1e-8,
                weight_decay: self.weight_decay,
            },
            OptimizerArg::Sgd => OptimizerConfig::Sgd {
                lr: self.lr.unwrap_or(0.05),
                momentum: self.momentum,
                nesterov: self.nesterov,
                weight_decay: self.weight_decay,
            },
        };
        anyhow::ensure!(
            optimizer.lr() > 0.0 && optimizer.lr().is_finite(),
            "--lr must be a positive number"
        );
        let schedule = match self.schedule {
            ScheduleArg::Constant => Schedule::Constant,
            ScheduleArg::Step => Schedule::Step {
                every_epochs: self.step_epochs,
                gamma: self.gamma,
            },
            ScheduleArg::Cosine => Schedule::Cosine {
                warmup_steps: self.warmup,
                min_factor: 0.0,
            },
        };
        Ok(TrainConfig {
            epochs: self.epochs,
            batch_size: self.batch,
            optimizer,
            schedule,
            seed: self.seed,
        })
    }
}

/// Runs `qatlas train`.
pub fn run(a: TrainArgs) -> anyhow::Result<()> {
    let cfg = a.config()?;
    let norm = a.data.normalization(&Normalization::mnist())?;
    let train_ds = a.data.load(Split::Train, a.limit)?;
    let eval_ds = match a.eval_limit {
        Some(0) => None,
        lim => Some(a.data.load(Split::Test, lim)?),
    };
    norm.validate(train_ds.c)?;
    let mut graph = a
        .arch
        .build(train_ds.image_shape(), train_ds.num_classes.max(2), a.seed)?;
    let pb = progress(0, "train");
    let control = crate::train::Control::new();
    let mut on_event = |e: TrainEvent| match e {
        TrainEvent::Step {
            step,
            total_steps,
            loss,
            images_per_s,
            ..
        } => {
            pb.set_length(total_steps as u64);
            pb.set_position(step as u64);
            pb.set_message(format!("loss {loss:.4}  {images_per_s:.0} img/s"));
        }
        TrainEvent::Epoch(r) => {
            let eval = r
                .eval
                .as_ref()
                .map(|e| format!(", test accuracy {:.2}%", e.accuracy * 100.0))
                .unwrap_or_default();
            pb.println(format!(
                "epoch {}: train loss {:.4}, train accuracy {:.2}%, {:.0} img/s{eval}",
                r.epoch + 1,
                r.train_loss,
                r.train_accuracy * 100.0,
                r.images_per_s
            ));
        }
    };
    let result = train(
        &mut graph,
        &train_ds,
        &norm,
        &cfg,
        eval_ds.as_ref(),
        &control,
        &mut on_event,
    );
    pb.finish_and_clear();
    // A divergence still leaves the last good weights in `graph`: they are written, then the
    // run fails naming the file.
    let (summary, diverged) = match result {
        Ok(s) => (s, None),
        Err(e) => match e.diverged_summary() {
            Some(s) => (s.clone(), Some(e.to_string())),
            None => return Err(e.into()),
        },
    };
    let command = std::env::args().collect::<Vec<_>>().join(" ");
    let model = Model {
        graph,
        meta: ModelMeta {
            normalization: norm,
            class_names: train_ds.class_names.clone(),
            arch: Some(a.arch.name().to_string()),
            train_config: Some(cfg.clone()),
            history: Some(summary.history.clone()),
            command: Some(command),
            qat: None,
        },
    };
    save_model(&model, &a.out).context("saving the trained model")?;
    if let Some(message) = diverged {
        anyhow::bail!(
            "{message}; the last good weights were written to {}",
            a.out.display()
        );
    }
    let last = summary.history.epochs.last();
    let eval = last.and_then(|r| r.eval.clone());
    if a.json {
        print_json(&json!({
            "arch": a.arch.name(),
            "epochs": cfg.epochs,
            "steps": summary.steps,
            "train_loss": last.map(|r| r.train_loss),
            "accuracy": eval.as_ref().map(|e| e.accuracy),
            "loss": eval.as_ref().map(|e| e.loss),
            "images_per_s": summary.history.epochs.iter().map(|r| r.images_per_s).sum::<f64>() / summary.history.epochs.len().max(1) as f64,
            "seconds": summary.seconds,
            "out": a.out.display().to_string(),
        }))?;
    } else {
        if let Some(e) = eval {
            println!(
                "test accuracy {:.2}% (loss {:.4}) on {} images",
                e.accuracy * 100.0,
                e.loss,
                e.images
            );
        }
        println!(
            "trained {} for {} epochs in {:.1} s; wrote {}",
            a.arch.name(),
            cfg.epochs,
            summary.seconds,
            a.out.display()
        );
    }
    Ok(())
}
