//! `qatlas bench e2e --random-images`: the end-to-end benchmark of a model without a dataset
//! (random 8-bit images of the model's input size), reporting the three engines in its JSON.

use std::process::Command;

#[test]
fn random_images_time_all_three_engines() {
    let out = Command::new(env!("CARGO_BIN_EXE_qatlas"))
        .args(["--threads", "2", "bench", "e2e", "--random-images", "16"])
        .args(["--batch", "8", "--repeats", "1", "--secs", "0.01", "--json"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["batch"], 8, "{v}");
    assert_eq!(v["float_engine"], "runtime", "{v}");
    assert!(v["float_runtime_error"].is_null(), "{v}");
    for key in [
        "int_images_per_s",
        "float_images_per_s",
        "graph_images_per_s",
        "int_latency_us",
        "float_latency_us",
        "graph_latency_us",
    ] {
        let x = v[key].as_f64().unwrap_or(0.0);
        assert!(x.is_finite() && x > 0.0, "{key}: {v}");
    }
}

#[test]
fn random_images_and_a_dataset_are_exclusive() {
    let out = Command::new(env!("CARGO_BIN_EXE_qatlas"))
        .args([
            "bench",
            "e2e",
            "--random-images",
            "8",
            "--data",
            "assets/mnist",
        ])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("--random-images") && err.contains("--data"),
        "{err}"
    );
}
