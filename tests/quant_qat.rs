//! Quantization-aware training on real MNIST through the background job: events, accuracy
//! against the float model, best checkpoint and resume, stop, BatchNorm/observer freezing on
//! resnet-mini, and a non-finite run that must hand back the last good weights.

use qatlas::data::{Dataset, Loader, Pixels, Split, load_split};
use qatlas::graph::Graph;
use qatlas::io::{Model, ModelMeta, load_model};
use qatlas::jobs::{Job, JobEvent, QatEvent, QatOutcome, QatSpec, run_qat};
use qatlas::ops::OpKind;
use qatlas::quant::plan::{Precision, QuantPlan};
use qatlas::quant::{QatOptions, prepare_qat};
use qatlas::train::{Control, OptimizerConfig, Schedule, TrainConfig, TrainEvent, evaluate};
use qatlas::zoo::Arch;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::Duration;

fn assets() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("assets")
}

fn seed_cnn() -> Model {
    load_model(&assets().join("seed_cnn_mnist.safetensors")).unwrap()
}

fn split(s: Split, n: usize) -> Dataset {
    load_split(&assets().join("mnist"), s).unwrap().limit(n)
}

fn cfg(epochs: usize) -> TrainConfig {
    TrainConfig {
        epochs,
        batch_size: 64,
        optimizer: OptimizerConfig::AdamW {
            lr: 1e-4,
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
            weight_decay: 0.0,
        },
        schedule: Schedule::Cosine {
            warmup_steps: 0,
            min_factor: 0.0,
        },
        seed: 0,
    }
}

fn spec(model: Model, precision: Precision, epochs: usize, ckpt: Option<PathBuf>) -> QatSpec {
    let plan = QuantPlan::default_for(&model.graph, precision);
    QatSpec {
        model,
        plan,
        opts: QatOptions::default(),
        train: cfg(epochs),
        calib_samples: 256,
        freeze_bn_after: None,
        freeze_observers_after: None,
        bn_reestimate_batches: 0,
        checkpoint: ckpt,
    }
}

