//! The studio window (cargo feature `gui`): an eframe/egui application over the library. It opens
//! a model, shows its layers and stored training curves, evaluates it on the test set and trains
//! a fresh one with live curves, then saves the result.
//!
//! Structure, after egui's demo app: one struct per panel ([`TopBar`](top_bar::TopBar),
//! [`ModelPanel`](model_panel::ModelPanel), [`ActionsPanel`](actions::ActionsPanel),
//! [`CurvesPanel`](curves::CurvesPanel), the QAT and Benchmarks tabs); persisted state ([`StudioState`]) apart from live
//! handles ([`state::Live`]); panels send typed [`state::Command`]s, applied at the end of the
//! frame. The UI thread never computes tensors or blocks: models, datasets, training,
//! evaluation, saving and file dialogs all run on worker threads ([`crate::jobs`] and the
//! one-shot [`task::Task`]) that wake the UI through an injected waker. Nothing outside `app`
//! depends on this module.

pub mod actions;
pub mod bench_panel;
pub mod bench_run;
pub mod commands;
pub mod curves;
pub mod format;
pub mod model_panel;
pub mod panels;
pub mod plan_jobs;
pub mod progress;
pub mod qat_control;
pub mod qat_panel;
pub mod qat_run;
pub mod state;
pub mod studio;
pub mod task;
pub mod top_bar;
pub mod workspace;

pub use studio::{StudioApp, StudioState};

use crate::cli::common::GuiArgs;
use crate::jobs::Waker;
use eframe::egui;
use std::sync::Arc;

/// The window title and the name eframe files the app under.
pub const APP_NAME: &str = "qatlas studio";

/// Opens the studio window and runs it until it is closed.
///
/// `args.model` is opened at start (default: the built-in pretrained model) and `args.data` is
/// the dataset folder (default: the built-in MNIST); either may be missing, which the window
/// reports.
pub fn run(args: GuiArgs) -> anyhow::Result<()> {
    let options = eframe::NativeOptions {
        viewport: egui::ViewportBuilder::default()
            .with_title(APP_NAME)
            .with_inner_size([1280.0, 800.0])
            .with_min_inner_size([900.0, 600.0]),
        ..Default::default()
    };
    eframe::run_native(
        APP_NAME,
        options,
        Box::new(move |cc| {
            let ctx = cc.egui_ctx.clone();
            let waker: Waker = Arc::new(move || ctx.request_repaint());
            Ok(Box::new(StudioApp::new(args, waker)))
        }),
    )
    .map_err(|e| anyhow::anyhow!("cannot open the studio window: {e}"))
}
