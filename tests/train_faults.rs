//! Faults during long jobs on real MNIST: a NaN in the middle of float training (through the
//! window's training job), in the middle of QAT, and an overflowing update all end the run with
//! the model on its last good weights, bit for bit those of a clean run stopped at that step;
//! `qatlas train` writes those weights and fails naming the file; a Stop at any step leaves
//! exactly the weights of that step, in a model that saves, loads and trains on.

use proptest::prelude::*;
use qatlas::data::{Dataset, Loader, Normalization, Pixels, Split, load_split};
use qatlas::graph::Graph;
use qatlas::io::{Model, ModelMeta, load_model, save_model};
use qatlas::jobs::{Job, JobEvent, QatSpec, run_qat};
use qatlas::quant::plan::{Precision, QuantPlan};
use qatlas::quant::{QatOptions, prepare_qat};
use qatlas::train::{
    Control, Divergence, EpochHooks, NoHooks, NonFinite, OptimizerConfig, Schedule, TrainConfig,
    TrainError, TrainEvent, train, train_from,
};
use qatlas::zoo::Arch;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;

fn assets() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("assets")
}

fn mnist(n: usize) -> Dataset {
    load_split(&assets().join("mnist"), Split::Train)
        .unwrap()
        .limit(n)
}

fn cfg(epochs: usize) -> TrainConfig {
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
            warmup_steps: 5,
            min_factor: 0.0,
        },
        seed: 0,
    }
}

/// `ds` with float pixels (the same values `U8` storage gives), image `poison` (if any) holding
/// a NaN and every pixel multiplied by `gain`.
fn as_float(ds: &Dataset, poison: Option<usize>, gain: f32) -> Dataset {
    let mut px: Vec<f32> = match &ds.pixels {
        Pixels::U8(v) => v.iter().map(|&b| b as f32 / 255.0 * gain).collect(),
        other => panic!("MNIST is held as bytes, not {other:?}"),
    };
    if let Some(i) = poison {
        px[i * 784 + 400] = f32::NAN;
    }
    let mut out = ds.clone();
    out.pixels = Pixels::F32(px);
    out
}

fn params(g: &Graph) -> Vec<(String, Vec<u32>)> {
    g.params
        .iter()
        .map(|p| {
            let bits = p.tensor.iter().map(|v| v.to_bits()).collect();
            (p.name.clone(), bits)
        })
        .collect()
}

fn model(g: Graph) -> Model {
    Model {
        graph: g,
        meta: ModelMeta {
            normalization: Normalization::mnist(),
            class_names: vec![],
            arch: Some("seed-cnn".into()),
            train_config: None,
            history: None,
            command: None,
            qat: None,
        },
    }
}

/// Trains a fresh seed-cnn on `ds`, stopping once `stop_after` steps are applied.
fn trained(ds: &Dataset, cfg: &TrainConfig, stop_after: Option<usize>) -> (Graph, usize) {
    let mut g = Arch::SeedCnn.build([1, 28, 28], 10, 0).unwrap();
    let control = Control::new();
    let s = train(
        &mut g,
        ds,
        &Normalization::mnist(),
        cfg,
        None,
        &control,
        &mut |e| {
            if let TrainEvent::Step { step, .. } = e
                && Some(step) == stop_after
            {
                control.stop();
            }
        },
    )
    .unwrap();
    (g, s.steps)
}

#[test]
fn a_nan_mid_training_hands_back_the_weights_of_the_last_good_step() {
    // 160 images, batches of 16, 2 epochs: 20 steps; the poisoned image comes up once per epoch.
    let ds = mnist(160);
    let bad = as_float(&ds, Some(77), 1.0);
    let g = Arch::SeedCnn.build([1, 28, 28], 10, 0).unwrap();
    let job = Job::train(model(g), Arc::new(bad), None, cfg(2), Arc::new(|| {})).unwrap();
    let mut events = Vec::new();
    while !job.is_finished() {
        std::thread::yield_now();
        events.extend(job.drain());
    }
    events.extend(job.drain());
    let (m, summary, cause) = events
        .into_iter()
        .find_map(|e| match e {
            JobEvent::Trained {
                model,
                summary,
                diverged,
            } => Some((model, summary, diverged)),
            JobEvent::Failed(e) => panic!("the job dropped the model: {e}"),
            _ => None,
        })
        .expect("the training job must hand the model back");
    // One NaN pixel: a NaN loss, or (where ReLU and pooling drop it) NaN first-layer gradients.
    let step = match cause {
        Some(Divergence {
            step,
            what: NonFinite::Loss(value),
            ..
        }) if value.is_nan() => step,
        Some(Divergence {
            step,
            what: NonFinite::Gradient(ref param),
            ..
        }) if param == "conv1.weight" => step,
        other => panic!("expected a NaN loss or conv1 gradient, got {other:?}"),
    };
    assert!(
        step >= 2,
        "the poisoned batch must not be the first (step {step})"
    );
    // The kept weights are those the last applied step started from.
    assert_eq!(summary.steps, step - 1);
    let (reference, n) = trained(&as_float(&ds, None, 1.0), &cfg(2), Some(step - 1));
    assert_eq!(n, step - 1);
    assert_eq!(
        params(&m.graph),
        params(&reference),
        "the job's model must hold the weights after {n} steps"
    );
}