/// Runs a QAT job on its worker thread and collects every event until it finishes.
fn run_job(spec: QatSpec, train: Dataset, eval: Option<Dataset>) -> (Vec<JobEvent>, QatOutcome) {
    let job = Job::qat(spec, Arc::new(train), eval.map(Arc::new), Arc::new(|| {})).unwrap();
    let mut events = Vec::new();
    loop {
        let finished = job.is_finished();
        events.extend(job.drain());
        if finished {
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let outcome = events
        .iter()
        .find_map(|e| match e {
            JobEvent::QatFinished(o) => Some((**o).clone()),
            JobEvent::Failed(m) => panic!("job failed: {m}"),
            _ => None,
        })
        .expect("a QatFinished event");
    (events, outcome)
}

/// A fresh (untrained) resnet-mini with MNIST metadata.
fn resnet_mini() -> Model {
    Model {
        graph: Arch::ResnetMini.build([1, 28, 28], 10, 1).unwrap(),
        meta: ModelMeta {
            normalization: qatlas::data::Normalization::mnist(),
            class_names: (0..10).map(|i| i.to_string()).collect(),
            arch: Some("resnet-mini".into()),
            train_config: None,
            history: None,
            command: None,
            qat: None,
        },
    }
}

fn count_ops(g: &Graph, f: impl Fn(&OpKind) -> bool) -> usize {
    g.nodes.iter().filter(|n| f(&n.op)).count()
}

#[test]
fn int8_qat_job_keeps_accuracy_checkpoints_and_resumes() {
    let dir = tempfile::tempdir().unwrap();
    let ckpt = dir.path().join("best.safetensors");
    let (train, test) = (split(Split::Train, 3000), split(Split::Test, 1000));
    let s = spec(seed_cnn(), Precision::Int8, 1, Some(ckpt.clone()));
    let (events, out) = run_job(s.clone(), train.clone(), Some(test.clone()));
    assert!(out.error.is_none(), "{:?}", out.error);
    let started = events.iter().find_map(|e| match e {
        JobEvent::Qat(QatEvent::Started {
            float_accuracy,
            start_accuracy,
            quantizers,
            resumed_at_epoch,
            ..
        }) => Some((
            *float_accuracy,
            *start_accuracy,
            *quantizers,
            *resumed_at_epoch,
        )),
        _ => None,
    });
    let (float, start, quantizers, resumed) = started.expect("a Started event");
    assert_eq!(
        quantizers, 7,
        "seed-cnn int8: input, 3 weights, 3 activations"
    );
    assert_eq!(resumed, None);
    let (float, start) = (float.unwrap(), start.unwrap());
    let steps = events
        .iter()
        .filter(|e| matches!(e, JobEvent::Train(TrainEvent::Step { .. })))
        .count();
    assert!(steps >= 2, "{steps} step events");
    assert!(
        events.iter().any(
            |e| matches!(e, JobEvent::Qat(QatEvent::Scales { scales, .. }) if scales.len() == 7)
        )
    );
    let saved = events.iter().any(|e| matches!(e, JobEvent::Qat(QatEvent::Checkpoint { epoch: 1, path, .. }) if *path == ckpt));
    assert!(saved, "a checkpoint event for epoch 1");
    let q = out.quantized_accuracy.unwrap();
    eprintln!("float {float:.4} PTQ start {start:.4} QAT {q:.4} (1,000 test images)");
    assert!(float > 0.98 && q >= float - 0.005, "float {float} QAT {q}");
    // The deployable model: BatchNorm-free, no observers, and it evaluates as reported.
    let g = &out.model.graph;
    assert_eq!(count_ops(g, |o| matches!(o, OpKind::FakeQuant(_))), 7);
    assert_eq!(
        count_ops(
            g,
            |o| matches!(o, OpKind::FakeQuant(a) if a.observer.is_some())
        ),
        0
    );
    let norm = &out.model.meta.normalization;
    assert_eq!(evaluate(g, &test, norm, 250).unwrap().accuracy, q);
    assert_eq!(out.plan.ranges.len(), 7);
    // Deployment: the integer runtime runs the QAT model as the simulation does.
    let int = qatlas::runtime::IntModel::convert(g, &Default::default()).unwrap();
    let int_acc = qatlas::runtime::evaluate(&int, &test, norm, 250)
        .unwrap()
        .accuracy;
    assert!(
        (int_acc - q).abs() <= 0.001,
        "integer {int_acc} vs fake-quant {q}"
    );
    // The checkpoint holds the training graph and where the run stands.
    let c = load_model(&ckpt).unwrap();
    let st = c.meta.qat.clone().expect("QAT state in the checkpoint");
    assert_eq!(st.epochs_done, 1);
    assert_eq!(st.accuracy, out.best.map(|b| b.1));
    // Resume it for a second epoch.
    let mut s2 = spec(c, Precision::Int8, 2, None);
    s2.train = cfg(2);
    let resumed = std::sync::Mutex::new(None);
    let out2 = run_qat(&s2, &train, Some(&test), &Control::new(), &|e| {
        if let JobEvent::Qat(QatEvent::Started {
            resumed_at_epoch, ..
        }) = e
        {
            *resumed.lock().unwrap() = Some(resumed_at_epoch);
        }
    })
    .unwrap();
    assert_eq!(*resumed.lock().unwrap(), Some(Some(1)));
    assert!(out2.error.is_none(), "{:?}", out2.error);
    let sum = out2.summary.unwrap();
    assert_eq!(sum.history.epochs.len(), 1);
    assert_eq!(sum.history.epochs[0].epoch, 1);
    assert!(out2.quantized_accuracy.unwrap() >= float - 0.005);
}

#[test]
fn an_already_quantized_model_is_refused_with_a_clear_message() {
    let model = seed_cnn();
    let plan = QuantPlan::default_for(&model.graph, Precision::Int8);
    let images = split(Split::Test, 16);
    let norm = &model.meta.normalization;
    let batches = || Loader::new(&images, norm, 16, None, false).map(|(x, _)| x);
    let (stop, opts) = (AtomicBool::new(false), QatOptions::default());
    let q = prepare_qat(&model.graph, &plan, batches(), &stop, &mut |_| {}, &opts).unwrap();
    let deployed = qatlas::quant::deploy(&q.graph).unwrap();
    let e = prepare_qat(&deployed, &plan, batches(), &stop, &mut |_| {}, &opts).unwrap_err();
    assert!(e.to_string().contains("already quantized"), "{e}");
}

#[test]
fn a_stop_before_the_first_step_leaves_the_ptq_model() {
    let s = spec(seed_cnn(), Precision::Int8, 1, None);
    let control = Control::new();
    control.stop();
    let train = split(Split::Train, 512);
    let out = run_qat(&s, &train, None, &control, &|_| {}).unwrap();
    let sum = out.summary.unwrap();
    assert!(sum.stopped);
    assert_eq!(sum.steps, 0);
    // Nothing trained: the deployable model is the PTQ model of the same calibration images.
    let norm = s.model.meta.normalization.clone();
    let first = train.clone().limit(256);
    let calib = Loader::new(&first, &norm, 256, None, false).map(|(x, _)| x);
    let q = prepare_qat(
        &s.model.graph,
        &s.plan,
        calib,
        &AtomicBool::new(false),
        &mut |_| {},
        &QatOptions::default(),
    )
    .unwrap();
    let x = Loader::new(&split(Split::Test, 64), &norm, 64, None, false)
        .next()
        .unwrap()
        .0;
    assert_eq!(
        out.model.graph.infer(&x).unwrap(),
        q.ptq.graph.infer(&x).unwrap()
    );
}

#[test]
fn non_finite_training_stops_and_hands_back_the_last_good_weights() {
    let model = seed_cnn();
    // Clean calibration images (the first 256), NaN in every training image after them.
    let mut train = split(Split::Train, 512);
    let mut px: Vec<f32> = match &train.pixels {
        Pixels::U8(v) => v.iter().map(|&b| b as f32 / 255.0).collect(),
        Pixels::F32(v) => v.clone(),
        other => panic!("MNIST is held in memory, not {other:?}"),
    };
    for img in px.chunks_mut(784).skip(256) {
        img[300] = f32::NAN;
    }
    train.pixels = Pixels::F32(px);
    let s = spec(model, Precision::Int8, 1, None);
    let out = run_qat(&s, &train, None, &Control::new(), &|_| {}).unwrap();
    let err = out.error.clone().expect("the run must fail");
    assert!(err.contains("non-finite") || err.contains("NaN"), "{err}");
    // Every batch of 64 from 512 shuffled images holds poisoned ones, so the first step fails
    // and the last good weights are the starting (PTQ) weights, observers included.
    let norm = s.model.meta.normalization.clone();
    let first = train.clone().limit(256);
    let calib = Loader::new(&first, &norm, 256, None, false).map(|(x, _)| x);
    let q = prepare_qat(
        &s.model.graph,
        &s.plan,
        calib,
        &AtomicBool::new(false),
        &mut |_| {},
        &QatOptions::default(),
    )
    .unwrap();
    assert_eq!(out.training.graph.params.len(), q.graph.params.len());
    for (a, b) in out.training.graph.params.iter().zip(&q.graph.params) {
        assert_eq!(a.name, b.name);
        assert_eq!(a.tensor, b.tensor, "{} changed", a.name);
    }
}

#[test]
fn resnet_batchnorm_and_observers_freeze_on_schedule() {
    let model = resnet_mini();
    let mut s = spec(model, Precision::Int8, 2, None);
    s.freeze_bn_after = Some(1);
    s.freeze_observers_after = Some(1);
    let train = split(Split::Train, 320);
    let mut frozen = Vec::new();
    let record = std::sync::Mutex::new(&mut frozen);
    let out = run_qat(&s, &train, None, &Control::new(), &|e| {
        if let JobEvent::Qat(QatEvent::Frozen {
            epoch,
            batchnorms,
            observers,
        }) = e
        {
            record.lock().unwrap().push((epoch, batchnorms, observers));
        }
    })
    .unwrap();
    assert!(out.error.is_none(), "{:?}", out.error);
    let tg = &out.training.graph;
    let observers = count_ops(
        tg,
        |o| matches!(o, OpKind::FakeQuant(a) if a.observer.as_ref().is_some_and(|o| o.frozen)),
    );
    assert_eq!(observers, 17, "7 weights, the input, 9 activations");
    assert_eq!(
        frozen,
        vec![(1, 6, observers)],
        "(epoch, BatchNorms, observers) frozen"
    );
    assert_eq!(
        count_ops(tg, |o| matches!(o, OpKind::BatchNorm2d(a) if a.frozen)),
        6
    );
    assert_eq!(count_ops(tg, |o| matches!(o, OpKind::BnScale(_))), 6);
    let dg = &out.model.graph;
    assert_eq!(
        count_ops(dg, |o| matches!(
            o,
            OpKind::BatchNorm2d(_) | OpKind::BnScale(_) | OpKind::ChannelAffine(_)
        )),
        0
    );
    // The deployable model computes what the training graph computes in eval mode.
    let norm = qatlas::data::Normalization::mnist();
    let x = Loader::new(&split(Split::Test, 32), &norm, 32, None, false)
        .next()
        .unwrap()
        .0;
    let (a, b) = (tg.infer(&x).unwrap(), dg.infer(&x).unwrap());
    // ... and so does the integer runtime (folded BatchNorm, residual Adds, average pool).
    let int = qatlas::runtime::IntModel::convert(dg, &Default::default()).unwrap();
    let c = int.infer(&x).unwrap();
    let argmax = |t: &qatlas::tensor::Tensor, i: usize| {
        let row: Vec<f32> = t.index_axis(ndarray::Axis(0), i).iter().copied().collect();
        (0..row.len())
            .max_by(|&p, &q| row[p].total_cmp(&row[q]))
            .unwrap()
    };
    let agree = (0..32).filter(|&i| argmax(&b, i) == argmax(&c, i)).count();
    assert!(
        agree >= 31,
        "integer runtime agrees on {agree} of 32 images"
    );
    let scale = a.iter().fold(1.0f32, |m, v| m.max(v.abs()));
    let d = a
        .iter()
        .zip(&b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
        / scale;
    assert!(d < 1e-3, "deployed vs training graph: {d:e}");
}

/// The 4-bit recipe as the studio and `qatlas qat --precision int4` build it, one epoch on
/// resnet-mini: first and last layer at W8A8, the rest W4A8 with MSE weight ranges and LSQ
/// scales at a tenth of the learning rate, an oscillation report per weight quantizer, and
/// (one-epoch run, BatchNorm never frozen) BatchNorm re-estimated on the training batches with
/// the reported accuracy the deployable model's.
#[test]
fn four_bit_recipe_shapes_the_plan_meters_flips_and_reestimates_batchnorm() {
    use qatlas::jobs::qat_request::{QatPrecision, QatRequest};
    let model = resnet_mini();
    let mut req = QatRequest {
        precision: QatPrecision::W4A8,
        epochs: 1,
        ..QatRequest::default()
    };
    let recipe = req.default_recipe(&model.graph, None);
    req.set_recipe(&recipe);
    assert!(req.lsq && req.keep_ends_8bit && req.bn_reestimate_batches > 0);
    let mut s = req.spec(&model, "test".into(), None, None);
    s.calib_samples = 256;
    let layers = &s.plan.layers;
    let n = layers.len();
    assert_eq!(layers[0].precision, Precision::Int8);
    assert_eq!(layers[n - 1].precision, Precision::Int8);
    assert!(
        layers[1..n - 1]
            .iter()
            .all(|l| l.precision == Precision::Int4)
    );
    let (train, test) = (split(Split::Train, 640), split(Split::Test, 200));
    let (events, out) = run_job(s, train, Some(test.clone()));
    assert!(out.error.is_none(), "{:?}", out.error);
    let flips: Vec<_> = events
        .iter()
        .filter_map(|e| match e {
            JobEvent::Qat(QatEvent::Oscillation { layers, .. }) => Some(layers.clone()),
            _ => None,
        })
        .collect();
    let last = flips.last().expect("an oscillation report");
    assert_eq!(last.len(), n, "one weight quantizer per layer");
    assert!(last.iter().all(|l| (0.0..=1.0).contains(&l.flip_rate)));
    assert!(last.iter().any(|l| l.flip_rate > 0.0), "{last:?}");
    assert_eq!(&out.oscillation, last);
    let re = events.iter().find_map(|e| match e {
        JobEvent::Qat(QatEvent::BatchNormReestimated {
            batchnorms,
            batches,
            after,
            ..
        }) => Some((*batchnorms, *batches, *after)),
        _ => None,
    });
    let (bns, batches, after) = re.expect("a BatchNorm re-estimation");
    assert_eq!((bns, batches), (6, 10), "6 BatchNorms, 640 images / 64");
    assert_eq!(after, out.quantized_accuracy);
    let norm = qatlas::data::Normalization::mnist();
    let acc = evaluate(&out.model.graph, &test, &norm, 256)
        .unwrap()
        .accuracy;
    assert_eq!(Some(acc), out.quantized_accuracy);
}
