//! The project file: one piece of quantization work as RON. What it was done on (the model
//! file with its SHA-256, the data folder and normalisation), what was chosen (the plan with
//! its hand-set ranges, the calibration, QAT and export settings) and what came out (the
//! figures the window showed). Paths are stored relative to the project file's folder when they
//! lie under it, so a project folder can move. Reading never trusts the file: a size cap, a
//! version check, defaults for missing fields, errors naming the file.

use crate::analysis::sensitivity::{LayerSensitivity, SweepMode};
use crate::data::{ImageTransform, Normalization};
use crate::jobs::ExportFormat;
use crate::jobs::analysis::TensorRole;
use crate::jobs::qat_request::QatRequest;
use crate::quant::{PointRange, Precision, QuantPlan};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::io::Read;
use std::path::{Path, PathBuf};

/// The project format this build writes; it reads this one and every older one.
pub const PROJECT_VERSION: u32 = 1;

/// File extension of project files.
pub const PROJECT_EXTENSION: &str = "qatlas.ron";

/// Larger project files are refused before anything is allocated for them.
pub const MAX_PROJECT_BYTES: u64 = 16 << 20;

/// Images measured by default (the start of the test split) and calibrated on (the start of
/// the training split): the studio's defaults.
pub const DEFAULT_SAMPLES: usize = 1000;

/// What went wrong with a project file; every variant names the file.
#[derive(Debug, thiserror::Error)]
pub enum ProjectError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: the file is {bytes} bytes; a project file is at most {MAX_PROJECT_BYTES}")]
    TooLarge { path: PathBuf, bytes: u64 },
    #[error("{path}: not a qatlas project file: {message}")]
    Parse { path: PathBuf, message: String },
    #[error(
        "{path}: the project was written by a newer qatlas (project version {found}; this build reads up to {PROJECT_VERSION})"
    )]
    NewerVersion { path: PathBuf, found: u32 },
    #[error("{path}: {message}")]
    Invalid { path: PathBuf, message: String },
}

/// The model a project works on.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct ModelRef {
    pub path: PathBuf,
    /// SHA-256 of the file's bytes when the project was saved (lowercase hex).
    pub sha256: String,
    pub bytes: u64,
}

/// The data folder and the input normalisation the model is run with.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct DataRef {
    pub dir: PathBuf,
    /// `None`: the model file's own.
    pub normalization: Option<Normalization>,
    /// Resize and crop for image folders (none: images used at their size).
    pub transform: ImageTransform,
}

/// How many images calibrate the plan and measure it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Calibration {
    /// From the start of the training split.
    pub calib_samples: usize,
    /// From the start of the test split.
    pub eval_samples: usize,
}

impl Default for Calibration {
    fn default() -> Self {
        Calibration {
            calib_samples: DEFAULT_SAMPLES,
            eval_samples: DEFAULT_SAMPLES,
        }
    }
}

/// A range set by hand on a layer tensor (the histogram's "Apply"); it is also in the plan's
/// `ranges`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PinnedRange {
    pub layer: String,
    pub role: TensorRole,
    pub range: PointRange,
}

/// What an export writes from.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum ExportFrom {
    /// The calibrated plan's fake-quant graph (or the float model, for float ONNX).
    #[default]
    Plan,
    /// The model as it is (an already quantized model).
    Model,
    /// The deployable model of the project's QAT run.
    Qat,
}

/// The export a project makes.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ExportSettings {
    pub format: ExportFormat,
    pub path: PathBuf,
    pub opset: i64,
    #[serde(default)]
    pub from: ExportFrom,
}

/// An accuracy and the number of images behind it.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct Measured {
    pub accuracy: f64,
    pub images: usize,
}

/// A latency measurement and where it was taken.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LatencyFigures {
    /// Per image, microseconds: the plan on the integer runtime and the float model.
    pub int_us: f64,
    pub float_us: f64,
    pub kernel_path: String,
    /// The CPU it was measured on (`/proc/cpuinfo`'s model name).
    #[serde(default)]
    pub cpu: String,
}

/// A sensitivity sweep's table.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SweepFigures {
    /// "int4 weights", "W4A4".
    pub label: String,
    pub mode: SweepMode,
    /// The swept precision: weights, and whether activations went to int4 too.
    pub weights: Precision,
    #[serde(default)]
    pub a4: bool,
    /// Images each variant was measured on.
    pub samples: usize,
    pub float_accuracy: Option<f64>,
    pub quantized_accuracy: Option<f64>,
    pub rows: Vec<LayerSensitivity>,
}

/// What a QAT run gave.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct QatFigures {
    pub float_accuracy: Option<f64>,
    pub start_accuracy: Option<f64>,
    pub quantized_accuracy: Option<f64>,
    pub epochs: usize,
    pub stopped_early: bool,
}

