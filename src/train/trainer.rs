//! The training loop: seeded shuffling, forward/backward, optimizer step, schedule, typed
//! progress events, stop/pause commands honoured between steps, and a bounded loss history.

use super::Control;
use super::divergence::{
    Divergence, LastGood, NonFinite, first_non_finite, first_non_finite_param,
};
use super::{EvalResult, Optimizer, OptimizerConfig, Schedule, evaluate};
use crate::data::{Dataset, Loader, Normalization};
use crate::graph::{Graph, GraphError};
use crate::ops::Mode;
use crate::ops::loss::softmax_cross_entropy;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};
use std::time::Instant;
use thiserror::Error;

/// Everything that defines a training run (stored with the model it produced).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TrainConfig {
    pub epochs: usize,
    pub batch_size: usize,
    pub optimizer: OptimizerConfig,
    pub schedule: Schedule,
    pub seed: u64,
}

impl Default for TrainConfig {
    fn default() -> Self {
        TrainConfig {
            epochs: 2,
            batch_size: 64,
            optimizer: OptimizerConfig::AdamW {
                lr: 2e-3,
                beta1: 0.9,
                beta2: 0.999,
                eps: 1e-8,
                weight_decay: 1e-4,
            },
            schedule: Schedule::Cosine {
                warmup_steps: 100,
                min_factor: 0.0,
            },
            seed: 0,
        }
    }
}

/// Progress reported while training.
#[derive(Clone, Debug, PartialEq)]
pub enum TrainEvent {
    Step {
        epoch: usize,
        step: usize,
        total_steps: usize,
        loss: f32,
        lr: f32,
        images_per_s: f64,
    },
    Epoch(EpochRecord),
}

/// Summary of one epoch.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct EpochRecord {
    pub epoch: usize,
    pub train_loss: f64,
    pub train_accuracy: f64,
    pub images_per_s: f64,
    pub eval: Option<EvalResult>,
}

/// Loss curve of a run, bounded in size (the studio plots it; model files store it).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct TrainHistory {
    /// (step, mean loss over the steps since the previous point).
    pub loss: Vec<(usize, f32)>,
    pub epochs: Vec<EpochRecord>,
}

/// What a finished (or stopped) run reports.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TrainSummary {
    pub steps: usize,
    pub stopped: bool,
    pub images_per_s: f64,
    pub seconds: f64,
    pub history: TrainHistory,
}

