//! ONNX's own backend conformance cases run through the importer and the float executor, the
//! way tract runs them: the node cases `onnx.backend.test.case.node` generates and the
//! `pytorch-converted` / `pytorch-operator` data of the `onnx` package, written by
//! `tools/onnx_backend_cases.py` with the `.venv` Python (`.ci/run` makes it). A qatlas model has
//! one data input, so a case's other graph inputs become initializers holding the case's values.
//!
//! Each case is `pass` (first output within ONNX's default tolerance, rtol 1e-3 and atol 1e-7),
//! `fail` (imported and ran, wrong numbers, or an error inside an op qatlas claims), or
//! `not supported` (an op or attribute qatlas does not import, a non-float data input or
//! output, an opset outside qatlas's range). The table per op type is printed (`--nocapture`);
//! the test fails on any `fail` outside the list of known failures below, and on a known
//! failure that passes now (so the list stays true). Without the `.venv` it fails under CI and
//! is skipped loudly elsewhere.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;

use prost::Message;
use qatlas::io::onnx::import_bytes;
use qatlas::io::onnx::proto::{ModelProto, TensorProto, tensor_proto::DataType};
use qatlas::ops::OpKind;
use qatlas::tensor::{self, Tensor};

/// Cases known to fail, with the reason (each must still fail: the test checks).
const KNOWN_FAILURES: &[(&str, &str)] = &[];

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Writes the cases with the `.venv` Python into `target/`, or `None` (after failing under CI).
fn cases_dir() -> Option<PathBuf> {
    if let Some(d) = std::env::var_os("QATLAS_ONNX_CASES") {
        return Some(PathBuf::from(d));
    }
    let python = std::env::var_os("QATLAS_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|| root().join(".venv/bin/python"));
    let out = root().join("target/onnx-backend-cases");
    let made = Command::new(&python)
        .arg(root().join("tools/onnx_backend_cases.py"))
        .arg(&out)
        .output();
    match made {
        Ok(o) if o.status.success() => {
            let _ = writeln!(
                std::io::stderr(),
                "{}",
                String::from_utf8_lossy(&o.stdout).trim()
            );
            Some(out)
        }
        other => {
            let why = match other {
                Ok(o) => String::from_utf8_lossy(&o.stderr).into_owned(),
                Err(e) => e.to_string(),
            };
            let msg = format!(
                "ONNX conformance NOT CHECKED: {} could not write the backend cases ({}). \
                 Create the .venv as .ci/run does, or set QATLAS_ONNX_CASES.",
                python.display(),
                why.trim()
            );
            if std::env::var_os("CI").is_some() {
                panic!("{msg}");
            }
            let bar = "!".repeat(100);
            let _ = writeln!(std::io::stderr(), "\n{bar}\n!!! {msg}\n{bar}\n");
            None
        }
    }
}

#[derive(Debug, PartialEq)]
enum Outcome {
    Pass,
    Fail(String),
    NotSupported(String),
}

fn read_tensor(path: &Path) -> Result<TensorProto, String> {
    let bytes = std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))?;
    TensorProto::decode(&bytes[..]).map_err(|e| format!("{}: {e}", path.display()))
}

/// A float32 tensor's values and shape, `None` for another element type.
fn f32_tensor(t: &TensorProto) -> Option<Tensor> {
    if t.data_type != DataType::Float as i32 {
        return None;
    }
    let dims: Vec<usize> = t.dims.iter().map(|&d| d as usize).collect();
    let values: Vec<f32> = if !t.raw_data.is_empty() {
        t.raw_data
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .collect()
    } else {
        t.float_data.clone()
    };
    (values.len() == dims.iter().product::<usize>()).then(|| tensor::from_vec(&dims, values))
}

fn close(got: &[f32], want: &[f32]) -> Result<(), String> {
    for (i, (&g, &w)) in got.iter().zip(want).enumerate() {
        let ok = (g - w).abs() <= 1e-7 + 1e-3 * w.abs() || (g.is_nan() && w.is_nan()) || g == w;
        if !ok {
            return Err(format!("element {i}: got {g}, expected {w}"));
        }
    }
    Ok(())
}