impl Default for QatFigures {
    fn default() -> Self {
        QatFigures {
            float_accuracy: None,
            start_accuracy: None,
            quantized_accuracy: None,
            epochs: 0,
            stopped_early: false,
        }
    }
}

/// A file an export wrote.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ExportRecord {
    pub format: ExportFormat,
    pub path: PathBuf,
    pub bytes: u64,
    pub float_bytes: u64,
    /// Measured by reading the file back.
    pub accuracy: Option<Measured>,
}

impl ExportRecord {
    /// The record of an export's report.
    pub fn of(r: &crate::jobs::ExportReport) -> ExportRecord {
        ExportRecord {
            format: r.format,
            path: r.path.clone(),
            bytes: r.bytes,
            float_bytes: r.float_bytes,
            accuracy: r
                .accuracy
                .map(|(accuracy, images)| Measured { accuracy, images }),
        }
    }
}

/// The figures computed so far (what the window showed when the project was saved).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Results {
    pub float_accuracy: Option<Measured>,
    /// The plan simulated (fake quantization).
    pub plan_accuracy: Option<Measured>,
    /// The plan converted to the integer runtime.
    pub integer_accuracy: Option<Measured>,
    pub weight_bytes: Option<u64>,
    pub float_weight_bytes: Option<u64>,
    pub latency: Option<LatencyFigures>,
    pub sensitivity: Option<SweepFigures>,
    pub qat: Option<QatFigures>,
    pub exports: Vec<ExportRecord>,
}

impl Results {
    /// Float and simulated plan accuracy and the weight bytes of an evaluated plan (the studio's
    /// summary strip and `qatlas run` both take them from here).
    pub fn set_plan_figures(&mut self, ev: &crate::analysis::whatif::PlanEval) {
        let c = &ev.comparison;
        self.float_accuracy = Some(Measured {
            accuracy: c.float_accuracy,
            images: c.images,
        });
        self.plan_accuracy = Some(Measured {
            accuracy: c.quantized_accuracy,
            images: c.images,
        });
        self.weight_bytes = Some(ev.size.bytes as u64);
        self.float_weight_bytes = Some(ev.size.float_bytes as u64);
    }
}

/// A project: see the module doc.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Project {
    pub version: u32,
    pub model: ModelRef,
    pub data: DataRef,
    /// `None`: the model's default plan (or an already quantized model, which has none).
    pub plan: Option<QuantPlan>,
    pub pins: Vec<PinnedRange>,
    pub calibration: Calibration,
    /// Run quantization-aware training with these settings.
    pub qat: Option<QatRequest>,
    pub export: Option<ExportSettings>,
    pub results: Results,
}

impl Default for Project {
    fn default() -> Self {
        Project {
            version: PROJECT_VERSION,
            model: ModelRef::default(),
            data: DataRef::default(),
            plan: None,
            pins: Vec::new(),
            calibration: Calibration::default(),
            qat: None,
            export: None,
            results: Results::default(),
        }
    }
}

impl Project {
    /// Everything but the results: two projects with equal settings describe the same work.
    pub fn settings_eq(&self, other: &Project) -> bool {
        let strip = |p: &Project| Project {
            results: Results::default(),
            ..p.clone()
        };
        strip(self) == strip(other)
    }

    /// The plan to calibrate: the stored plan with the pinned ranges as its fixed ranges.
    pub fn plan_with_pins(&self) -> Option<QuantPlan> {
        let mut p = self.plan.clone()?;
        p.ranges = self.pins.iter().map(|p| p.range.clone()).collect();
        Some(p)
    }

    /// The project's name: the file name without its extension.
    pub fn name_of(path: &Path) -> String {
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        name.strip_suffix(&format!(".{PROJECT_EXTENSION}"))
            .or_else(|| name.strip_suffix(".ron"))
            .unwrap_or(&name)
            .to_string()
    }

    /// Reads and checks a project file. Paths in it are resolved against its folder.
    pub fn load(path: &Path) -> Result<Project, ProjectError> {
        let io = |source| ProjectError::Io {
            path: path.to_path_buf(),
            source,
        };
        let file = std::fs::File::open(path).map_err(io)?;
        let bytes = file.metadata().map_err(io)?.len();
        if bytes > MAX_PROJECT_BYTES {
            return Err(ProjectError::TooLarge {
                path: path.to_path_buf(),
                bytes,
            });
        }
        let mut text = String::new();
        file.take(MAX_PROJECT_BYTES)
            .read_to_string(&mut text)
            .map_err(io)?;
        Self::parse(&text, path)
    }

