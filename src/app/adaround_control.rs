//! Learned rounding in the studio (the Calibration tab's "AdaRound" section): from the plan as
//! calibrated on screen, a one-shot task learns the rounding of every integer weight
//! ([`crate::quant::adaround`], with bias correction) on calibration images, evaluates nearest
//! against learned rounding on the same evaluation images, and keeps the rounded fake-quant
//! model, which "Save rounded model…" writes (a model `qatlas eval`, `convert` and the studio
//! open). The UI thread only clones `Arc`s. Knows no egui beyond the parent of a file dialog.

use super::commands::with_model_extension;
use super::state::{Live, Loadable, Outcome, Pick};
use super::studio::StudioApp;
use crate::data::Dataset;
use crate::io::{Model, save_model};
use crate::jobs::rounding::learn_rounding;
use crate::quant::adaround::{AdaRoundOptions, LayerRounding};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;

/// Calibration images the layer statistics come from.
pub const ADAROUND_SAMPLES: usize = 512;

/// Requests of the AdaRound section.
#[derive(Clone, Debug, PartialEq)]
pub enum AdaRoundCommand {
    Run,
    PickSavePath,
    Save(PathBuf),
}

/// A finished learned-rounding run.
#[derive(Clone, Debug)]
pub struct AdaRoundResult {
    /// The fake-quant model with rounded weights and corrected biases.
    pub model: Arc<Model>,
    /// Accuracy of the plan with nearest rounding and with learned rounding, on `images`.
    pub nearest_accuracy: f64,
    pub learned_accuracy: f64,
    pub images: usize,
    pub layers: Vec<LayerRounding>,
    pub seconds: f64,
    /// The workspace revision (plan) it was computed for.
    pub rev: u64,
}

/// The section's state: whether a run is under way, its result, where it was saved.
#[derive(Debug, Default)]
pub struct AdaRoundState {
    pub running: bool,
    pub result: Option<Result<AdaRoundResult, String>>,
    pub saved_to: Option<PathBuf>,
}

/// What a task of the section gave.
#[derive(Debug)]
pub enum AdaRoundOutcome {
    Done(Result<Box<AdaRoundResult>, String>),
    Saved {
        path: PathBuf,
        result: Result<(), String>,
    },
}

impl Live {
    /// Why "Learn the rounding" cannot run now (`Ok` when it can); `calibrated`: whether the
    /// plan on screen has a finished calibration.
    pub fn adaround_blocker(&self, calibrated: bool) -> Result<(), String> {
        if self.adaround.running {
            return Err("learned rounding is already running".into());
        }
        if self.model.is_none() {
            return Err("no model is loaded".into());
        }
        match &self.data.train {
            Loadable::Ready(_) => {}
            Loadable::Loading => return Err("the training set is still loading".into()),
            Loadable::Failed(e) => return Err(format!("no training set: {e}")),
        }
        if !matches!(self.data.test, Loadable::Ready(_)) {
            return Err("the test set is not loaded".into());
        }
        if !calibrated {
            return Err("the plan is not calibrated yet (Calibrate, or wait for it)".into());
        }
        Ok(())
    }
}

impl StudioApp {
    pub(super) fn apply_adaround(&mut self, cmd: AdaRoundCommand, frame: Option<&eframe::Frame>) {
        match cmd {
            AdaRoundCommand::Run => self.run_adaround(),
            AdaRoundCommand::PickSavePath => self.dialog(Pick::AdaRoundSavePath, frame),
            AdaRoundCommand::Save(path) => self.save_adaround(path),
        }
    }

    fn run_adaround(&mut self) {
        let ev = self.ws.current_eval().cloned();
        if let Err(reason) = self.live.adaround_blocker(ev.is_some()) {
            self.live
                .error(format!("cannot learn the rounding: {reason}"));
            return;
        }
        let (Some(ev), Some(view), Some(train), Some(test)) = (
            ev,
            self.live.model.as_ref(),
            self.live.data.train.ready().cloned(),
            self.live.data.test.ready().cloned(),
        ) else {
            return;
        };
        let meta = view.model.meta.clone();
        let (rev, eval_samples) = (self.ws.rev, self.ws.eval_samples);
        self.live.adaround.running = true;
        self.live.adaround.saved_to = None;
        self.spawn("Learning the rounding".into(), move || {
            let result = learn(&ev.eval.ptq, meta, &train, &test, eval_samples, rev)
                .map(Box::new)
                .map_err(|e| e.to_string());
            Outcome::AdaRound(AdaRoundOutcome::Done(result))
        });
    }

    fn save_adaround(&mut self, path: PathBuf) {
        let model = match &self.live.adaround.result {
            Some(Ok(r)) => r.model.clone(),
            _ => {
                self.live
                    .error("cannot save: no learned-rounding run holds a model");
                return;
            }
        };
        let path = with_model_extension(path);
        self.spawn(format!("Saving to {}", path.display()), move || {
            let result = save_model(&model, &path).map_err(|e| e.to_string());
            Outcome::AdaRound(AdaRoundOutcome::Saved { path, result })
        });
    }

    pub(super) fn on_adaround(&mut self, o: AdaRoundOutcome) {
        match o {
            AdaRoundOutcome::Done(r) => {
                self.live.adaround.running = false;
                if let Err(e) = &r {
                    self.live.error(format!("learned rounding failed: {e}"));
                }
                self.live.adaround.result = Some(r.map(|b| *b));
            }
            AdaRoundOutcome::Saved { path, result } => match result {
                Ok(()) => self.live.adaround.saved_to = Some(path),
                Err(e) => self
                    .live
                    .error(format!("cannot save the rounded model: {e}")),
            },
        }
    }
}

/// The work of a run (on a worker thread).
fn learn(
    ptq: &crate::quant::PtqResult,
    meta: crate::io::ModelMeta,
    train: &Dataset,
    test: &Dataset,
    eval_samples: usize,
    rev: u64,
) -> anyhow::Result<AdaRoundResult> {
    let norm = &meta.normalization;
    let test = test.first(eval_samples.min(test.len()));
    let nearest = crate::train::evaluate(&ptq.prepared.graph, &test, norm, 256)?.accuracy;
    let opts = AdaRoundOptions::default();
    let stop = AtomicBool::new(false);
    let r = learn_rounding(
        ptq,
        train,
        norm,
        ADAROUND_SAMPLES,
        &opts,
        &stop,
        &mut |_, _| {},
    )?;
    let learned = crate::train::evaluate(&r.graph, &test, norm, 256)?.accuracy;
    let mut meta = meta;
    meta.command = Some(format!(
        "qatlas ptq --adaround --calib-samples {} --adaround-samples {ADAROUND_SAMPLES} (studio plan)",
        ptq.calibrator.images()
    ));
    Ok(AdaRoundResult {
        model: Arc::new(Model {
            graph: r.graph,
            meta,
        }),
        nearest_accuracy: nearest,
        learned_accuracy: learned,
        images: test.len(),
        layers: r.layers,
        seconds: r.seconds,
        rev,
    })
}