/// Why training failed.
#[derive(Debug, Error)]
pub enum TrainError {
    /// The training data failed (an image file that no longer decodes).
    #[error(transparent)]
    Data(#[from] crate::data::DataError),
    #[error(transparent)]
    Graph(#[from] GraphError),
    /// A non-finite loss, gradient or update ended the run; the model holds the weights after
    /// `summary.steps` steps (the last good ones) and `summary` what the run did until then.
    #[error("{}", cause.report(summary.steps))]
    Diverged {
        cause: Divergence,
        summary: Box<TrainSummary>,
    },
    #[error("invalid training configuration: {0}")]
    Config(String),
    /// A callback between epochs failed (e.g. writing a checkpoint).
    #[error("{0}")]
    Hook(String),
    #[error("the model expects inputs {expected:?}, the dataset has {found:?}")]
    DataShape {
        expected: Vec<usize>,
        found: Vec<usize>,
    },
}

impl TrainError {
    /// What a diverged run did before its failing step (its weights are the last good ones);
    /// `None` for every other error.
    pub fn diverged_summary(&self) -> Option<&TrainSummary> {
        match self {
            TrainError::Diverged { summary, .. } => Some(summary),
            _ => None,
        }
    }
}

/// Points kept in the history's loss curve.
const HISTORY_POINTS: usize = 2000;

/// Callbacks between epochs (quantization-aware training freezes BatchNorm and observers and
/// keeps its best checkpoint this way).
pub trait EpochHooks {
    /// Before epoch `epoch` starts (may change the graph, e.g. freeze statistics).
    fn epoch_start(&mut self, _epoch: usize, _g: &mut Graph) {}
    /// After each optimizer step (`step` counts from 1 over the whole run).
    fn step_end(&mut self, _step: usize, _g: &Graph) {}
    /// Learning-rate factors per parameter (e.g. smaller for quantizer scales), asked once
    /// when the optimizer is made.
    fn lr_factors(&self, _g: &Graph) -> Option<Vec<f32>> {
        None
    }
    /// After epoch `epoch` was evaluated; an error ends the run.
    fn epoch_end(&mut self, _g: &Graph, _rec: &EpochRecord) -> Result<(), TrainError> {
        Ok(())
    }
}

/// No callbacks.
pub struct NoHooks;
impl EpochHooks for NoHooks {}

/// Trains `g` in place on `train`, evaluating on `eval` after each epoch if given.
pub fn train(
    g: &mut Graph,
    train: &Dataset,
    norm: &Normalization,
    cfg: &TrainConfig,
    eval: Option<&Dataset>,
    control: &Control,
    on_event: &mut dyn FnMut(TrainEvent),
) -> Result<TrainSummary, TrainError> {
    train_from(
        g,
        train,
        norm,
        cfg,
        eval,
        control,
        0,
        &mut NoHooks,
        on_event,
    )
}

/// [`train`] starting at epoch `start_epoch` of `cfg` (resuming a run: the learning-rate schedule
/// and the shuffling continue where that epoch begins; optimizer moments start afresh), with
/// callbacks between epochs.
#[allow(clippy::too_many_arguments)]
pub fn train_from(
    g: &mut Graph,
    train: &Dataset,
    norm: &Normalization,
    cfg: &TrainConfig,
    eval: Option<&Dataset>,
    control: &Control,
    start_epoch: usize,
    hooks: &mut dyn EpochHooks,
    on_event: &mut dyn FnMut(TrainEvent),
) -> Result<TrainSummary, TrainError> {
    if cfg.batch_size == 0 || cfg.epochs == 0 {
        return Err(TrainError::Config(
            "epochs and batch size must be positive".into(),
        ));
    }
    if start_epoch >= cfg.epochs {
        return Err(TrainError::Config(format!(
            "cannot start at epoch {} of a {}-epoch run",
            start_epoch + 1,
            cfg.epochs
        )));
    }
    if train.image_shape()[..] != g.input_shape[..] {
        return Err(TrainError::DataShape {
            expected: g.input_shape.clone(),
            found: train.image_shape().to_vec(),
        });
    }
    let steps_per_epoch = Loader::new(train, norm, cfg.batch_size, None, true)
        .num_batches()
        .max(1);
    let total = steps_per_epoch * cfg.epochs;
    let every = total.div_ceil(HISTORY_POINTS).max(1);
    let mut opt = Optimizer::new(cfg.optimizer.clone(), g);
    if let Some(f) = hooks.lr_factors(g) {
        opt.set_lr_factors(&f);
    }
    let mut rng = ChaCha8Rng::seed_from_u64(cfg.seed ^ 0x9e37_79b9);
    let mut history = TrainHistory::default();
    let (mut step, mut acc_loss, mut acc_n) = (start_epoch * steps_per_epoch, 0.0f64, 0usize);
    let start = Instant::now();
    let mut images = 0usize;
    let mut stopped = false;
    let mut last_good = LastGood::default();
    'epochs: for epoch in start_epoch..cfg.epochs {
        hooks.epoch_start(epoch, g);
        let t0 = Instant::now();
        let (mut e_loss, mut e_correct, mut e_seen) = (0.0f64, 0usize, 0usize);
        let loader = Loader::new(
            train,
            norm,
            cfg.batch_size,
            Some(cfg.seed.wrapping_add(epoch as u64)),
            true,
        );
        for (x, y) in loader {
            if control.checkpoint() {
                stopped = true;
                break 'epochs;
            }
            let lr = cfg
                .schedule
                .lr(cfg.optimizer.lr(), step, total, steps_per_epoch);
            let trace = g.forward(std::slice::from_ref(&x), Mode::Train, true, &mut rng)?;
            let logits = trace.output(g, 0).expect("output kept in training");
            let l = softmax_cross_entropy(logits, &y).map_err(|e| GraphError::Op {
                node: "loss".into(),
                source: e,
            })?;
            let failed = if !l.loss.is_finite() {
                Some(NonFinite::Loss(l.loss))
            } else {
                let grads = g.backward(&trace, l.grad)?;
                match first_non_finite(g, grads.params.iter().map(Option::as_ref)) {
                    Some(param) => Some(NonFinite::Gradient(param)),
                    None => {
                        // Keep the weights this step started from, then apply it.
                        last_good.save(g, step);
                        g.apply_updates(trace.updates);
                        opt.step(g, &grads.params, lr);
                        first_non_finite_param(g).map(NonFinite::Update)
                    }
                }
            };
            if let Some(what) = failed {
                let cause = Divergence { epoch, step, what };
                // Back to the last weights whose loss and gradients were finite.
                let kept = last_good.restore(g).unwrap_or(step);
                return Err(TrainError::Diverged {
                    cause,
                    summary: Box::new(TrainSummary {
                        steps: kept,
                        stopped: true,
                        images_per_s: images as f64 / start.elapsed().as_secs_f64().max(1e-9),
                        seconds: start.elapsed().as_secs_f64(),
                        history,
                    }),
                });
            }
            step += 1;
            hooks.step_end(step, g);
            images += y.len();
            e_loss += l.loss as f64 * y.len() as f64;
            e_correct += l.correct;
            e_seen += y.len();
            acc_loss += l.loss as f64;
            acc_n += 1;
            if step % every == 0 || step == total {
                history.loss.push((step, (acc_loss / acc_n as f64) as f32));
                acc_loss = 0.0;
                acc_n = 0;
            }
            on_event(TrainEvent::Step {
                epoch,
                step,
                total_steps: total,
                loss: l.loss,
                lr,
                images_per_s: e_seen as f64 / t0.elapsed().as_secs_f64().max(1e-9),
            });
        }
        train.check()?;
        let secs = t0.elapsed().as_secs_f64().max(1e-9);
        let eval = match eval {
            Some(ds) => Some(evaluate(g, ds, norm, 256)?),
            None => None,
        };
        let rec = EpochRecord {
            epoch,
            train_loss: e_loss / e_seen.max(1) as f64,
            train_accuracy: e_correct as f64 / e_seen.max(1) as f64,
            images_per_s: e_seen as f64 / secs,
            eval,
        };
        history.epochs.push(rec.clone());
        on_event(TrainEvent::Epoch(rec.clone()));
        hooks.epoch_end(g, &rec)?;
    }
    let seconds = start.elapsed().as_secs_f64();
    Ok(TrainSummary {
        steps: step,
        stopped,
        images_per_s: images as f64 / seconds.max(1e-9),
        seconds,
        history,
    })
}
