//! End-to-end: seed-cnn learns real MNIST; runs are reproducible from their seed; a trained model
//! survives a save/load round trip with identical predictions.

use qatlas::data::{Normalization, Split, load_split};
use qatlas::io::{Model, ModelMeta, load_model, save_model};
use qatlas::train::{Control, OptimizerConfig, Schedule, TrainConfig, evaluate, train};
use qatlas::zoo::Arch;
use std::path::PathBuf;

fn mnist() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("assets/mnist")
}

fn cfg(epochs: usize, seed: u64) -> TrainConfig {
    TrainConfig {
        epochs,
        batch_size: 16,
        optimizer: OptimizerConfig::AdamW {
            lr: 3e-3,
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
            weight_decay: 1e-4,
        },
        schedule: Schedule::Cosine {
            warmup_steps: 10,
            min_factor: 0.0,
        },
        seed,
    }
}

#[test]
fn seed_cnn_learns_mnist_subset() {
    let train_ds = load_split(&mnist(), Split::Train).unwrap().limit(2000);
    let test_ds = load_split(&mnist(), Split::Test).unwrap().limit(1000);
    let norm = Normalization::mnist();
    let mut g = Arch::SeedCnn.build([1, 28, 28], 10, 0).unwrap();
    let before = evaluate(&g, &test_ds, &norm, 256).unwrap().accuracy;
    let s = train(
        &mut g,
        &train_ds,
        &norm,
        &cfg(1, 0),
        None,
        &Control::new(),
        &mut |_| {},
    )
    .unwrap();
    assert_eq!(s.steps, 2000 / 16);
    let after = evaluate(&g, &test_ds, &norm, 256).unwrap();
    assert!(
        before < 0.3,
        "an untrained net should be near chance, got {before}"
    );
    assert!(
        after.accuracy >= 0.90,
        "accuracy after one epoch on 2000 images: {}",
        after.accuracy
    );
    // The loss curve went down.
    let h = &s.history.loss;
    assert!(
        h.last().unwrap().1 < h.first().unwrap().1 * 0.5,
        "loss curve {h:?}"
    );
}

#[test]
fn same_seed_same_weights_other_seed_differs() {
    let ds = load_split(&mnist(), Split::Train).unwrap().limit(320);
    let norm = Normalization::mnist();
    let run = |seed| {
        let mut g = Arch::ResnetMini.build([1, 28, 28], 10, seed).unwrap();
        train(
            &mut g,
            &ds,
            &norm,
            &cfg(1, seed),
            None,
            &Control::new(),
            &mut |_| {},
        )
        .unwrap();
        g.params
            .iter()
            .flat_map(|p| p.tensor.iter().copied().collect::<Vec<_>>())
            .collect::<Vec<f32>>()
    };
    let a = run(7);
    let b = run(7);
    let c = run(8);
    assert_eq!(a, b, "same seed must reproduce bit for bit");
    assert_ne!(a, c);
}

#[test]
fn stop_flag_ends_training_early() {
    let ds = load_split(&mnist(), Split::Train).unwrap().limit(160);
    let mut g = Arch::SeedCnn.build([1, 28, 28], 10, 0).unwrap();
    let stop = Control::new();
    let mut steps = 0;
    let s = train(
        &mut g,
        &ds,
        &Normalization::mnist(),
        &cfg(3, 0),
        None,
        &stop,
        &mut |e| {
            if let qatlas::train::TrainEvent::Step { .. } = e {
                steps += 1;
                if steps == 3 {
                    stop.stop();
                }
            }
        },
    )
    .unwrap();
    assert!(s.stopped);
    assert_eq!(s.steps, 3);
}

#[test]
fn model_file_round_trip_keeps_predictions() {
    let ds = load_split(&mnist(), Split::Test).unwrap().limit(64);
    let norm = Normalization::mnist();
    let g = Arch::MobilenetMini.build([1, 28, 28], 10, 3).unwrap();
    let m = Model {
        graph: g,
        meta: ModelMeta {
            normalization: norm.clone(),
            class_names: vec![],
            arch: Some("mobilenet-mini".into()),
            train_config: Some(cfg(1, 0)),
            history: None,
            command: None,
            qat: None,
        },
    };
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("m.safetensors");
    save_model(&m, &p).unwrap();
    let back = load_model(&p).unwrap();
    assert_eq!(back.meta, m.meta);
    let x = ds.batch(&(0..64).collect::<Vec<_>>(), &norm);
    assert_eq!(m.graph.infer(&x).unwrap(), back.graph.infer(&x).unwrap());
}

#[test]
fn non_finite_input_stops_with_a_clear_error_and_keeps_last_good_weights() {
    let mut ds = load_split(&mnist(), Split::Train).unwrap().limit(64);
    let mut g = Arch::SeedCnn.build([1, 28, 28], 10, 0).unwrap();
    let before: Vec<f32> = g
        .params
        .iter()
        .flat_map(|p| p.tensor.iter().copied().collect::<Vec<_>>())
        .collect();
    // Poison the pixels: float storage with a NaN in every image, so the very first step fails.
    let mut px: Vec<f32> = match &ds.pixels {
        qatlas::data::Pixels::U8(v) => v.iter().map(|&b| b as f32 / 255.0).collect(),
        qatlas::data::Pixels::F32(v) => v.clone(),
        other => panic!("MNIST is held in memory, not {other:?}"),
    };
    for img in px.chunks_mut(784) {
        img[100] = f32::NAN;
    }
    ds.pixels = qatlas::data::Pixels::F32(px);
    let e = train(
        &mut g,
        &ds,
        &Normalization::mnist(),
        &cfg(1, 0),
        None,
        &Control::new(),
        &mut |_| {},
    )
    .unwrap_err();
    let msg = format!("{e}");
    assert!(msg.contains("non-finite") || msg.contains("NaN"), "{msg}");
    let after: Vec<f32> = g
        .params
        .iter()
        .flat_map(|p| p.tensor.iter().copied().collect::<Vec<_>>())
        .collect();
    assert_eq!(before, after, "a failed step must not touch the weights");
}
