//! The panels of the studio, one file each: the menu bar, the top bar and the summary strip,
//! the layers table (left), the workflow tabs (Model & data, Histograms, Sensitivity,
//! Search, Calibration, QAT, Benchmarks, Export, Training with its curves) and the windows over them
//! (questions, shortcut list, message details). Each reads
//! a borrowed [`FrameCtx`](super::state::FrameCtx) (the [`Workspace`](super::workspace::Workspace)
//! among it) and sends typed commands; none mutates state or imports another panel. Small
//! shared widgets live in [`widgets`].

pub mod adaround;
pub mod bench;
pub mod bundle;
pub mod calibration;
pub mod curves;
pub mod data;
pub mod dialogs;
pub mod export;
pub mod histograms;
pub mod layers;
pub mod menu;
pub mod model;
pub mod project;
pub mod qat;
pub mod qat_flips;
pub mod qat_recipe;
pub mod qat_scales;
pub mod search;
pub mod sensitivity;
pub mod summary;
pub mod top_bar;
pub mod training;
pub mod widgets;
