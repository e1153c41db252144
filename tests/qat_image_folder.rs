//! Quantization-aware training on an image folder, as a user runs it: `qatlas qat` on ONNX
//! models with the newer ops (HardSwish, HardSigmoid, Sigmoid, Mul of tensors, Concat; and
//! LayerNorm, Erf/GELU, Transpose) over a folder of JPEG and PNG images of mixed sizes that
//! the resize and centre crop bring to the models' 28x28 input. The run must finish its epochs,
//! learn (the classes differ in brightness), and write a model that loads.

use std::path::Path;
use std::process::Command;

use image::{GrayImage, Luma};

/// 4 classes told apart by mean brightness, 3 image sizes, both formats.
fn folder(root: &Path) {
    let sizes = [(40, 30), (30, 44), (36, 36)];
    let mut state = 0x2545_f491_u32;
    for (split, n) in [("train", 64), ("val", 32)] {
        for i in 0..n {
            let class = i % 4;
            let (w, h) = sizes[i % 3];
            let img = GrayImage::from_fn(w, h, |_, _| {
                state ^= state << 13;
                state ^= state >> 17;
                state ^= state << 5;
                Luma([(class * 60) as u8 + (state % 40) as u8])
            });
            let dir = root.join(format!("{split}/k{class}"));
            std::fs::create_dir_all(&dir).unwrap();
            let ext = if i % 2 == 0 { "jpg" } else { "png" };
            img.save(dir.join(format!("{i}.{ext}"))).unwrap();
        }
    }
}

fn qat(model: &str, data: &Path, out: &Path) -> serde_json::Value {
    let fixture = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/onnx")
        .join(model);
    let o = Command::new(env!("CARGO_BIN_EXE_qatlas"))
        .args(["qat", "--model"])
        .arg(&fixture)
        .arg("--data")
        .arg(data)
        .args([
            "--resize", "28", "--crop", "28", "--epochs", "3", "--batch", "8",
        ])
        .args(["--lr", "0.01", "--threads", "2", "--json", "--out"])
        .arg(out)
        .output()
        .unwrap();
    assert!(
        o.status.success(),
        "qatlas qat {model} failed: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    let stdout = String::from_utf8_lossy(&o.stdout);
    let last = stdout.lines().last().expect("a JSON summary");
    serde_json::from_str(last).unwrap()
}

#[test]
fn qat_runs_on_an_image_folder_with_the_new_ops() {
    let dir = tempfile::tempdir().unwrap();
    folder(dir.path());
    for model in ["gates_concat.onnx", "convnext_block.onnx"] {
        let out = dir.path().join(format!("{model}.qat.safetensors"));
        let r = qat(model, dir.path(), &out);
        println!("{model}: {r}");
        assert_eq!(r["epochs_run"], 3, "{model}: {r}");
        let start = r["start_accuracy"].as_f64().unwrap();
        let end = r["quantized_accuracy"].as_f64().unwrap();
        assert!(end > start, "{model}: QAT did not learn ({start} -> {end})");
        let m = qatlas::io::load_any(&out).unwrap();
        let fq = m
            .graph
            .nodes
            .iter()
            .filter(|n| n.op.name() == "FakeQuant")
            .count();
        assert!(fq > 0, "{model}: the written model has no fake quantizers");
    }
}
