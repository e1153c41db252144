//! Projects: a piece of quantization work saved as a RON file ([`file::Project`]: the model
//! and its SHA-256, the data, the plan with its hand-set ranges, the calibration, QAT and export
//! settings, and the figures computed so far) and its headless replay ([`replay::replay`],
//! `qatlas run`), which measures the same figures again with the code the studio runs. Sits
//! above `jobs`; the studio and the CLI use it.

pub mod file;
pub mod replay;

pub use file::{PROJECT_EXTENSION, PROJECT_VERSION, Project, ProjectError};
pub use replay::{ReplayError, ReplayOptions, ReplayReport, replay};
