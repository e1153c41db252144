//! `qatlas run` on project files written through the library (no window): the replay gives
//! the numbers the library computes itself for the same plan and data (calibrated on the first
//! training images, measured on the first test images), runs QAT when the project asks for it,
//! writes and measures its export, and refuses a project whose model changed. Real MNIST and
//! the built-in pretrained seed-cnn.

use qatlas::analysis::compare::compare;
use qatlas::cli::common::{default_data_dir, default_model};
use qatlas::data::{Loader, Split, load_split};
use qatlas::io::load_any;
use qatlas::jobs::ExportFormat;
use qatlas::jobs::qat_request::{QatPrecision, QatRequest};
use qatlas::project::file::{
    Calibration, DataRef, ExportFrom, ExportSettings, ModelRef, file_sha256,
};
use qatlas::project::{Project, ReplayOptions, replay};
use qatlas::quant::plan::{Precision, QuantPlan};
use qatlas::quant::ptq;
use std::path::Path;
use std::sync::atomic::AtomicBool;

/// A project on the pretrained model: conv2 at int4, 500 calibration and 800 test images.
fn project(dir: &Path) -> (Project, QuantPlan) {
    let model = default_model();
    let m = load_any(&model).unwrap();
    let mut plan = QuantPlan::default_for(&m.graph, Precision::Int8);
    plan.layer_mut("conv2").unwrap().precision = Precision::Int4;
    let (sha256, bytes) = file_sha256(&model).unwrap();
    let p = Project {
        model: ModelRef {
            path: model,
            sha256,
            bytes,
        },
        data: DataRef {
            dir: default_data_dir(),
            normalization: None,
            transform: Default::default(),
        },
        plan: Some(plan.clone()),
        calibration: Calibration {
            calib_samples: 500,
            eval_samples: 800,
        },
        export: Some(ExportSettings {
            format: ExportFormat::Bundle,
            path: dir.join("seed.int.safetensors"),
            opset: 17,
            from: ExportFrom::Plan,
        }),
        ..Project::default()
    };
    (p, plan)
}

#[test]
fn a_replay_measures_what_the_library_measures_and_writes_the_export() {
    let tmp = tempfile::tempdir().unwrap();
    let (p, plan) = project(tmp.path());
    let file = tmp.path().join("seed.qatlas.ron");
    p.save(&file).unwrap();
    let p = Project::load(&file).unwrap();
    let opts = ReplayOptions {
        skip_latency: true,
        ..Default::default()
    };
    let mut stages = Vec::new();
    let r = replay(&p, &file, &opts, &mut |s| stages.push(s.to_string())).unwrap();
    assert!(
        stages.iter().any(|s| s.contains("calibrating")),
        "{stages:?}"
    );
    assert_eq!(r.model_changed, None);

    // The library's own figures for the same plan and images.
    let m = load_any(&default_model()).unwrap();
    let norm = m.meta.normalization.clone();
    let calib = load_split(&default_data_dir(), Split::Train)
        .unwrap()
        .limit(500);
    let test = load_split(&default_data_dir(), Split::Test)
        .unwrap()
        .limit(800);
    let stop = AtomicBool::new(false);
    let batches = Loader::new(&calib, &norm, 256, None, false).map(|(x, _)| x);
    let res = ptq(&m.graph, &plan, batches, &stop, &mut |_| {}).unwrap();
    let c = compare(
        &res.folded,
        &res.points,
        &res.prepared,
        &test,
        &norm,
        250,
        &stop,
    )
    .unwrap();
    let now = &r.now;
    assert_eq!(now.float_accuracy.unwrap().accuracy, c.float_accuracy);
    assert_eq!(now.plan_accuracy.unwrap().accuracy, c.quantized_accuracy);
    assert_eq!(now.plan_accuracy.unwrap().images, 800);
    let int = now.integer_accuracy.unwrap();
    assert_eq!(int.images, 800);
    assert!(
        (int.accuracy - c.quantized_accuracy).abs() <= 0.002,
        "integer {} vs simulated {}",
        int.accuracy,
        c.quantized_accuracy
    );
    // conv2 (18,432 weights) at 4 bits: the model is well under a third of its f32 size.
    let (w, f) = (now.weight_bytes.unwrap(), now.float_weight_bytes.unwrap());
    assert!(w * 3 < f, "{w} of {f} bytes");
    assert!(now.latency.is_none());
    // The export was written where the project says, and measured by reading it back.
    let e = &now.exports[0];
    assert_eq!(e.path, tmp.path().join("seed.int.safetensors"));
    assert_eq!(e.bytes, std::fs::metadata(&e.path).unwrap().len());
    assert_eq!(e.accuracy.unwrap().accuracy, int.accuracy);
    assert!(r.saved.exports.is_empty());
}

