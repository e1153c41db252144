//! Learned rounding of a PTQ result on calibration images, shared by `qatlas ptq --adaround` and
//! the studio's Calibration tab: the first `samples` images as batches, then
//! [`crate::quant::adaround::adaround`] on a copy of the fake-quant model. The caller measures
//! nearest against learned rounding on its own evaluation images.

use crate::data::{DataError, Dataset, Loader, Normalization};
use crate::graph::Graph;
use crate::quant::adaround::{AdaRoundOptions, LayerRounding, adaround};
use crate::quant::{PtqResult, QuantError};
use std::sync::atomic::AtomicBool;
use std::time::Instant;

/// The fake-quant model with learned rounding and what it did per layer.
#[derive(Clone, Debug)]
pub struct Rounded {
    pub graph: Graph,
    pub layers: Vec<LayerRounding>,
    /// Calibration images the statistics came from.
    pub images: usize,
    pub seconds: f64,
}

/// Why learned rounding failed.
#[derive(Debug, thiserror::Error)]
pub enum RoundingError {
    #[error(transparent)]
    Data(#[from] DataError),
    #[error(transparent)]
    Quant(#[from] QuantError),
}

/// Learns the rounding of `ptq`'s fake-quant model on the first `samples` images of `calib`.
pub fn learn_rounding(
    ptq: &PtqResult,
    calib: &Dataset,
    norm: &Normalization,
    samples: usize,
    opts: &AdaRoundOptions,
    stop: &AtomicBool,
    on_layer: &mut dyn FnMut(usize, usize),
) -> Result<Rounded, RoundingError> {
    let t0 = Instant::now();
    let sub = calib.first(samples.min(calib.len()).max(1));
    let batches: Vec<_> = Loader::new(&sub, norm, 128, None, false)
        .map(|(x, _)| x)
        .collect();
    sub.check()?;
    let mut graph = ptq.prepared.graph.clone();
    let layers = adaround(&ptq.folded, &mut graph, &batches, opts, stop, on_layer)?;
    Ok(Rounded {
        graph,
        layers,
        images: sub.len(),
        seconds: t0.elapsed().as_secs_f64(),
    })
}
