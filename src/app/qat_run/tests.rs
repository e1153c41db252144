//! Tests of the QAT run state (`super`): requests to specs, event handling, scale summaries.

use super::*;
use crate::quant::Precision;
use crate::train::Schedule;
use crate::zoo::Arch;
use std::path::Path;

fn request() -> QatRequest {
    QatRequest {
        precision: QatPrecision::W4A4,
        epochs: 2,
        lr: 1e-4,
        lsq: true,
        freeze_bn_after: Some(1),
        freeze_observers_after: None,
        limit: Some(500),
        ..QatRequest::default()
    }
}

#[test]
fn precisions_build_the_cli_plans() {
    let g = Arch::SeedCnn.build([1, 8, 8], 2, 0).unwrap();
    let p = QatPrecision::Int8.plan(&g);
    assert_eq!(p.layers.len(), 3);
    assert!(
        p.layers
            .iter()
            .all(|l| (l.precision, l.activations) == (Precision::Int8, Precision::Int8))
    );
    let p = QatPrecision::W4A8.plan(&g);
    assert!(
        p.layers
            .iter()
            .all(|l| (l.precision, l.activations) == (Precision::Int4, Precision::Int8))
    );
    let p = QatPrecision::W4A4.plan(&g);
    assert!(
        p.layers
            .iter()
            .all(|l| (l.precision, l.activations) == (Precision::Int4, Precision::Int4))
    );
}

#[test]
fn the_request_is_what_the_cli_would_run() {
    let r = request();
    let cfg = r.train_config();
    assert_eq!(
        (cfg.epochs, cfg.batch_size, cfg.optimizer.lr()),
        (2, 64, 1e-4)
    );
    assert!(matches!(cfg.schedule, Schedule::Cosine { .. }));
    assert_eq!(
        r.cli_equivalent(Some(Path::new("m.safetensors")), Path::new("assets/mnist")),
        "qatlas qat --model m.safetensors --data assets/mnist --precision int4 --activations int4 \
         --epochs 2 --lr 0.0001 --lsq --quantizer-lr-factor 1 --damping 0 --bn-reestimate 0 \
         --no-keep-ends --no-mse-weights --freeze-bn-after 1 --limit 500 (run in the studio)"
    );
    assert_eq!(
        default_file_name("seed cnn", QatPrecision::W4A8),
        "seed_cnn_qat_w4a8.safetensors"
    );
}

#[test]
fn scales_are_summarised_per_quantizer_with_their_change() {
    let mut run = QatRun::new(1, request(), "m".into(), Instant::now());
    let report = |s: Vec<f32>| PointScale {
        point: "conv1.weight.fq".into(),
        zero_point: vec![0.0; s.len()],
        scale: s,
    };
    let act = PointScale {
        point: "relu1.fq".into(),
        scale: vec![0.5],
        zero_point: vec![-128.0],
    };
    run.apply(
        JobEvent::Qat(QatEvent::Scales {
            step: 50,
            scales: vec![report(vec![1.0, 2.0, 6.0]), act.clone()],
        }),
        Instant::now(),
    );
    let r = &run.scales[0];
    assert_eq!((r.channels, r.min, r.mean, r.max), (3, 1.0, 3.0, 6.0));
    assert_eq!(r.change, None);
    assert_eq!(run.scales[1].zero_point, (-128.0, -128.0));
    run.apply(
        JobEvent::Qat(QatEvent::Scales {
            step: 100,
            scales: vec![report(vec![1.5, 2.0, 6.4]), act],
        }),
        Instant::now(),
    );
    // Mean 3.3 against the first 3.0: +10 %.
    let c = run.scales[0].change.unwrap();
    assert!((c - 0.1).abs() < 1e-6, "{c}");
    assert_eq!(run.scales[1].change, Some(0.0));
    assert_eq!(run.scales_step, 100);
}

#[test]
fn events_drive_the_phase_and_failures_keep_their_message() {
    let mut run = QatRun::new(1, request(), "m".into(), Instant::now());
    run.phase = QatPhase::Running;
    run.apply(
        JobEvent::Qat(QatEvent::Started {
            calib_images: 1000,
            quantizers: 6,
            float_accuracy: Some(0.99),
            start_accuracy: Some(0.98),
            resumed_at_epoch: None,
        }),
        Instant::now(),
    );
    assert_eq!(run.start.as_ref().unwrap().quantizers, 6);
    assert!(run.busy_label().unwrap().contains("0 %"));
    run.apply(
        JobEvent::Qat(QatEvent::Frozen {
            epoch: 1,
            batchnorms: 2,
            observers: 0,
        }),
        Instant::now(),
    );
    assert_eq!(run.notes.len(), 1);
    run.apply(JobEvent::Failed(nan_failure()), Instant::now());
    assert_eq!(run.phase, QatPhase::Failed(nan_failure().to_string()));
    assert!(!run.is_active() && run.saveable().is_none());
}

#[test]
fn fake_quant_models_are_recognised() {
    let g = Arch::SeedCnn.build([1, 8, 8], 2, 0).unwrap();
    let mut m = Model {
        graph: g,
        meta: crate::io::ModelMeta {
            normalization: crate::data::Normalization::mnist(),
            class_names: vec![],
            arch: None,
            train_config: None,
            history: None,
            command: None,
            qat: None,
        },
    };
    assert!(!is_fake_quant(&m));
    let calib = vec![crate::tensor::Tensor::ones(ndarray::IxDyn(&[2, 1, 8, 8]))];
    let stop = std::sync::atomic::AtomicBool::new(false);
    let plan = QatPrecision::Int8.plan(&m.graph);
    let q = crate::quant::ptq(&m.graph, &plan, calib, &stop, &mut |_| {}).unwrap();
    m.graph = q.prepared.graph;
    assert!(is_fake_quant(&m));
}

/// A QAT failure as the job reports it.
fn nan_failure() -> crate::jobs::JobError {
    crate::jobs::JobError::Qat(crate::jobs::QatError::Graph(
        crate::graph::GraphError::NonFinite {
            node: "conv1".into(),
        },
    ))
}
