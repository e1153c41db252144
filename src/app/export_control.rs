//! The Export tab's work: [`ExportCommand`]s start [`Job::export`] (the code `qatlas export`
//! runs) on the current plan's fake-quant graph, or on the model itself when it is already
//! quantized; [`StudioApp::pump_export`] takes the report. The file is measured on the same
//! test images as the plan's simulated accuracy, so the two can be compared number for number.
//! Knows no egui beyond the parent of a file dialog.

use super::state::{Live, Loadable, Pick};
use super::studio::StudioApp;
use crate::jobs::export::{ExportSource, min_qdq_opset};
use crate::jobs::{ExportFormat, ExportReport, ExportSpec, IntegerCheck, Job, JobEvent};
use crate::project::file::{ExportFrom, ExportRecord, ExportSettings};
use std::path::PathBuf;

/// What the Export tab asks for.
#[derive(Clone, Debug, PartialEq)]
pub enum ExportCommand {
    /// Ask for a destination, then export.
    Pick { format: ExportFormat, opset: i64 },
    /// Export to a typed path.
    Run {
        format: ExportFormat,
        opset: i64,
        path: PathBuf,
    },
}

/// A finished export and what it was made from.
#[derive(Debug)]
pub struct ExportDone {
    pub result: Result<ExportReport, String>,
    /// The simulated accuracy of what was exported, on the same images (the plan's, or `None`
    /// for a model exported as it is).
    pub simulated: Option<f64>,
    /// Plan revision exported (`None`: the model as it is).
    pub rev: Option<u64>,
}

/// The running export and the latest result.
#[derive(Default)]
pub struct ExportRun {
    pub job: Option<Job>,
    /// Where the running export writes, and what it was made from.
    pub running: Option<(PathBuf, Option<f64>, Option<u64>)>,
    pub last: Option<ExportDone>,
}

impl std::fmt::Debug for ExportRun {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ExportRun")
            .field("running", &self.running)
            .field("last", &self.last)
            .finish()
    }
}

impl Live {
    /// Why an export of `format` cannot start now (`Ok` when it can).
    pub fn export_blocker(
        &self,
        ws: &super::workspace::Workspace,
        format: ExportFormat,
    ) -> Result<(), String> {
        if self.export.job.is_some() {
            return Err("an export is under way".into());
        }
        let view = self.model.as_ref().ok_or("no model is open")?;
        if !view.unsupported.is_empty() {
            return Err("the model holds ops qatlas cannot run, so it cannot write them".into());
        }
        let quantized = super::qat_run::is_fake_quant(&view.model);
        if format == ExportFormat::OnnxFloat && quantized {
            return Err("the model on screen is quantized: choose QDQ ONNX or the bundle".into());
        }
        if format != ExportFormat::OnnxFloat && !quantized && ws.current_eval().is_none() {
            return Err(if ws.is_evaluating() {
                "the plan is being calibrated; export when its accuracy is on screen".into()
            } else {
                "the plan has no calibrated result yet".into()
            });
        }
        if matches!(self.data.test, Loadable::Loading) {
            return Err("the test set is still loading (the file is measured on it)".into());
        }
        Ok(())
    }

    /// The opset a QDQ export of the current model or plan needs at least.
    pub fn export_min_opset(&self, ws: &super::workspace::Workspace) -> i64 {
        match ws.current_eval() {
            Some(e) => min_qdq_opset(&e.eval.ptq.prepared.graph),
            None => self
                .model
                .as_ref()
                .map_or(13, |v| min_qdq_opset(&v.model.graph)),
        }
    }
}

impl StudioApp {
    /// Applies one Export command. `frame` parents the file dialog when given.
    pub(super) fn apply_export(&mut self, c: ExportCommand, frame: Option<&eframe::Frame>) {
        match c {
            ExportCommand::Pick { format, opset } => {
                self.dialog(Pick::ExportPath(format, opset), frame)
            }
            ExportCommand::Run {
                format,
                opset,
                path,
            } => self.start_export(format, opset, path),
        }
    }

    fn start_export(&mut self, format: ExportFormat, opset: i64, path: PathBuf) {
        if let Err(why) = self.live.export_blocker(&self.ws, format) {
            self.live.error(format!("cannot export: {why}"));
            return;
        }
        let view = self.live.model.as_ref().expect("checked by the blocker");
        let norm = view.model.meta.normalization.clone();
        let quantized = super::qat_run::is_fake_quant(&view.model);
        let qat = self
            .live
            .qat
            .as_ref()
            .filter(|_| self.state.export.from_qat && format != ExportFormat::OnnxFloat)
            .and_then(|r| r.saveable().zip(r.result.as_ref()));
        let from_qat = qat.is_some();
        let (source, simulated, rev, images) = match self.ws.current_eval() {
            // The QAT model is measured on the whole test split, as the run measured it.
            _ if from_qat => {
                let (m, res) = qat.expect("checked");
                (
                    ExportSource::Model(m.clone()),
                    res.quantized_accuracy,
                    None,
                    None,
                )
            }
            Some(e) if !quantized && format != ExportFormat::OnnxFloat => {
                let c = &e.eval.comparison;
                (
                    ExportSource::Plan {
                        model: view.model.clone(),
                        ptq: e.eval.ptq.clone(),
                    },
                    Some(c.quantized_accuracy),
                    Some(self.ws.rev),
                    Some(c.images),
                )
            }
            _ => (ExportSource::Model(view.model.clone()), None, None, None),
        };
        let check = self.live.data.test.ready().map(|d| IntegerCheck {
            samples: images.unwrap_or(d.len()),
            data: d.clone(),
            norm: norm.clone(),
        });
        let spec = ExportSpec {
            format,
            path: path.clone(),
            opset,
            check,
        };
        match Job::export(source, norm, spec, self.waker.clone()) {
            Ok(job) => {
                self.live.export.job = Some(job);
                self.live.project.export = Some(ExportSettings {
                    format,
                    path: path.clone(),
                    opset,
                    from: if from_qat {
                        ExportFrom::Qat
                    } else if rev.is_some() || format == ExportFormat::OnnxFloat {
                        ExportFrom::Plan
                    } else {
                        ExportFrom::Model
                    },
                });
                self.live.export.running = Some((path, simulated, rev));
            }
            Err(e) => self
                .live
                .error(format!("cannot start a worker thread: {e}")),
        }
    }

    /// Takes a finished export's report.
    pub(super) fn pump_export(&mut self) {
        let Some(job) = &self.live.export.job else {
            return;
        };
        let ended = job.is_finished();
        let mut result = None;
        for e in job.drain() {
            match e {
                JobEvent::Exported(r) => result = Some(r),
                JobEvent::Failed(e) => result = Some(Err(e.to_string())),
                _ => {}
            }
        }
        if result.is_none() && !ended {
            return;
        }
        let result =
            result.unwrap_or_else(|| Err("the export worker ended without a result".into()));
        let (_, simulated, rev) = self.live.export.running.take().unwrap_or_default();
        match &result {
            Ok(r) => {
                let record = ExportRecord::of(r);
                let exports = &mut self.live.project.exports;
                exports.retain(|e| e.path != record.path);
                exports.push(record);
                self.live
                    .info(format!("wrote {} ({} bytes)", r.path.display(), r.bytes))
            }
            Err(e) => self.live.error(format!("export failed: {e}")),
        }
        self.live.export.job = None;
        self.live.export.last = Some(ExportDone {
            result,
            simulated,
            rev,
        });
    }
}
