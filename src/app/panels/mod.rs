//! The quantization panels of the studio, one file each: the layers table (left), the summary
//! strip (top), and the workflow tabs (Data, Histograms, Sensitivity, Calibration). Each reads
//! a borrowed [`FrameCtx`](super::state::FrameCtx) (the [`Workspace`](super::workspace::Workspace)
//! among it) and sends typed commands; none mutates state or imports another panel. Small
//! shared widgets live in [`widgets`].

pub mod calibration;
pub mod data;
pub mod histograms;
pub mod layers;
pub mod sensitivity;
pub mod summary;
pub mod widgets;
