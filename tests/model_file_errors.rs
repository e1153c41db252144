//! Malformed model files: each gives an error naming the file and the problem, never a panic.

use qatlas::data::Normalization;
use qatlas::io::{Model, ModelMeta, load_model, save_model};
use qatlas::zoo::Arch;

fn saved() -> (tempfile::TempDir, std::path::PathBuf, Vec<u8>) {
    let g = Arch::SeedCnn.build([1, 28, 28], 10, 0).unwrap();
    let m = Model {
        graph: g,
        meta: ModelMeta {
            normalization: Normalization::mnist(),
            class_names: vec![],
            arch: None,
            train_config: None,
            history: None,
            command: None,
            qat: None,
        },
    };
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("ok.safetensors");
    save_model(&m, &p).unwrap();
    let bytes = std::fs::read(&p).unwrap();
    (dir, p, bytes)
}

fn err_of(bytes: &[u8], dir: &std::path::Path) -> String {
    let p = dir.join("bad.safetensors");
    std::fs::write(&p, bytes).unwrap();
    let e = load_model(&p).expect_err("must fail");
    let s = format!("{e}");
    assert!(
        s.contains("bad.safetensors"),
        "error must name the file: {s}"
    );
    s
}

#[test]
fn truncated_and_garbage_files_are_errors() {
    let (dir, _, bytes) = saved();
    for cut in [0, 7, 8, 100, bytes.len() / 2, bytes.len() - 1] {
        err_of(&bytes[..cut], dir.path());
    }
    err_of(b"this is not a model at all", dir.path());
    // A header length claiming far more than the file holds.
    let mut huge = bytes.clone();
    huge[..8].copy_from_slice(&(u64::MAX / 2).to_le_bytes());
    err_of(&huge, dir.path());
}

/// Replaces the first occurrence of `from` by `to` (same length) in `bytes`.
fn replace_once(bytes: &[u8], from: &[u8], to: &[u8]) -> Vec<u8> {
    assert_eq!(from.len(), to.len());
    let i = bytes
        .windows(from.len())
        .position(|w| w == from)
        .expect("pattern present");
    let mut out = bytes.to_vec();
    out[i..i + to.len()].copy_from_slice(to);
    out
}

#[test]
fn tampered_metadata_is_an_error() {
    let (dir, _, bytes) = saved();
    // Rename a tensor in the header: the graph then refers to a missing tensor.
    let e = err_of(
        &replace_once(&bytes, b"conv1.weight\":", b"conv9.weight\":"),
        dir.path(),
    );
    assert!(e.contains("conv1.weight"), "{e}");
    // Break the RON graph description.
    let e = err_of(&replace_once(&bytes, b"Conv2d", b"Conv9d"), dir.path());
    assert!(e.contains("graph description"), "{e}");
}

#[test]
fn missing_file_is_an_error_naming_it() {
    let e = load_model(std::path::Path::new("/nonexistent/model.safetensors")).unwrap_err();
    assert!(format!("{e}").contains("/nonexistent/model.safetensors"));
}