#[test]
fn an_overflowing_update_is_undone() {
    // Pixels x1000 and the largest learning rate: the first update overflows conv weights.
    let ds = as_float(&mnist(64), None, 1000.0);
    let mut cfg = cfg(1);
    cfg.optimizer = OptimizerConfig::Sgd {
        lr: f32::MAX,
        momentum: 0.0,
        nesterov: false,
        weight_decay: 0.0,
    };
    cfg.schedule = Schedule::Constant;
    let mut g = Arch::SeedCnn.build([1, 28, 28], 10, 0).unwrap();
    let before = params(&g);
    let control = Control::new();
    let e = train(
        &mut g,
        &ds,
        &Normalization::mnist(),
        &cfg,
        None,
        &control,
        &mut |_| {},
    )
    .unwrap_err();
    let TrainError::Diverged { cause, summary } = &e else {
        panic!("{e}");
    };
    assert!(
        matches!(
            cause,
            Divergence {
                step: 0,
                what: NonFinite::Update(_),
                ..
            }
        ),
        "{cause:?}"
    );
    assert_eq!(summary.steps, 0);
    assert!(e.to_string().contains("non-finite"), "{e}");
    assert_eq!(params(&g), before, "the overflowing update must be undone");
}

fn qat_spec(epochs: usize) -> QatSpec {
    let model = load_model(&assets().join("seed_cnn_mnist.safetensors")).unwrap();
    let plan = QuantPlan::default_for(&model.graph, Precision::Int8);
    QatSpec {
        model,
        plan,
        opts: QatOptions::default(),
        train: TrainConfig {
            batch_size: 64,
            ..cfg(epochs)
        },
        calib_samples: 256,
        freeze_bn_after: None,
        freeze_observers_after: None,
        bn_reestimate_batches: 0,
        checkpoint: None,
    }
}

/// The weights after every step of `spec`'s QAT run on `ds` (calibrated on its first
/// `calib_samples` images), by the trainer directly: the run's events are throttled, its hooks
/// here change nothing.
fn qat_reference(spec: &QatSpec, ds: &Dataset) -> Vec<Vec<(String, Vec<u32>)>> {
    let norm = spec.model.meta.normalization.clone();
    let first = ds.first(spec.calib_samples);
    let calib = Loader::new(&first, &norm, 256, None, false).map(|(x, _)| x);
    let mut q = prepare_qat(
        &spec.model.graph,
        &spec.plan,
        calib,
        &AtomicBool::new(false),
        &mut |_| {},
        &spec.opts,
    )
    .unwrap();
    let mut rec = Recorder(Vec::new());
    train_from(
        &mut q.graph,
        ds,
        &norm,
        &spec.train,
        None,
        &Control::new(),
        0,
        &mut rec,
        &mut |_| {},
    )
    .unwrap();
    rec.0
}

#[test]
fn a_nan_mid_qat_keeps_the_last_good_weights_and_observers() {
    // The first 256 images calibrate (clean); one image after them is poisoned.
    let ds = mnist(512);
    let spec = qat_spec(1);
    let out = run_qat(
        &spec,
        &as_float(&ds, Some(300), 1.0),
        None,
        &Control::new(),
        &|_| {},
    )
    .unwrap();
    let err = out.error.clone().expect("the poisoned run must fail");
    assert!(err.contains("NaN") || err.contains("non-finite"), "{err}");
    let kept = out
        .summary
        .as_ref()
        .expect("the steps before it stand")
        .steps;
    let failed_at = out.diverged.as_ref().expect("a typed divergence").step;
    assert!(
        failed_at >= 2,
        "the poisoned batch must not be the first (step {failed_at})"
    );
    assert_eq!(
        kept,
        failed_at - 1,
        "back to the weights the last applied step started from"
    );
    let reference = qat_reference(&spec, &as_float(&ds, None, 1.0));
    assert_eq!(
        params(&out.training.graph),
        reference[kept - 1],
        "weights, scales and observers after {kept} steps"
    );
}

