//! PTQ on real MNIST with the pretrained seed-cnn: int8 (per-channel weights, u8 activations,
//! histogram/MSE observer, 1,000 calibration images) must stay within 0.1 percentage point of
//! the float model on the 10,000 test images; a plan with ranges rebuilds the same model.

use qatlas::data::{Loader, Split, load_split};
use qatlas::io::load_model;
use qatlas::quant::plan::{Precision, QuantPlan};
use qatlas::quant::ptq;
use qatlas::train::evaluate;
use std::path::PathBuf;
use std::sync::atomic::AtomicBool;

fn assets() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("assets")
}

#[test]
fn int8_ptq_keeps_seed_cnn_accuracy() {
    let model = load_model(&assets().join("seed_cnn_mnist.safetensors")).unwrap();
    let norm = model.meta.normalization.clone();
    let calib = load_split(&assets().join("mnist"), Split::Train)
        .unwrap()
        .limit(1000);
    let test = load_split(&assets().join("mnist"), Split::Test).unwrap();
    let plan = QuantPlan::default_for(&model.graph, Precision::Int8);
    let batches = Loader::new(&calib, &norm, 250, None, false).map(|(x, _)| x);
    let out = ptq(
        &model.graph,
        &plan,
        batches,
        &AtomicBool::new(false),
        &mut |_| {},
    )
    .unwrap();
    let float = evaluate(&model.graph, &test, &norm, 500).unwrap().accuracy;
    let quant = evaluate(&out.prepared.graph, &test, &norm, 500)
        .unwrap()
        .accuracy;
    eprintln!("float {float:.4} int8 {quant:.4}");
    assert!(float > 0.98, "{float}");
    assert!(quant >= float - 0.001, "int8 {quant} vs float {float}");
    // The plan with ranges rebuilds the same fake-quant model without data.
    let (_, again) = qatlas::quant::prepare_from_plan(&model.graph, &out.plan).unwrap();
    let x = Loader::new(&test, &norm, 64, None, false).next().unwrap().0;
    assert_eq!(
        again.graph.infer(&x).unwrap(),
        out.prepared.graph.infer(&x).unwrap()
    );
}

/// Histogram observers keep fixed bins: observing ten times more images takes no more memory.
#[test]
fn calibration_memory_does_not_grow_with_images() {
    let model = load_model(&assets().join("seed_cnn_mnist.safetensors")).unwrap();
    let norm = model.meta.normalization.clone();
    let calib = load_split(&assets().join("mnist"), Split::Train)
        .unwrap()
        .limit(2560);
    let plan = QuantPlan::default_for(&model.graph, Precision::Int8);
    let qp = qatlas::quant::plan_points(&model.graph, &plan).unwrap();
    let mut cal = qatlas::quant::Calibrator::new(&[&qp]);
    let mut sizes = Vec::new();
    for (x, _) in Loader::new(&calib, &norm, 256, None, false) {
        cal.observe(&model.graph, &x).unwrap();
        sizes.push(cal.memory_bytes());
    }
    assert_eq!(cal.images(), 2560);
    assert!(sizes.iter().all(|&s| s == sizes[0]), "{sizes:?}");
    // 4 activation points x 2048 bins x 8 bytes, plus small headers.
    assert!(sizes[0] < 100_000, "{}", sizes[0]);
}
