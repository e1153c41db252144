//! Replaying a project headless (`qatlas run`): open its model (checking the SHA-256) and data,
//! calibrate and measure its plan exactly as the studio's what-if does
//! ([`calibrate_and_evaluate`]: same images, same batches, so the same numbers), convert it to
//! the integer runtime and measure that, time it, run QAT when the project asks for it, and
//! write its export. The result is the project's [`Results`] as measured now, next to the ones
//! saved with the project.

use super::file::{
    ExportFrom, ExportRecord, LatencyFigures, Measured, Project, QatFigures, Results, model_changed,
};
use crate::analysis::whatif::PlanSession;
use crate::bench::latency::{LatencyConfig, plan_latency};
use crate::data::{Split, load_split_with};
use crate::jobs::analysis::{PlanData, calibrate_and_evaluate};
use crate::jobs::export::{ExportSource, export};
use crate::jobs::sweep::integer_accuracy;
use crate::jobs::{ExportSpec, IntegerCheck, JobEvent, run_qat};
use crate::train::Control;
use serde::Serialize;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use thiserror::Error;

/// Why a replay stopped. Messages name the project or model file where the wrapped error
/// does not already.
#[derive(Debug, Error)]
pub enum ReplayError {
    #[error("cannot read the model {}: {error}", path.display())]
    ReadModel {
        path: PathBuf,
        error: std::io::Error,
    },
    #[error("{0}; pass --accept-changed-model to replay on it anyway")]
    ModelChanged(String),
    /// The project file asks for something it cannot get.
    #[error("{}: {problem}", project.display())]
    Project { project: PathBuf, problem: String },
    #[error(transparent)]
    Io(#[from] crate::io::IoError),
    #[error(transparent)]
    Data(#[from] crate::data::DataError),
    #[error(transparent)]
    Quant(#[from] crate::quant::QuantError),
    #[error(transparent)]
    IntegerCheck(#[from] crate::jobs::IntegerCheckError),
    #[error(transparent)]
    Bench(#[from] crate::bench::BenchError),
    #[error(transparent)]
    Qat(#[from] crate::jobs::QatError),
    #[error("quantization-aware training failed: {0}")]
    QatFailed(String),
    /// Writing or measuring the export failed (the message names the file).
    #[error("{0}")]
    Export(String),
}

type Result<T> = std::result::Result<T, ReplayError>;

/// The studio's latency measurement (batch 1), which a replay repeats.
pub const LATENCY: LatencyConfig = LatencyConfig {
    batch: 1,
    repeats: 15,
    min_seconds: 0.05,
};

/// What a replay may leave out or change.
#[derive(Clone, Debug, Default)]
pub struct ReplayOptions {
    /// Write the export into this folder (same file name) instead of the project's path.
    pub export_dir: Option<PathBuf>,
    pub skip_qat: bool,
    pub skip_latency: bool,
    pub skip_export: bool,
    /// Go on when the model file's SHA-256 differs from the project's (reported either way).
    pub accept_changed_model: bool,
}

/// A replay's figures: `now` as measured by this run, `saved` as the project recorded them.
#[derive(Clone, Debug, Serialize)]
pub struct ReplayReport {
    pub project: PathBuf,
    pub model: PathBuf,
    /// Why the model is not the one the project was saved with, if it is not.
    pub model_changed: Option<String>,
    pub now: Results,
    pub saved: Results,
    pub seconds: f64,
}

/// Replays `project` (read from `path`); `progress` hears each stage as it starts.
pub fn replay(
    project: &Project,
    path: &Path,
    opts: &ReplayOptions,
    progress: &mut dyn FnMut(&str),
) -> Result<ReplayReport> {
    let start = std::time::Instant::now();
    let model_path = &project.model.path;
    progress("checking the model file");
    let changed = model_changed(&project.model).map_err(|error| ReplayError::ReadModel {
        path: model_path.clone(),
        error,
    })?;
    if let Some(why) = &changed
        && !opts.accept_changed_model
    {
        return Err(ReplayError::ModelChanged(why.clone()));
    }
    progress("opening the model");
    let mut model = crate::io::load_any(model_path)?;
    if let Some(n) = &project.data.normalization {
        model.meta.normalization = n.clone();
    }
    let model = Arc::new(model);
    let norm = model.meta.normalization.clone();
    let dir = &project.data.dir;
    if dir.as_os_str().is_empty() {
        return Err(ReplayError::Project {
            project: path.to_path_buf(),
            problem: "the project names no data folder".into(),
        });
    }
    progress("reading the data");
    let transform = &project.data.transform;
    let train = Arc::new(load_split_with(dir, Split::Train, transform)?);
    let test = Arc::new(load_split_with(dir, Split::Test, transform)?);
    let stop = AtomicBool::new(false);
    let mut now = Results::default();

    let quantized = crate::jobs::qat_request::is_fake_quant(&model);
    let mut evaluated = None;
    let mut qat_model = None;
    if !quantized {
        let plan = match project.plan_with_pins() {
            Some(p) => p,
            None => {
                crate::quant::QuantPlan::default_for(&model.graph, crate::quant::Precision::Int8)
            }
        };
        progress("calibrating and measuring the plan");
        let mut session = PlanSession::new(&model.graph)?;
        let data = PlanData {
            calib: train.clone(),
            eval: test.clone(),
            norm: norm.clone(),
            calib_samples: project.calibration.calib_samples,
            eval_samples: project.calibration.eval_samples,
        };
        let (ev, _) = calibrate_and_evaluate(&mut session, &plan, &data, &stop, &mut |_, _| {})?;
        let c = &ev.comparison;
        now.set_plan_figures(&ev);
        progress("converting to the integer runtime");
        let check = IntegerCheck {
            data: test.clone(),
            norm: norm.clone(),
            samples: c.images,
        };
        let (a, images) = integer_accuracy(&ev.ptq.prepared.graph, &check)?;
        now.integer_accuracy = Some(Measured {
            accuracy: a,
            images,
        });
        if !opts.skip_latency {
            progress("timing the plan on the integer kernels");
            let l = plan_latency(&ev.ptq.folded, &ev.ptq.prepared.graph, &LATENCY, &stop)?;
            now.latency = Some(LatencyFigures {
                int_us: l.int_us,
                float_us: l.float_us,
                kernel_path: l.kernel_path.clone(),
                cpu: crate::bench::cpu_name(),
            });
        }
        evaluated = Some(ev);
    }

    if let Some(req) = project.qat.filter(|_| !opts.skip_qat) {
        if quantized {
            return Err(ReplayError::Project {
                project: path.to_path_buf(),
                problem: "the project asks for QAT, but its model is already quantized".into(),
            });
        }
        progress("quantization-aware training");
        let plan = evaluated.as_ref().map(|e| e.ptq.plan.clone());
        let command = req.cli_equivalent(Some(model_path), dir);
        let spec = req.spec(&model, command, None, plan);
        let train = match req.limit {
            Some(n) if n < train.len() => Arc::new(train.first(n.max(1))),
            _ => train.clone(),
        };
        let out = run_qat(
            &spec,
            &train,
            Some(&test),
            &Control::new(),
            &|_: JobEvent| {},
        )?;
        qat_model = Some(Arc::new(out.model.clone()));
        if let Some(e) = &out.error {
            return Err(ReplayError::QatFailed(e.clone()));
        }
        now.qat = Some(QatFigures {
            float_accuracy: out.float_accuracy,
            start_accuracy: out.start_accuracy,
            quantized_accuracy: out.quantized_accuracy,
            epochs: req.epochs,
            stopped_early: out.summary.as_ref().is_some_and(|s| s.stopped),
        });
    }

    if let Some(e) = project.export.as_ref().filter(|_| !opts.skip_export) {
        let target = match &opts.export_dir {
            Some(d) => d.join(e.path.file_name().unwrap_or_default()),
            None => e.path.clone(),
        };
        progress("exporting");
        let source = match (e.from, &evaluated, &qat_model) {
            (ExportFrom::Plan, Some(ev), _) => ExportSource::Plan {
                model: model.clone(),
                ptq: ev.ptq.clone(),
            },
            (ExportFrom::Qat, _, Some(q)) => ExportSource::Model(q.clone()),
            (ExportFrom::Qat, _, None) => {
                return Err(ReplayError::Project {
                    project: path.to_path_buf(),
                    problem: format!(
                        "the export is of the QAT result, so QAT must run (the project has {}; --skip-qat was {})",
                        if project.qat.is_some() {
                            "QAT settings"
                        } else {
                            "no QAT settings"
                        },
                        opts.skip_qat
                    ),
                });
            }
            _ => ExportSource::Model(model.clone()),
        };
        // The QAT result is measured on the whole test split, as the QAT run measured it.
        let images = match e.from {
            ExportFrom::Qat => test.len(),
            _ => now
                .plan_accuracy
                .map_or(project.calibration.eval_samples, |m| m.images),
        };
        let spec = ExportSpec {
            format: e.format,
            path: target,
            opset: e.opset,
            check: Some(IntegerCheck {
                data: test.clone(),
                norm: norm.clone(),
                samples: images,
            }),
        };
        let r = export_source(&source, &norm, &spec)?;
        now.exports.push(r);
    }

    Ok(ReplayReport {
        project: path.to_path_buf(),
        model: model_path.clone(),
        model_changed: changed,
        now,
        saved: project.results.clone(),
        seconds: start.elapsed().as_secs_f64(),
    })
}

/// Writes and measures one export (the code the studio's Export tab runs).
fn export_source(
    source: &ExportSource,
    norm: &crate::data::Normalization,
    spec: &ExportSpec,
) -> Result<ExportRecord> {
    let (float, quantized) = source.graphs();
    let r = export(float, quantized, norm, spec).map_err(ReplayError::Export)?;
    Ok(ExportRecord::of(&r))
}
