//! qatlas against ONNX Runtime: every fixture in `tests/fixtures/onnx` run through qatlas and
//! through ONNX Runtime on the same inputs agrees within 1e-4 relative L2 error, and so does the
//! float ONNX that qatlas exports from it (which `onnx.checker` must accept with
//! `full_check=True`). Built-in architectures exported from qatlas are checked the same way, and
//! quantized models (int8, W4A8, W4A4) export as QDQ ONNX whose reference execution matches.
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
    ort_mode(py, model, x, dir, "run")
}

/// `mode` is `run` (ORT as deployed) or `run-reference` (graph optimizations off).
fn ort_mode(py: &Path, model: &Path, x: &Tensor, dir: &Path, mode: &str) -> Tensor {
    let (inp, out) = (dir.join("in.npy"), dir.join("out.npy"));
    write_npy(&inp, x);
    let o = Command::new(py)
        .arg(root().join("tools/ort_run.py"))
        .arg(mode)
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

/// Argmax agreement of two logit batches.
fn argmax_agreement(a: &Tensor, b: &Tensor) -> f64 {
    let am = |t: &Tensor, i: usize| {
        let row: Vec<f32> = t.index_axis(ndarray::Axis(0), i).iter().copied().collect();
        (0..row.len())
            .max_by(|&x, &y| row[x].total_cmp(&row[y]))
            .unwrap()
    };
    let n = a.shape()[0];
    (0..n).filter(|&i| am(a, i) == am(b, i)).count() as f64 / n as f64
}

#[test]
fn quantized_models_export_as_qdq_and_agree_with_onnx_runtime() {
    use qatlas::data::Loader;
    use qatlas::quant::plan::{Precision, QuantPlan};
    use std::sync::atomic::AtomicBool;
    let Some(py) = python() else { return };
    let dir = tempfile::tempdir().unwrap();
    let model = qatlas::io::load_model(&root().join("assets/seed_cnn_mnist.safetensors")).unwrap();
    let norm = model.meta.normalization.clone();
    let mnist = root().join("assets/mnist");
    let calib = load_split(&mnist, Split::Train).unwrap().limit(500);
    let test = load_split(&mnist, Split::Test).unwrap().limit(500);
    let x = Loader::new(&test, &norm, 500, None, false)
        .next()
        .unwrap()
        .0;
    for (name, w, act) in [
        ("int8", Precision::Int8, Precision::Int8),
        ("w4a8", Precision::Int4, Precision::Int8),
        ("w4a4", Precision::Int4, Precision::Int4),
    ] {
        let mut plan = QuantPlan::default_for(&model.graph, w);
        plan.layers.iter_mut().for_each(|l| l.activations = act);
        let batches = Loader::new(&calib, &norm, 250, None, false).map(|(x, _)| x);
        let q = qatlas::quant::ptq(
            &model.graph,
            &plan,
            batches,
            &AtomicBool::new(false),
            &mut |_| {},
        )
        .unwrap();
        let g = &q.prepared.graph;
        let out = dir.path().join(format!("seed_cnn_{name}.onnx"));
        if w == Precision::Int4 {
            // 4-bit QuantizeLinear exists from opset 21 on; earlier opsets are refused by name.
            let e = save_onnx(g, &out, 17).unwrap_err().to_string();
            assert!(e.contains("opset 21"), "{e}");
        }
        save_onnx(g, &out, 21).unwrap();
        check_model(&py, &out);
        let ours = qatlas(g, &x);
        let reference = ort_mode(&py, &out, &x, dir.path(), "run-reference");
        let (e, agree) = (
            rel_l2(&ours, &reference),
            argmax_agreement(&ours, &reference),
        );
        println!(
            "parity seed-cnn {name} QDQ (opset 21), 500 MNIST images vs reference ORT: rel L2 \
             {e:.2e}, argmax agreement {:.1}%",
            agree * 100.0
        );
        // ORT as deployed fuses QDQ into its integer kernels; it rejects its own rewrite of 4-bit
        // activations ("tensor(uint4) ... of operator (MaxPool) is invalid"), so 8-bit only. On
        // AVX2 its int8 kernels saturate (vpmaddubsw), so only a loose agreement is expected.
        if act == Precision::Int8 {
            let fused = ort(&py, &out, &x, dir.path());
            let (ef, af) = (rel_l2(&ours, &fused), argmax_agreement(&ours, &fused));
            println!(
                "  vs optimized ORT: rel L2 {ef:.2e}, argmax agreement {:.1}%",
                af * 100.0
            );
            assert!(af >= 0.97, "{name}: optimized ORT agreement {af}");
        }
        // One rounding step of a 4-bit activation is 1/15 of its range, so an occasional tie
        // rounded the other way (x/s vs x·(1/s), float sums in another order) moves the logits
        // more than at 8 bits; a wrong scale, zero point or axis moves them by ~100%.
        let tol = if act == Precision::Int4 { 0.1 } else { 2e-2 };
        assert!(
            e < tol && agree >= 0.99,
            "{name}: rel L2 {e:.3e}, agreement {agree}"
        );
    }
}

/// Accuracy of `logits` ([n, 10]) against `labels`.
fn accuracy(logits: &Tensor, labels: &[u32]) -> f64 {
    let s = qatlas::tensor::slice(logits);
    let k = s.len() / labels.len();
    let correct = labels
        .iter()
        .enumerate()
        .filter(|&(i, &l)| {
            let r = &s[i * k..(i + 1) * k];
            let best = (0..k).fold(0, |b, j| if r[j] > r[b] { j } else { b });
            best == l as usize
        })
        .count();
    correct as f64 / labels.len() as f64
}

/// The QDQ files qatlas exports (int8, W4A8) give, in ONNX Runtime with graph optimisations
/// disabled (ORT_DISABLE_ALL: the QDQ pairs run as written), the integer runtime's accuracy on
/// all 10,000 MNIST test images within 0.1 pp; the fused ORT (default level, ORT_ENABLE_ALL)
/// is reported beside it.
#[test]
fn exported_qdq_files_give_the_integer_runtimes_accuracy_in_onnx_runtime() {
    use qatlas::data::Loader;
    use qatlas::jobs::export::{ExportSpec, export};
    use qatlas::jobs::{ExportFormat, IntegerCheck};
    use qatlas::quant::plan::{Precision, QuantPlan};
    use std::sync::Arc;
    use std::sync::atomic::AtomicBool;
    let Some(py) = python() else { return };
    let dir = tempfile::tempdir().unwrap();
    let model = qatlas::io::load_model(&root().join("assets/seed_cnn_mnist.safetensors")).unwrap();
    let norm = model.meta.normalization.clone();
    let mnist = root().join("assets/mnist");
    let calib = load_split(&mnist, Split::Train).unwrap().limit(1000);
    let test = Arc::new(load_split(&mnist, Split::Test).unwrap());
    let (x, labels) = Loader::new(&test, &norm, test.len(), None, false)
        .next()
        .unwrap();
    for (name, w) in [("int8", Precision::Int8), ("w4a8", Precision::Int4)] {
        let plan = QuantPlan::default_for(&model.graph, w);
        let batches = Loader::new(&calib, &norm, 250, None, false).map(|(x, _)| x);
        let q = qatlas::quant::ptq(
            &model.graph,
            &plan,
            batches,
            &AtomicBool::new(false),
            &mut |_| {},
        )
        .unwrap();
        let g = &q.prepared.graph;
        let check = Some(IntegerCheck {
            data: test.clone(),
            norm: norm.clone(),
            samples: test.len(),
        });
        let onnx = dir.path().join(format!("{name}.onnx"));
        let bundle = dir.path().join(format!("{name}.safetensors"));
        let spec = |format, path: &Path| ExportSpec {
            format,
            path: path.to_path_buf(),
            opset: 21,
            check: check.clone(),
        };
        let r_onnx = export(
            &model.graph,
            Some(g),
            &norm,
            &spec(ExportFormat::OnnxQdq, &onnx),
        )
        .unwrap();
        let r_int = export(
            &model.graph,
            Some(g),
            &norm,
            &spec(ExportFormat::Bundle, &bundle),
        )
        .unwrap();
        let int_acc = r_int.accuracy.unwrap().0;
        let reference = accuracy(
            &ort_mode(&py, &onnx, &x, dir.path(), "run-reference"),
            &labels,
        );
        let fused = accuracy(&ort(&py, &onnx, &x, dir.path()), &labels);
        println!(
            "seed-cnn {name} on 10000 MNIST test images: integer runtime {:.2}%, QDQ file read \
             back by qatlas {:.2}%, ORT ORT_DISABLE_ALL {:.2}%, ORT default (fused) {:.2}%; \
             file {} bytes, bundle {} bytes",
            int_acc * 100.0,
            r_onnx.accuracy.unwrap().0 * 100.0,
            reference * 100.0,
            fused * 100.0,
            r_onnx.bytes,
            r_int.bytes
        );
        assert!(
            (reference - int_acc).abs() <= 0.001,
            "{name}: ORT {reference} vs integer {int_acc}"
        );
        assert!(int_acc > 0.98, "{name}: {int_acc}");
    }
}

/// torchvision's classifiers, exported by `tools/fixtures/export_torchvision_zoo.py DIR` (too
/// large to commit). The documented command:
/// `QATLAS_ZOO=DIR cargo test --release --test onnx_parity -- --ignored --nocapture`.
/// It prints a row per file (nodes, load, ops qatlas keeps as unsupported, qatlas vs ORT on two
/// random 224x224 images) and fails if a model that loads without unsupported ops disagrees.
#[test]
#[ignore = "needs the exported torchvision zoo in $QATLAS_ZOO"]
fn torchvision_zoo_agrees_with_onnx_runtime() {
    let dir = PathBuf::from(std::env::var_os("QATLAS_ZOO").expect("set QATLAS_ZOO"));
    let Some(py) = python() else { return };
    let tmp = tempfile::tempdir().unwrap();
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "onnx"))
        .collect();
    files.sort();
    let mut bad = Vec::new();
    println!(
        "zoo {:<28} {:>6}  {:<6} {:<12} unsupported",
        "model", "nodes", "loads", "rel L2"
    );
    for f in files {
        let name = f.file_name().unwrap().to_string_lossy().to_string();
        let m = match load_onnx(&f) {
            Ok(m) => m,
            Err(e) => {
                println!("zoo {name:<28} {:>6}  {:<6} {:<12} {e}", "-", "no", "-");
                continue;
            }
        };
        let mut unsupported: Vec<String> = m
            .graph
            .nodes
            .iter()
            .filter_map(|n| match &n.op {
                qatlas::ops::OpKind::Unsupported { op_type } => Some(op_type.clone()),
                _ => None,
            })
            .collect();
        unsupported.sort();
        unsupported.dedup();
        let nodes = m.graph.nodes.len();
        let err = if unsupported.is_empty() {
            let mut rng = ChaCha8Rng::seed_from_u64(7);
            let mut s = vec![2];
            s.extend(&m.graph.input_shape);
            let n: usize = s.iter().product();
            let x = from_vec(&s, (0..n).map(|_| rng.random_range(-2.0f32..2.0)).collect());
            match m.graph.infer(&x) {
                Ok(ours) => {
                    let e = rel_l2(&ours, &ort(&py, &f, &x, tmp.path()));
                    if e >= TOL {
                        bad.push(format!("{name}: {e:.3e}"));
                    }
                    format!("{e:.2e}")
                }
                Err(e) => {
                    bad.push(format!("{name}: {e}"));
                    format!("error: {e}")
                }
            }
        } else {
            "-".into()
        };
        println!(
            "zoo {name:<28} {nodes:>6}  {:<6} {err:<12} {}",
            "yes",
            unsupported.join(" ")
        );
    }
    assert!(bad.is_empty(), "models that load and disagree: {bad:?}");
}
