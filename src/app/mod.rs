//! The studio window (cargo feature `gui`): an eframe/egui application over the library, laid
//! out as the quantization workflow: the layers table with per-layer precision on the left, the
//! summary strip on top, the workflow tabs in the centre (see `ARCHITECTURE.md`).
//!
//! Structure, after egui's demo app and rerun: the [`workspace::Workspace`] holds the plan and
//! its cached analysis results and knows no egui; [`state`] holds the live handles, settings,
//! [`state::Command`] and the per-frame [`state::FrameCtx`]; one file per panel in [`panels`]
//! reads the context and sends typed commands, applied at the end of the frame ([`commands`],
//! [`qat_control`], [`bench_control`], [`project_control`]; window input in [`input`]); [`plan_jobs`] bridges the workspace and its background
//! jobs. The UI thread never computes tensors or blocks: models, datasets, training, evaluation,
//! calibration, sweeps, latency, saving and file dialogs all run on worker threads
//! ([`crate::jobs`] and the one-shot [`task::Task`]) that wake the UI through an injected
//! waker. No import circles among these files; nothing outside `app` depends on this module.

pub mod adaround_control;
pub mod bench_control;
pub mod bench_run;
pub mod commands;
pub mod export_control;
pub mod file_names;
pub mod format;
pub mod frame_times;
pub mod input;
pub mod model_view;
pub mod outcomes;
pub mod panels;
pub mod plan_jobs;
pub mod prefs;
pub mod progress;
pub mod project_control;
pub mod qat_control;
pub mod qat_run;
pub mod scratch;
pub mod search_state;
pub mod state;
pub mod studio;
pub mod task;
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
    // Scratch folders of studios that crashed go first (off the UI thread).
    std::thread::spawn(|| scratch::clean_stale(&scratch::root()));
    let r = eframe::run_native(
        APP_NAME,
        options,
        Box::new(move |cc| {
            let ctx = cc.egui_ctx.clone();
            let waker: Waker = Arc::new(move || ctx.request_repaint());
            let mut app = StudioApp::new(args, waker);
            if let Some(p) = cc
                .storage
                .and_then(|s| eframe::get_value::<prefs::UiPrefs>(s, prefs::KEY))
            {
                app.prefs = p;
                // egui's restored memory holds the panel widths of the last session.
                app.keep_restored_layout();
            }
            Ok(Box::new(app))
        }),
    )
    .map_err(|e| anyhow::anyhow!("cannot open the studio window: {e}"));
    scratch::remove_own();
    r
}