    /// Parses project text read from `path` (named in errors; relative paths resolve against
    /// its folder).
    pub fn parse(text: &str, path: &Path) -> Result<Project, ProjectError> {
        let parse = |message: String| ProjectError::Parse {
            path: path.to_path_buf(),
            message,
        };
        // The version first, so a newer file is reported as such rather than as a parse error.
        #[derive(Deserialize)]
        struct VersionOnly {
            #[serde(default)]
            version: Option<u32>,
        }
        // Hand-written files may leave out `Some(…)` around optional values.
        let ron = ron::Options::default()
            .with_default_extension(ron::extensions::Extensions::IMPLICIT_SOME);
        let v: VersionOnly = ron.from_str(text).map_err(|e| parse(e.to_string()))?;
        match v.version {
            None => return Err(parse("it has no `version` field".into())),
            Some(found) if found > PROJECT_VERSION => {
                return Err(ProjectError::NewerVersion {
                    path: path.to_path_buf(),
                    found,
                });
            }
            Some(_) => {}
        }
        let mut p: Project = ron.from_str(text).map_err(|e| parse(e.to_string()))?;
        if p.model.path.as_os_str().is_empty() {
            return Err(ProjectError::Invalid {
                path: path.to_path_buf(),
                message: "the project names no model file (`model: (path: ...)`)".into(),
            });
        }
        let base = folder_of(path);
        p.model.path = resolve(&base, &p.model.path);
        if !p.data.dir.as_os_str().is_empty() {
            p.data.dir = resolve(&base, &p.data.dir);
        }
        if let Some(e) = &mut p.export {
            e.path = resolve(&base, &e.path);
        }
        for e in &mut p.results.exports {
            e.path = resolve(&base, &e.path);
        }
        Ok(p)
    }

    /// The RON text of the project as it is stored at `path` (paths under its folder made
    /// relative).
    pub fn to_text(&self, path: &Path) -> Result<String, ProjectError> {
        let base = folder_of(path);
        let mut p = self.clone();
        p.version = PROJECT_VERSION;
        p.model.path = relative(&base, &p.model.path);
        p.data.dir = relative(&base, &p.data.dir);
        if let Some(e) = &mut p.export {
            e.path = relative(&base, &e.path);
        }
        for e in &mut p.results.exports {
            e.path = relative(&base, &e.path);
        }
        let cfg = ron::ser::PrettyConfig::new().struct_names(false);
        ron::ser::to_string_pretty(&p, cfg).map_err(|e| ProjectError::Invalid {
            path: path.to_path_buf(),
            message: format!("cannot write the project: {e}"),
        })
    }

    /// Writes the project to `path` atomically (a temporary file, then a rename).
    pub fn save(&self, path: &Path) -> Result<(), ProjectError> {
        let text = self.to_text(path)?;
        crate::io::atomic::write_atomic(path, text.as_bytes()).map_err(|source| ProjectError::Io {
            path: path.to_path_buf(),
            source,
        })
    }
}

/// SHA-256 of a file (lowercase hex) and its size, read in 1 MiB pieces.
pub fn file_sha256(path: &Path) -> std::io::Result<(String, u64)> {
    let mut f = std::fs::File::open(path)?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    let mut total = 0u64;
    loop {
        let n = f.read(&mut buf)?;
        if n == 0 {
            break;
        }
        total += n as u64;
        h.update(&buf[..n]);
    }
    let hex = h.finalize().iter().map(|b| format!("{b:02x}")).collect();
    Ok((hex, total))
}

/// Whether the model file still has the bytes the project was saved with: `Ok(None)` if so,
/// `Ok(Some(why))` if it changed, `Err` if it cannot be read.
pub fn model_changed(m: &ModelRef) -> std::io::Result<Option<String>> {
    if m.sha256.is_empty() {
        return Ok(None);
    }
    let (hash, bytes) = file_sha256(&m.path)?;
    Ok((hash != m.sha256).then(|| {
        format!(
            "{}: the model file changed since the project was saved (SHA-256 {}…, {} bytes; the project has {}…, {} bytes)",
            m.path.display(),
            &hash[..12],
            bytes,
            &m.sha256[..m.sha256.len().min(12)],
            m.bytes
        )
    }))
}

/// The folder a file is in, as an absolute path.
fn folder_of(path: &Path) -> PathBuf {
    let abs = std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf());
    abs.parent().map(Path::to_path_buf).unwrap_or_default()
}

/// `p` relative to `base` when it lies under it, else absolute.
fn relative(base: &Path, p: &Path) -> PathBuf {
    if p.as_os_str().is_empty() {
        return PathBuf::new();
    }
    let abs = std::path::absolute(p).unwrap_or_else(|_| p.to_path_buf());
    match abs.strip_prefix(base) {
        Ok(r) if !r.as_os_str().is_empty() => r.to_path_buf(),
        _ => abs,
    }
}

/// A stored path: relative ones are under `base`.
fn resolve(base: &Path, p: &Path) -> PathBuf {
    if p.is_absolute() {
        p.to_path_buf()
    } else {
        base.join(p)
    }
}

#[cfg(test)]
mod tests;
