//! Training and evaluation of float graphs: optimizers, learning-rate schedules, the trainer loop
//! with typed progress events and a shared stop flag, and evaluation.
//!
//! Depends on `graph`, `ops` and `data`; knows nothing of files or the GUI.

pub mod control;
pub mod divergence;
pub mod eval;
pub mod optim;
pub mod schedule;
pub mod throughput;
pub mod trainer;

pub use control::Control;
pub use divergence::{Divergence, NonFinite};
pub use eval::{EvalResult, evaluate, evaluate_with};
pub use optim::{Optimizer, OptimizerConfig};
pub use schedule::Schedule;
pub use trainer::{
    EpochHooks, EpochRecord, NoHooks, TrainConfig, TrainError, TrainEvent, TrainHistory,
    TrainSummary, train, train_from,
};
