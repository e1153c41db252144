//! Quantization analysis: what the studio shows about a quantized model and what the
//! `ptq`/`sensitivity` commands print.
//!
//! - [`compare`]: float versus fake-quant on the same batches: accuracies, per-layer SQNR and
//!   clipped fractions of activations and weights;
//! - [`layer_stats`]: per-layer weight and activation histograms with the chosen range and grid,
//!   per-channel weight ranges;
//! - [`sensitivity`]: only-this-layer / all-but-this-layer ablations in parallel, reported layer
//!   by layer, cancellable and cached;
//! - [`whatif`]: the per-layer precision what-if, a [`PlanSession`] that keeps one calibration
//!   and calibrates only the observers a changed plan adds, then freezes (with user-pinned
//!   ranges) and compares;
//! - [`size`]: a plan's model size per layer, exactly as the integer runtime stores it;
//! - [`clip`]: a dragged range's grid, clipped fraction and SQNR from a histogram, and the range
//!   each observer kind would pick;
//! - [`search`]: automatic mixed precision, a Pareto front of accuracy, weight bytes and
//!   latency measured on this machine's kernels (the one module that uses `bench::latency`).
//!
//! Sits above `quant` (and `data`, `graph`, and `bench` for [`search`]); knows nothing of the GUI: results are plain data,
//! delivered through callbacks.

pub mod cache;
pub mod clip;
pub mod compare;
pub mod layer_stats;
pub mod search;
pub mod sensitivity;
pub mod size;
pub mod sqnr;
pub mod whatif;

pub use compare::{Comparison, LayerReport, compare};
pub use layer_stats::{LayerStats, layer_stats};
pub use sensitivity::{
    LayerSensitivity, SensitivityCache, SensitivityEvent, SensitivityReport, Sweep, SweepConfig,
    SweepData, SweepMode, sensitivity,
};
pub use size::{LayerSize, PlanSize, plan_size};
pub use whatif::{PlanEval, PlanSession};
