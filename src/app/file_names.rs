//! Small helpers of the training and saving commands: the command line that reproduces a
//! training run started in the studio, the model file extension, the default file name of a
//! trained model.

use super::state::TrainRequest;
use crate::data::Normalization;
use crate::io::Model;
use std::path::{Path, PathBuf};

/// The `qatlas train` command line that reproduces a studio run (recorded in the model).
pub fn cli_equivalent(req: &TrainRequest, data_dir: &Path, norm: &Normalization) -> String {
    let list = |v: &[f32]| v.iter().map(f32::to_string).collect::<Vec<_>>().join(",");
    format!(
        "qatlas train --arch {} --data {} --epochs {} --lr {} --mean {} --std {} (run in the studio)",
        req.arch.name(),
        data_dir.display(),
        req.epochs,
        req.lr,
        list(&norm.mean),
        list(&norm.std)
    )
}

/// `path` with the `.safetensors` extension the model format uses, added if missing.
pub fn with_model_extension(path: PathBuf) -> PathBuf {
    if path
        .extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("safetensors"))
    {
        path
    } else {
        let mut s = path.into_os_string();
        s.push(".safetensors");
        PathBuf::from(s)
    }
}

/// `name` with everything but letters, digits, `-` and `_` replaced by `_` (a file-name stem).
pub fn safe_stem(name: &str) -> String {
    name.chars()
        .map(|c| {
            if c.is_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

/// A file name suggested when saving `model`.
pub(super) fn default_file_name(model: &Model) -> String {
    file_name_with(model, "trained")
}

/// `<arch or graph name>_<suffix>.safetensors` for `model`.
pub(super) fn file_name_with(model: &Model, suffix: &str) -> String {
    let base = model
        .meta
        .arch
        .clone()
        .unwrap_or_else(|| model.graph.name.clone());
    format!("{}_{suffix}.safetensors", safe_stem(&base))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::zoo::Arch;

    #[test]
    fn the_recorded_command_reproduces_the_run() {
        let req = TrainRequest {
            arch: Arch::Lenet5,
            epochs: 3,
            lr: 0.001,
        };
        let cmd = cli_equivalent(&req, Path::new("assets/mnist"), &Normalization::mnist());
        assert_eq!(
            cmd,
            "qatlas train --arch lenet5 --data assets/mnist --epochs 3 --lr 0.001 --mean 0.1307 --std 0.3081 (run in the studio)"
        );
        assert_eq!(
            with_model_extension("a/b".into()),
            PathBuf::from("a/b.safetensors")
        );
        assert_eq!(
            with_model_extension("a/b.SafeTensors".into()),
            PathBuf::from("a/b.SafeTensors")
        );
        assert_eq!(
            with_model_extension("a/b.v2".into()),
            PathBuf::from("a/b.v2.safetensors")
        );
    }
}
