//! qatlas against ONNX Runtime: every fixture in `tests/fixtures/onnx` run through qatlas and
//! through ONNX Runtime on the same inputs agrees within 1e-4 relative L2 error, and so does the
//! float ONNX that qatlas exports from it (which `onnx.checker` must accept with
//! `full_check=True`). Built-in architectures exported from qatlas are checked the same way.
//!
//! ONNX Runtime runs in Python (`tools/ort_run.py`) with the interpreter in `$QATLAS_PYTHON` or
//! `.venv/bin/python` (`.ci/run` creates it); tensors go through `.npy` files in a temporary
//! directory. Without that Python the tests fail under CI (`CI` set) and are skipped loudly
//! elsewhere.

use qatlas::data::{Normalization, Split, load_split};
use qatlas::graph::Graph;
use qatlas::io::{load_onnx, save_onnx};
use qatlas::tensor::{Tensor, from_vec};
use qatlas::zoo::Arch;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;

const TOL: f64 = 1e-4;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn fixtures() -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(root().join("tests/fixtures/onnx"))
        .expect("fixture directory")
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "onnx"))
        .collect();
    v.sort();
    assert!(
        v.len() >= 5,
        "expected the committed ONNX fixtures, found {v:?}"
    );
    v
}

/// The Python that has onnx + onnxruntime + numpy, or `None` (after failing under CI).
fn python() -> Option<PathBuf> {
    let candidate = std::env::var_os("QATLAS_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|| root().join(".venv/bin/python"));
    let ok = Command::new(&candidate)
        .args(["-c", "import numpy, onnx, onnxruntime"])
        .output()
        .is_ok_and(|o| o.status.success());
    if ok {
        return Some(candidate);
    }
    let msg = format!(
        "ONNX Runtime parity NOT CHECKED: {} cannot import numpy, onnx and onnxruntime. Create it \
         with `python3 -m venv .venv && .venv/bin/pip install onnx onnxruntime numpy` (what \
         .ci/run does) or point QATLAS_PYTHON at such an interpreter.",
        candidate.display()
    );
    if std::env::var_os("CI").is_some() {
        panic!("{msg}");
    }
    // Straight to stderr: libtest would swallow eprintln! output of a passing test.
    let bar = "!".repeat(100);
    let _ = writeln!(std::io::stderr(), "\n{bar}\n!!! {msg}\n{bar}\n");
    None
}

fn write_npy(path: &Path, t: &Tensor) {
    let shape: Vec<u64> = t.shape().iter().map(|&d| d as u64).collect();
    let mut buf = Vec::new();
    {
        use npyz::WriterBuilder;
        let mut w = npyz::WriteOptions::<f32>::new()
            .default_dtype()
            .shape(&shape)
            .writer(&mut buf)
            .begin_nd()
            .unwrap();
        w.extend(t.iter().copied()).unwrap();
        w.finish().unwrap();
    }
    std::fs::write(path, buf).unwrap();
}

fn read_npy(path: &Path) -> Tensor {
    let bytes = std::fs::read(path).unwrap();
    let f = npyz::NpyFile::new(&bytes[..]).unwrap();
    let shape: Vec<usize> = f.shape().iter().map(|&d| d as usize).collect();
    from_vec(&shape, f.into_vec::<f32>().unwrap())
}

/// Runs `model` under ONNX Runtime on `x`.
fn ort(py: &Path, model: &Path, x: &Tensor, dir: &Path) -> Tensor {
    let (inp, out) = (dir.join("in.npy"), dir.join("out.npy"));
    write_npy(&inp, x);
    let o = Command::new(py)
        .arg(root().join("tools/ort_run.py"))
        .arg("run")
        .args([model, &inp, &out])
        .output()
        .unwrap();
    assert!(
        o.status.success(),
        "ONNX Runtime failed on {}: {}",
        model.display(),
        String::from_utf8_lossy(&o.stderr)
    );
    read_npy(&out)
}

fn check_model(py: &Path, model: &Path) {
    let o = Command::new(py)
        .arg(root().join("tools/ort_run.py"))
        .arg("check")
        .arg(model)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
}

fn rel_l2(a: &Tensor, b: &Tensor) -> f64 {
    assert_eq!(a.shape(), b.shape());
    let (mut num, mut den) = (0.0f64, 0.0f64);
    for (x, y) in a.iter().zip(b.iter()) {
        num += (*x as f64 - *y as f64).powi(2);
        den += (*y as f64).powi(2);
    }
    assert!(
        den > 0.0,
        "the reference output is all zeros: nothing is compared"
    );
    (num / den).sqrt()
}

/// Eight normalised MNIST test images and four random inputs of the same shape.
fn inputs(shape: &[usize]) -> Tensor {
    let ds = load_split(&root().join("assets/mnist"), Split::Test).unwrap();
    let mut rng = ChaCha8Rng::seed_from_u64(3);
    let n = 12;
    let per: usize = shape.iter().product();
    let mut v = Vec::with_capacity(n * per);
    if shape == [1, 28, 28] {
        let idx: Vec<usize> = (0..8).collect();
        v.extend(ds.batch(&idx, &Normalization::mnist()).iter().copied());
    }
    while v.len() < n * per {
        v.push(rng.random_range(-2.0f32..2.0));
    }
    let mut s = vec![n];
    s.extend(shape);
    from_vec(&s, v)
}

fn qatlas(g: &Graph, x: &Tensor) -> Tensor {
    g.infer(x).unwrap()
}

#[test]
fn fixtures_agree_with_onnx_runtime() {
    let Some(py) = python() else { return };
    let dir = tempfile::tempdir().unwrap();
    for f in fixtures() {
        let m = load_onnx(&f).unwrap();
        let x = inputs(&m.graph.input_shape);
        let ours = qatlas(&m.graph, &x);
        let theirs = ort(&py, &f, &x, dir.path());
        let e = rel_l2(&ours, &theirs);
        println!(
            "parity {:<28} qatlas vs ONNX Runtime: relative L2 error {e:.2e}",
            f.file_name().unwrap().to_string_lossy()
        );
        assert!(e < TOL, "{}: relative L2 error {e:.3e}", f.display());
    }
}

#[test]
fn exported_fixtures_pass_the_checker_and_agree() {
    let Some(py) = python() else { return };
    let dir = tempfile::tempdir().unwrap();
    for f in fixtures() {
        let m = load_onnx(&f).unwrap();
        let x = inputs(&m.graph.input_shape);
        let out = dir.path().join("exported.onnx");
        save_onnx(&m.graph, &out, 17).unwrap();
        check_model(&py, &out);
        let original = ort(&py, &f, &x, dir.path());
        let exported = ort(&py, &out, &x, dir.path());
        let e = rel_l2(&exported, &original);
        // Re-imported, the export computes what the original import computes.
        let back = load_onnx(&out).unwrap();
        let e_back = rel_l2(&qatlas(&back.graph, &x), &qatlas(&m.graph, &x));
        println!(
            "parity {:<28} exported (opset 17) vs original under ONNX Runtime: {e:.2e}; \
             re-imported vs imported in qatlas: {e_back:.2e}",
            f.file_name().unwrap().to_string_lossy()
        );
        assert!(
            e < TOL,
            "{}: exported model differs by {e:.3e}",
            f.display()
        );
        assert!(
            e_back < 1e-6,
            "{}: re-import differs by {e_back:.3e}",
            f.display()
        );
    }
}

#[test]
fn built_in_architectures_export_and_agree() {
    let Some(py) = python() else { return };
    let dir = tempfile::tempdir().unwrap();
    for arch in Arch::ALL {
        let mut g = arch.build([1, 28, 28], 10, 7).unwrap();
        // Non-trivial BatchNorm statistics, so that their export is really checked.
        for p in g.params.iter_mut().filter(|p| !p.trainable) {
            let mut rng = ChaCha8Rng::seed_from_u64(p.tensor.len() as u64);
            p.tensor.mapv_inplace(|v| v + rng.random_range(0.1f32..0.5));
        }
        let x = inputs(&g.input_shape);
        for opset in [13, 17, 21] {
            let out = dir.path().join(format!("{}_{opset}.onnx", arch.name()));
            save_onnx(&g, &out, opset).unwrap();
            check_model(&py, &out);
            let e = rel_l2(&qatlas(&g, &x), &ort(&py, &out, &x, dir.path()));
            println!(
                "parity {:<28} qatlas vs its export (opset {opset}) under ONNX Runtime: {e:.2e}",
                arch.name()
            );
            assert!(e < TOL, "{} opset {opset}: {e:.3e}", arch.name());
        }
    }
}
