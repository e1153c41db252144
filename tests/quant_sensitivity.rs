//! The sensitivity sweep on the pretrained seed-cnn and real MNIST: each "only this layer"
//! accuracy equals a separate PTQ run of that one-layer plan on the same calibration data;
//! rows arrive through the callback; a repeat is served from the cache; a stop flag cancels.

use qatlas::analysis::sensitivity::{
    SensitivityCache, SensitivityEvent, SweepConfig, SweepData, SweepMode, sensitivity,
};
use qatlas::data::{Loader, Split, load_split};
use qatlas::io::load_model;
use qatlas::quant::points::{all_but_layer, only_layer};
use qatlas::quant::{Precision, QuantError, QuantPlan, ptq};
use qatlas::train::evaluate;
use std::path::PathBuf;
use std::sync::Mutex;
use std::sync::atomic::AtomicBool;

fn assets() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("assets")
}

#[test]
fn sweep_matches_separate_runs_streams_rows_and_caches() {
    let model = load_model(&assets().join("seed_cnn_mnist.safetensors")).unwrap();
    let norm = model.meta.normalization.clone();
    let calib = load_split(&assets().join("mnist"), Split::Train)
        .unwrap()
        .limit(400);
    let eval = load_split(&assets().join("mnist"), Split::Test)
        .unwrap()
        .limit(600);
    let plan = QuantPlan::default_for(&model.graph, Precision::Int4);
    let cfg = SweepConfig {
        mode: SweepMode::Both,
        samples: 600,
        calib_samples: 400,
        batch: 200,
    };
    let d = SweepData {
        model: &model.graph,
        plan: &plan,
        calib: &calib,
        eval: &eval,
        norm: &norm,
    };
    let events = Mutex::new(Vec::new());
    let cache = SensitivityCache::default();
    let stop = AtomicBool::new(false);
    let sweep = sensitivity(&d, &cfg, Some(&cache), &stop, &|e| {
        events.lock().unwrap().push(e)
    })
    .unwrap();
    assert!(!sweep.cached);
    let r = sweep.report.clone();
    let events = events.into_inner().unwrap();
    // One baseline, then one row update per variant (2 modes x 3 layers).
    assert!(matches!(events[0], SensitivityEvent::Baseline { .. }));
    assert_eq!(events.len(), 1 + 6);
    assert_eq!(r.layers.len(), 3);
    assert_eq!(r.images, 600);
    let float = evaluate(&model.graph, &eval, &norm, 200).unwrap().accuracy;
    assert_eq!(r.float_accuracy, float);
    let separate = |p: &QuantPlan| {
        let batches = Loader::new(&calib, &norm, 200, None, false).map(|(x, _)| x);
        let out = ptq(
            &model.graph,
            p,
            batches,
            &AtomicBool::new(false),
            &mut |_| {},
        )
        .unwrap();
        evaluate(&out.prepared.graph, &eval, &norm, 200)
            .unwrap()
            .accuracy
    };
    assert_eq!(r.quantized.accuracy, separate(&plan));
    for row in &r.layers {
        let only = row.only.unwrap();
        assert_eq!(
            only.accuracy,
            separate(&only_layer(&plan, &row.layer)),
            "{}",
            row.layer
        );
        assert_eq!(
            row.all_but.unwrap().accuracy,
            separate(&all_but_layer(&plan, &row.layer))
        );
        let drop = row.only_drop_pp.unwrap();
        assert!((drop - (float - only.accuracy) * 100.0).abs() < 1e-9);
        // int4 weights alone: a clearly finite, moderate SQNR.
        let db = row.layer_sqnr_db.unwrap();
        assert!(db > 10.0 && db < 60.0, "{}: {db}", row.layer);
    }
    // A repeat with the same inputs comes from the cache (the one path that sets `cached`;
    // it computes nothing), identical; no wall-clock assertion.
    let again = sensitivity(&d, &cfg, Some(&cache), &stop, &|_| {}).unwrap();
    assert!(again.cached);
    assert_eq!(*again.report, *r);
    assert_eq!(cache.len(), 1);
    // A different plan is a different key; a raised stop flag cancels it.
    let mut other = plan.clone();
    other.layers[0].activations = Precision::Int4;
    let d2 = SweepData { plan: &other, ..d };
    let cancelled = sensitivity(&d2, &cfg, Some(&cache), &AtomicBool::new(true), &|_| {});
    assert!(matches!(cancelled, Err(QuantError::Cancelled)));
    assert_eq!(cache.len(), 1);
}