#[test]
fn qatlas_train_writes_the_last_good_weights_and_fails_naming_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("diverged.safetensors");
    let run = std::process::Command::new(env!("CARGO_BIN_EXE_qatlas"))
        .args(["train", "--optimizer", "sgd", "--lr", "3e38", "--schedule"])
        .args([
            "constant",
            "--epochs",
            "1",
            "--limit",
            "256",
            "--eval-limit",
            "0",
        ])
        .arg("--out")
        .arg(&out)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert!(!run.status.success(), "a diverged run must fail: {stderr}");
    assert!(stderr.contains("diverged"), "{stderr}");
    assert!(stderr.contains(&out.display().to_string()), "{stderr}");
    let m = load_model(&out).expect("the last good weights were written");
    assert!(
        m.graph
            .params
            .iter()
            .all(|p| p.tensor.iter().all(|v| v.is_finite()))
    );
}

/// Records the weights after every step.
struct Recorder(Vec<Vec<(String, Vec<u32>)>>);
impl EpochHooks for Recorder {
    fn step_end(&mut self, _step: usize, g: &Graph) {
        self.0.push(params(g));
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 5, ..ProptestConfig::default() })]
    #[test]
    fn a_stop_at_any_step_leaves_that_steps_weights_in_a_model_that_trains_on(k in 1usize..20) {
        let ds = mnist(160);
        let norm = Normalization::mnist();
        let mut g = Arch::SeedCnn.build([1, 28, 28], 10, 0).unwrap();
        let mut rec = Recorder(Vec::new());
        train_from(&mut g, &ds, &norm, &cfg(2), None, &Control::new(), 0, &mut rec, &mut |_| {})
            .unwrap();
        prop_assert_eq!(rec.0.len(), 20);
        let (stopped, steps) = trained(&ds, &cfg(2), Some(k));
        prop_assert_eq!(steps, k);
        prop_assert!(params(&stopped) == rec.0[k - 1], "weights after a stop at step {}", k);
        // Saved and loaded, the stopped model resumes at the epoch the stop fell in.
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("stopped.safetensors");
        save_model(&model(stopped), &path).unwrap();
        let mut back = load_model(&path).unwrap();
        prop_assert!(params(&back.graph) == rec.0[k - 1]);
        let s = train_from(&mut back.graph, &ds, &norm, &cfg(2), None, &Control::new(), k / 10,
            &mut NoHooks, &mut |_| {}).unwrap();
        prop_assert_eq!(s.steps, 20);
        prop_assert!(!s.stopped);
    }

    #[test]
    fn a_qat_stop_at_any_step_leaves_that_steps_weights_and_resumes(k in 1usize..16) {
        let ds = mnist(512);
        let spec = qat_spec(2);
        let reference = qat_reference(&spec, &ds);
        prop_assert_eq!(reference.len(), 16);
        // Stop at the first step event at or after k (events are thinned out in time, so the
        // run may stop a little later: whatever step it stops at, its weights must be that
        // step's).
        let control = Control::new();
        let out = run_qat(&spec, &ds, None, &control, &|e| {
            if let JobEvent::Train(TrainEvent::Step { step, .. }) = e && step >= k {
                control.stop();
            }
        })
        .unwrap();
        prop_assert!(out.error.is_none(), "{:?}", out.error);
        let s = out.summary.clone().unwrap();
        // (When thinning hides every step from k to the last, the run simply completes.)
        prop_assert!(s.steps >= k && (s.stopped || s.steps == 16), "{} steps", s.steps);
        prop_assert!(params(&out.training.graph) == reference[s.steps - 1], "after {} steps", s.steps);
        // The training model is a checkpoint: saved, loaded and resumed, it finishes the run.
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("stopped-qat.safetensors");
        save_model(&out.training, &path).unwrap();
        let back = load_model(&path).unwrap();
        prop_assert!(back.meta.qat.is_some());
        if !s.stopped {
            return Ok(());
        }
        let resumed = run_qat(&QatSpec { model: back, ..spec.clone() }, &ds, None, &Control::new(), &|_| {})
            .unwrap();
        prop_assert!(resumed.error.is_none(), "{:?}", resumed.error);
        prop_assert!(resumed.summary.as_ref().is_some_and(|r| !r.stopped));
    }
}