#[test]
fn a_project_with_qat_trains_and_a_changed_model_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let (mut p, _) = project(tmp.path());
    p.export = None;
    p.qat = Some(QatRequest {
        precision: QatPrecision::Int8,
        epochs: 1,
        lr: 1e-4,
        lsq: false,
        freeze_bn_after: None,
        freeze_observers_after: None,
        limit: Some(640),
        ..QatRequest::default()
    });
    let file = tmp.path().join("qat.qatlas.ron");
    p.save(&file).unwrap();
    let opts = ReplayOptions {
        skip_latency: true,
        ..Default::default()
    };
    let r = replay(&Project::load(&file).unwrap(), &file, &opts, &mut |_| {}).unwrap();
    let q = r.now.qat.expect("QAT ran");
    assert_eq!(q.epochs, 1);
    let (fa, qa) = (q.float_accuracy.unwrap(), q.quantized_accuracy.unwrap());
    assert!(qa > 0.97 && (fa - qa).abs() < 0.01, "float {fa}, QAT {qa}");

    // The same project on a model file with other bytes: refused unless accepted.
    let mut changed = p.clone();
    changed.model.sha256 = "0".repeat(64);
    changed.qat = None;
    let e = replay(&changed, &file, &opts, &mut |_| {}).unwrap_err();
    let msg = format!("{e:#}");
    assert!(msg.contains("changed since the project was saved"), "{msg}");
    let accepted = ReplayOptions {
        accept_changed_model: true,
        ..opts
    };
    let r = replay(&changed, &file, &accepted, &mut |_| {}).unwrap();
    assert!(r.model_changed.is_some());
}

#[test]
fn the_cli_replays_a_project_and_reports_json() {
    let tmp = tempfile::tempdir().unwrap();
    let (p, _) = project(tmp.path());
    let file = tmp.path().join("cli.qatlas.ron");
    p.save(&file).unwrap();
    let out_dir = tmp.path().join("elsewhere");
    std::fs::create_dir_all(&out_dir).unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_qatlas"))
        .args([
            "run",
            "--json",
            "--skip-latency",
            "--update",
            "--export-dir",
        ])
        .arg(&out_dir)
        .arg(&file)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let acc = v["now"]["plan_accuracy"]["accuracy"].as_f64().unwrap();
    assert!(acc > 0.97, "{v}");
    let written = out_dir.join("seed.int.safetensors");
    assert!(written.is_file());
    assert_eq!(
        v["now"]["exports"][0]["bytes"].as_u64().unwrap(),
        std::fs::metadata(&written).unwrap().len()
    );
    // --update stored the figures in the project.
    let back = Project::load(&file).unwrap();
    assert_eq!(back.results.plan_accuracy.unwrap().accuracy, acc);
    // A bad project file is one clear error naming it, exit status 1.
    std::fs::write(&file, "(version: 99, model: (path: \"m\"))").unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_qatlas"))
        .arg("run")
        .arg(&file)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("cli.qatlas.ron") && err.contains("newer qatlas"),
        "{err}"
    );
}
