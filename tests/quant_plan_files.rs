//! Plan files: bad ones give errors that name the file and the problem; a plan written by
//! `qatlas ptq` reads back; the command's JSON summary has the documented fields.

use qatlas::quant::{Precision, QuantPlan};
use qatlas::zoo::Arch;
use std::path::PathBuf;

fn write(dir: &tempfile::TempDir, name: &str, text: &str) -> PathBuf {
    let p = dir.path().join(name);
    std::fs::write(&p, text).unwrap();
    p
}

#[test]
fn bad_plan_files_are_reported_with_their_path() {
    let g = Arch::SeedCnn.build([1, 28, 28], 10, 0).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let cases = [
        (
            "unknown.ron",
            r#"(layers: [(layer: "conv7", precision: Int8)])"#,
            "conv7",
        ),
        (
            "precision.ron",
            r#"(layers: [(layer: "conv1", precision: Int9)])"#,
            "Int9",
        ),
        (
            "relu.ron",
            r#"(layers: [(layer: "relu1", precision: Int8)])"#,
            "not quantizable",
        ),
        (
            "nan.ron",
            r#"(layers: [], ranges: [(point: "input.fq", value: "input", dtype: U8,
                scheme: Affine, min: [NaN], max: [1.0], scale: [0.1], zero_point: [3])])"#,
            "min/max",
        ),
        (
            "percentile.ron",
            r#"(layers: [(layer: "fc", precision: Int8,
                activation_observer: Histogram(bins: 2048, method: Percentile(120.0)))])"#,
            "percentile",
        ),
        ("garbage.ron", "layers = [conv1]", "not a valid plan"),
    ];
    for (name, text, needle) in cases {
        let p = write(&dir, name, text);
        let e = QuantPlan::load(&p, Some(&g)).unwrap_err().to_string();
        assert!(e.contains(needle), "{name}: {e}");
        assert!(e.contains(&p.display().to_string()), "{name}: {e}");
    }
    let missing = dir.path().join("missing.ron");
    let e = QuantPlan::load(&missing, None).unwrap_err().to_string();
    assert!(
        e.contains("missing.ron") && e.contains("cannot read"),
        "{e}"
    );
}

#[test]
fn ptq_command_writes_a_plan_and_reports_json() {
    let exe = env!("CARGO_BIN_EXE_qatlas");
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("plan.ron");
    let o = std::process::Command::new(exe)
        .args([
            "ptq",
            "--calib-samples",
            "300",
            "--limit",
            "500",
            "--json",
            "--out",
        ])
        .arg(&out)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let (f, q) = (
        v["float_accuracy"].as_f64().unwrap(),
        v["quantized_accuracy"].as_f64().unwrap(),
    );
    assert!(f > 0.95 && f <= 1.0 && q > 0.95 && q <= 1.0, "{v}");
    let layers = v["layers"].as_array().unwrap();
    assert_eq!(layers.len(), 3);
    assert!(
        layers.iter().all(|l| l["sqnr_db"].as_f64().unwrap() > 20.0),
        "{v}"
    );
    let g = Arch::SeedCnn.build([1, 28, 28], 10, 0).unwrap();
    let plan = QuantPlan::load(&out, Some(&g)).unwrap();
    assert_eq!(plan.layers.len(), 3);
    assert!(plan.layers.iter().all(|l| l.precision == Precision::Int8));
    // input, relu1, relu2 and fc activations + three weights.
    assert_eq!(plan.ranges.len(), 7);
}