/// Runs one case directory.
fn run_case(dir: &Path) -> (Vec<String>, Outcome) {
    let bytes = match std::fs::read(dir.join("model.onnx")) {
        Ok(b) => b,
        Err(e) => return (vec![], Outcome::Fail(format!("unreadable model: {e}"))),
    };
    let Ok(mut model) = ModelProto::decode(&bytes[..]) else {
        return (vec![], Outcome::Fail("model.onnx does not parse".into()));
    };
    let Some(graph) = model.graph.as_mut() else {
        return (vec![], Outcome::Fail("no graph".into()));
    };
    let mut ops: Vec<String> = graph.node.iter().map(|n| n.op_type.clone()).collect();
    ops.sort();
    ops.dedup();
    let data = dir.join("test_data_set_0");
    // Graph inputs that initializers do not cover, in order: the first is the data input.
    let inits: Vec<String> = graph.initializer.iter().map(|t| t.name.clone()).collect();
    let real: Vec<String> = graph
        .input
        .iter()
        .map(|i| i.name.clone())
        .filter(|n| !inits.contains(n))
        .collect();
    if real.is_empty() {
        return (ops, Outcome::NotSupported("no data input".into()));
    }
    let mut x = None;
    for (j, name) in real.iter().enumerate() {
        let t = match read_tensor(&data.join(format!("input_{j}.pb"))) {
            Ok(t) => t,
            Err(e) => return (ops, Outcome::NotSupported(format!("input {j}: {e}"))),
        };
        if j == 0 {
            match f32_tensor(&t) {
                Some(v) if v.len() > 0 && v.ndim() > 0 => x = Some(v),
                _ => {
                    return (
                        ops,
                        Outcome::NotSupported("data input is not a float tensor".into()),
                    );
                }
            }
        } else {
            let mut t = t;
            t.name = name.clone();
            graph.initializer.push(t);
        }
    }
    let want = match read_tensor(&data.join("output_0.pb")).map(|t| f32_tensor(&t)) {
        Ok(Some(w)) => w,
        _ => {
            return (
                ops,
                Outcome::NotSupported("first output is not a float tensor".into()),
            );
        }
    };
    let bytes = model.encode_to_vec();
    let g = match import_bytes(&bytes) {
        Ok(g) => g,
        Err(e) => return (ops, Outcome::NotSupported(format!("import: {e}"))),
    };
    if let Some(n) = g
        .nodes
        .iter()
        .find(|n| matches!(n.op, OpKind::Unsupported { .. }))
    {
        return (
            ops,
            Outcome::NotSupported(format!("{} not imported", n.op.name())),
        );
    }
    let x = x.expect("set above");
    match g.infer(&x) {
        Err(e) => (ops, Outcome::Fail(format!("run: {e}"))),
        Ok(y) if y.shape() != want.shape() => (
            ops,
            Outcome::Fail(format!(
                "shape {:?}, expected {:?}",
                y.shape(),
                want.shape()
            )),
        ),
        Ok(y) => match close(tensor::slice(&tensor::standard(y)), tensor::slice(&want)) {
            Ok(()) => (ops, Outcome::Pass),
            Err(e) => (ops, Outcome::Fail(e)),
        },
    }
}

#[test]
fn onnx_backend_cases() {
    let Some(dir) = cases_dir() else { return };
    let mut table: BTreeMap<String, [usize; 3]> = BTreeMap::new();
    let mut first_reason: BTreeMap<String, String> = BTreeMap::new();
    let mut failures = Vec::new();
    let mut reasons: BTreeMap<String, usize> = BTreeMap::new();
    let mut total = [0usize; 3];
    for kind in ["node", "pytorch-converted", "pytorch-operator"] {
        let Ok(entries) = std::fs::read_dir(dir.join(kind)) else {
            panic!("{} has no {kind} cases", dir.display());
        };
        let mut cases: Vec<PathBuf> = entries.flatten().map(|e| e.path()).collect();
        cases.sort();
        for case in cases {
            let name = format!("{kind}/{}", case.file_name().unwrap().to_string_lossy());
            let (ops, outcome) = run_case(&case);
            let slot = match &outcome {
                Outcome::Pass => 0,
                Outcome::Fail(why) => {
                    failures.push((name.clone(), why.clone()));
                    1
                }
                Outcome::NotSupported(why) => {
                    if std::env::var_os("QATLAS_WHY").is_some() {
                        let _ = writeln!(std::io::stderr(), "n/s {name}: {why}");
                    }
                    let short: String = why.chars().take(60).collect();
                    *reasons.entry(short).or_default() += 1;
                    2
                }
            };
            total[slot] += 1;
            let key = if kind == "node" {
                ops.join("+")
            } else {
                format!("{kind}: {}", ops.join("+"))
            };
            if let Outcome::NotSupported(why) = &outcome {
                first_reason
                    .entry(key.clone())
                    .or_insert_with(|| why.clone());
            }
            table.entry(key).or_default()[slot] += 1;
        }
    }
    let mut out = String::new();
    out.push_str(&format!(
        "{:<60} {:>5} {:>5} {:>5}\n",
        "ops (cases)", "pass", "fail", "n/s"
    ));
    let imported = qatlas::io::onnx::supported_op_types();
    for (ops, [p, f, n]) in &table {
        let claimed = ops.split(['+', ' ']).any(|o| imported.contains(&o));
        if p + f > 0 || claimed {
            out.push_str(&format!("{ops:<60} {p:>5} {f:>5} {n:>5}\n"));
            if let Some(why) = first_reason
                .get(ops)
                .filter(|_| std::env::var_os("QATLAS_WHY").is_some())
            {
                out.push_str(&format!("    e.g. {why}\n"));
            }
        }
    }
    let others: usize = table
        .values()
        .filter(|c| c[0] + c[1] == 0)
        .map(|c| c[2])
        .sum();
    out.push_str(&format!(
        "... {others} cases of ops qatlas does not import (not supported)\n\
         ONNX backend cases: {} pass, {} fail, {} not supported\n",
        total[0], total[1], total[2]
    ));
    let mut reasons: Vec<_> = reasons.into_iter().collect();
    reasons.sort_by(|a, b| b.1.cmp(&a.1));
    for (why, n) in reasons.iter().take(25) {
        out.push_str(&format!("  not supported x{n}: {why}\n"));
    }
    for (name, why) in &failures {
        out.push_str(&format!("FAIL {name}: {why}\n"));
    }
    let _ = writeln!(std::io::stderr(), "{out}");
    let known: Vec<&str> = KNOWN_FAILURES.iter().map(|k| k.0).collect();
    let unexpected: Vec<_> = failures
        .iter()
        .filter(|f| !known.contains(&f.0.as_str()))
        .collect();
    assert!(
        unexpected.is_empty(),
        "{} unexpected failures: {unexpected:?}",
        unexpected.len()
    );
    let fixed: Vec<_> = known
        .iter()
        .filter(|k| !failures.iter().any(|f| f.0 == **k))
        .collect();
    assert!(
        fixed.is_empty(),
        "known failures that no longer fail: {fixed:?}"
    );
    assert!(total[0] > 0, "no case passed");
}
