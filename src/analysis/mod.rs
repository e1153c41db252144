//! Quantization analysis: what the studio shows about a quantized model and what the
//! `ptq`/`sensitivity` commands print.
//!
//! - [`compare`]: float versus fake-quant on the same batches: accuracies, per-layer SQNR and
//!   clipped fractions of activations and weights;
//! - [`layer_stats`]: per-layer weight and activation histograms with the chosen range and grid,
//!   per-channel weight ranges;
//! - [`sensitivity`]: only-this-layer / all-but-this-layer ablations in parallel, reported layer
//!   by layer, cancellable and cached.
//!
//! Sits above `quant` (and `data`, `graph`); knows nothing of the GUI: results are plain data,
//! delivered through callbacks.

pub mod cache;
pub mod compare;
pub mod layer_stats;
pub mod sensitivity;
pub mod sqnr;

pub use compare::{Comparison, LayerReport, compare};
pub use layer_stats::{LayerStats, layer_stats};
pub use sensitivity::{
    LayerSensitivity, SensitivityCache, SensitivityEvent, SensitivityReport, Sweep, SweepConfig,
    SweepData, SweepMode, sensitivity,
};
