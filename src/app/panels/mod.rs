//! The panels of the studio, one file each: the top bar and the summary strip, the layers
//! table (left), and the workflow tabs (Model & data, Histograms, Sensitivity, Calibration,
//! QAT, Benchmarks, Training with its curves). Each reads
//! a borrowed [`FrameCtx`](super::state::FrameCtx) (the [`Workspace`](super::workspace::Workspace)
//! among it) and sends typed commands; none mutates state or imports another panel. Small
//! shared widgets live in [`widgets`].

pub mod bench;
pub mod calibration;
pub mod curves;
pub mod data;
pub mod export;
pub mod histograms;
pub mod layers;
pub mod model;
pub mod qat;
pub mod sensitivity;
pub mod summary;
pub mod top_bar;
pub mod training;
pub mod widgets;
