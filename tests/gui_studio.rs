//! The studio's application logic end to end, without a window: a tiny IDX dataset on disk, a
//! "Train from scratch" command, the live events folded into the run, the trained model
//! replacing the view, then "Evaluate on test set" giving exactly what `train::evaluate` gives
//! for that model; then quantization-aware training of that model from the QAT panel's
//! commands, its saved model re-evaluated from disk; and the Benchmarks tab's kernel and
//! end-to-end benchmarks with tiny settings (results arrive; never a speed assertion). Only the public API of `qatlas::app` is
//! used, as the window uses it.
#![cfg(feature = "gui")]

use qatlas::app::StudioApp;
use qatlas::app::bench_run::BenchCommand;
use qatlas::app::panels::bench::BenchPanel;
use qatlas::app::qat_run::{QatCommand, QatPhase, QatPrecision, QatRequest};
use qatlas::app::state::FrameCtx;
use qatlas::app::state::{Command, Loadable, ModelOrigin, RunPhase, TrainRequest};
use qatlas::app::studio::CentralTab;
use qatlas::bench::{E2eConfig, GemmConfig};
use qatlas::cli::common::GuiArgs;
use qatlas::jobs::QatEvent;
use qatlas::quant::Precision;
use qatlas::zoo::Arch;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// Writes `prefix`-images/labels IDX files: 8x8 images, class 0 bright on the left half,
/// class 1 bright on the right half, with a little deterministic texture.
fn write_idx(dir: &Path, prefix: &str, n: usize) {
    let (h, w) = (8usize, 8usize);
    let mut images = Vec::new();
    images.extend_from_slice(&0x0000_0803u32.to_be_bytes());
    for d in [n, h, w] {
        images.extend_from_slice(&(d as u32).to_be_bytes());
    }
    let mut labels = Vec::new();
    labels.extend_from_slice(&0x0000_0801u32.to_be_bytes());
    labels.extend_from_slice(&(n as u32).to_be_bytes());
    for i in 0..n {
        let class = (i % 2) as u8;
        labels.push(class);
        for y in 0..h {
            for x in 0..w {
                let bright = (x < w / 2) == (class == 0);
                let texture = ((i * 7 + y * 3 + x) % 5) as u8 * 10;
                images.push(if bright { 200 + texture } else { texture });
            }
        }
    }
    std::fs::write(dir.join(format!("{prefix}-images-idx3-ubyte")), images).unwrap();
    std::fs::write(dir.join(format!("{prefix}-labels-idx1-ubyte")), labels).unwrap();
}

fn pump_until(app: &mut StudioApp, what: &str, done: impl Fn(&StudioApp) -> bool) {
    let deadline = Instant::now() + Duration::from_secs(120);
    while !done(app) {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        app.pump(Duration::from_millis(10));
        std::thread::sleep(Duration::from_millis(2));
    }
}

#[test]
fn train_from_scratch_then_evaluate_through_the_app() {
    let dir = tempfile::tempdir().unwrap();
    write_idx(dir.path(), "train", 512);
    write_idx(dir.path(), "t10k", 128);
    let wakes = Arc::new(AtomicUsize::new(0));
    let w = wakes.clone();
    let args = GuiArgs {
        model: Some(dir.path().join("absent.safetensors")),
        data: Some(dir.path().to_path_buf()),
    };
    let mut app = StudioApp::new(
        args,
        Arc::new(move || {
            w.fetch_add(1, Ordering::Relaxed);
        }),
    );
    pump_until(&mut app, "the dataset", |a| a.live.tasks.is_empty());
    assert!(app.live.model.is_none());
    let test = match &app.live.data.test {
        Loadable::Ready(d) => d.clone(),
        other => panic!("test set not loaded: {other:?}"),
    };
    assert_eq!(
        (test.n, test.image_shape(), test.num_classes),
        (128, [1, 8, 8], 2)
    );

    app.apply(
        Command::Train(TrainRequest {
            arch: Arch::SeedCnn,
            epochs: 3,
            lr: 0.05,
        }),
        None,
    );
    pump_until(&mut app, "training", |a| a.live.model.is_some());
    let run = app.live.training.as_ref().unwrap();
    // 512 images in batches of 64 = 8 steps per epoch, 3 epochs. The job throttles step events
    // (a run this small may report none), so the live curve holds at most that many points.
    assert!(
        matches!(
            run.phase,
            RunPhase::Finished {
                stopped_early: false,
                steps: 24,
                ..
            }
        ),
        "{:?}",
        run.phase
    );
    assert!(run.progress.step <= 24 && run.progress.loss.len() <= 24);
    assert_eq!(run.progress.epochs.len(), 3);
    let view = app.live.model.as_ref().unwrap();
    assert_eq!(
        view.origin,
        ModelOrigin::Trained {
            stopped_early: false
        }
    );
    assert_eq!(view.model.meta.arch.as_deref(), Some("seed-cnn"));
    let history = view
        .model
        .meta
        .history
        .clone()
        .expect("the trained model stores its history");
    assert_eq!(history.epochs, run.progress.epochs);
    // Workers woke the UI: once per task (two splits, the fresh network, the summary) and per
    // epoch event at least.
    assert!(wakes.load(Ordering::Relaxed) >= 7);

    app.apply(Command::Evaluate, None);
    assert!(app.live.evaluation.is_some());
    pump_until(&mut app, "the evaluation", |a| {
        a.live.current_eval().is_some()
    });
    let shown = app.live.current_eval().unwrap().clone();
    let view = app.live.model.as_ref().unwrap();
    let direct = qatlas::train::evaluate(
        &view.model.graph,
        &test,
        &view.model.meta.normalization,
        256,
    )
    .unwrap();
    assert_eq!(
        (shown.accuracy, shown.images),
        (direct.accuracy, direct.images)
    );
    assert!(
        (shown.loss - direct.loss).abs() <= 1e-6 * direct.loss.max(1.0),
        "{} vs {}",
        shown.loss,
        direct.loss
    );
    // The last epoch's test accuracy, stored by training, is the same measurement.
    assert_eq!(
        history
            .epochs
            .last()
            .unwrap()
            .eval
            .as_ref()
            .unwrap()
            .accuracy,
        shown.accuracy
    );
    // The halves are trivially separable: a trained network must get well above chance.
    assert!(shown.accuracy > 0.9, "accuracy {}", shown.accuracy);
}

#[test]
fn qat_from_the_studio_reports_live_and_saves_a_quantized_model() {
    let dir = tempfile::tempdir().unwrap();
    write_idx(dir.path(), "train", 512);
    write_idx(dir.path(), "t10k", 128);
    let args = GuiArgs {
        model: Some(dir.path().join("absent.safetensors")),
        data: Some(dir.path().to_path_buf()),
    };
    let mut app = StudioApp::new(args, Arc::new(|| {}));
    pump_until(&mut app, "the dataset", |a| a.live.tasks.is_empty());
    // Without a model there is nothing to quantize.
    assert!(app.live.qat_blocker().unwrap_err().contains("no model"));
    app.apply(
        Command::Train(TrainRequest {
            arch: Arch::SeedCnn,
            epochs: 3,
            lr: 0.05,
        }),
        None,
    );
    pump_until(&mut app, "the float model", |a| a.live.model.is_some());
    assert_eq!(app.live.qat_blocker(), Ok(()));
    let float = app.live.model.as_ref().unwrap().model.clone();

    // Two epochs on the first 256 images (4 steps each), observers frozen after the first.
    let req = QatRequest {
        precision: QatPrecision::Int8,
        epochs: 2,
        lr: 1e-4,
        lsq: false,
        freeze_bn_after: None,
        freeze_observers_after: Some(1),
        limit: Some(256),
        ..QatRequest::default()
    };
    app.apply(Command::Qat(QatCommand::Start(req)), None);
    assert!(app.live.is_busy());
    assert!(
        app.live
            .qat_blocker()
            .unwrap_err()
            .contains("already under way")
    );
    pump_until(&mut app, "the QAT run", |a| {
        !a.live.qat.as_ref().unwrap().is_active()
    });
    let run = app.live.qat.as_ref().unwrap();
    assert!(
        matches!(
            run.phase,
            QatPhase::Finished {
                stopped_early: false,
                ..
            }
        ),
        "{:?}",
        run.phase
    );
    let start = run.start.as_ref().expect("the Started event arrived");
    // seed-cnn: weights of conv1, conv2, fc plus activation quantizers.
    assert!(start.quantizers >= 4, "{}", start.quantizers);
    // The float accuracy the job measured is the float model's on the whole test set.
    let test = app.live.data.test.ready().unwrap().clone();
    let direct = qatlas::train::evaluate(&float.graph, &test, &float.meta.normalization, 256)
        .unwrap()
        .accuracy;
    assert_eq!(start.float_accuracy, Some(direct));
    assert!(start.start_accuracy.is_some());
    assert_eq!(run.progress.epochs.len(), 2);
    assert!(run.progress.epochs.iter().all(|r| r.eval.is_some()));
    let result = run.result.as_ref().unwrap();
    assert_eq!(result.steps, 8);
    let q = result.quantized_accuracy.expect("a quantized accuracy");
    assert!(q > 0.9, "quantized accuracy {q}");
    // The final scale report covers every quantizer; conv1's weights have 16 channels.
    assert_eq!(run.scales.len(), start.quantizers);
    assert!(run.scales.iter().any(|r| r.channels == 16));
    assert!(
        run.scales
            .iter()
            .all(|r| r.min > 0.0 && r.min <= r.mean && r.mean <= r.max)
    );
    assert!(run.notes.iter().any(|n| matches!(
        n,
        QatEvent::Frozen {
            epoch: 1,
            observers,
            ..
        } if *observers > 0
    )));
    let checkpoint = run.notes.iter().find_map(|n| match n {
        QatEvent::Checkpoint { path, .. } => Some(path.clone()),
        _ => None,
    });
    assert!(checkpoint.expect("a best checkpoint").exists());
    assert!(
        app.live
            .notice
            .as_ref()
            .unwrap()
            .text
            .contains("QAT finished")
    );

    // Save the deployable model and read it back: same accuracy, now blocked as already quantized.
    app.apply(
        Command::Qat(QatCommand::Save(dir.path().join("quantized"))),
        None,
    );
    pump_until(&mut app, "the save", |a| {
        a.live.qat.as_ref().unwrap().saved_to.is_some()
    });
    let saved = dir.path().join("quantized.safetensors");
    assert_eq!(
        app.live.qat.as_ref().unwrap().saved_to.as_deref(),
        Some(saved.as_path())
    );
    let back = qatlas::io::load_model(&saved).unwrap();
    let again = qatlas::train::evaluate(&back.graph, &test, &back.meta.normalization, 256)
        .unwrap()
        .accuracy;
    assert_eq!(again, q);
    assert!(
        back.meta
            .command
            .as_deref()
            .unwrap()
            .starts_with("qatlas qat")
    );
    // The float model on screen was trained here and never saved: opening another asks first.
    app.apply(Command::OpenModel(saved), None);
    let c = app
        .live
        .confirm
        .clone()
        .expect("replacing unsaved work asks first");
    assert_eq!(c.lost, ["the model trained in this session (not saved)"]);
    app.apply(
        Command::Confirm(qatlas::app::state::ConfirmAnswer::Proceed),
        None,
    );
    assert!(app.live.confirm.is_none());
    pump_until(&mut app, "the quantized model", |a| a.live.tasks.is_empty());
    assert!(
        app.live
            .qat_blocker()
            .unwrap_err()
            .contains("already quantized")
    );
}

/// Draws the Benchmarks panel once, headlessly, with the app's current state.
fn draw_bench_panel(app: &StudioApp) -> Vec<qatlas::app::state::Command> {
    let mut commands = Vec::new();
    let mut panel = BenchPanel::default();
    let ctx = eframe::egui::Context::default();
    let _ = ctx.run_ui(Default::default(), |ui| {
        let mut cx = FrameCtx::new(&app.live, &app.state.settings, &app.ws, &mut commands);
        panel.ui(ui, &mut cx);
    });
    commands
}

#[test]
fn benchmarks_tab_runs_the_kernel_and_end_to_end_benchmarks() {
    let dir = tempfile::tempdir().unwrap();
    write_idx(dir.path(), "train", 64);
    write_idx(dir.path(), "t10k", 32);
    let args = GuiArgs {
        model: Some(dir.path().join("absent.safetensors")),
        data: Some(dir.path().to_path_buf()),
    };
    let mut app = StudioApp::new(args, Arc::new(|| {}));
    pump_until(&mut app, "the dataset", |a| a.live.tasks.is_empty());
    assert!(!app.live.bench.features.kernel_in_use.is_empty());
    assert!(draw_bench_panel(&app).is_empty());

    // The kernel benchmark on one small shape: the row arrives with positive GOP/s.
    let tiny = GemmConfig {
        repeats: 1,
        min_ms: 1,
        wait_quiet_s: 0.0,
        shapes: vec![(64, 64, 64)],
        int4: false,
        portable: true,
    };
    app.apply(Command::Bench(BenchCommand::RunGemm(tiny.clone())), None);
    assert_eq!(app.state.central, CentralTab::Bench);
    assert!(app.live.is_busy());
    // One benchmark at a time.
    app.apply(
        Command::Bench(BenchCommand::RunE2e(E2eConfig::quick())),
        None,
    );
    assert!(
        app.live
            .notice
            .as_ref()
            .unwrap()
            .text
            .contains("already running")
    );
    pump_until(&mut app, "the kernel benchmark", |a| {
        a.live.bench.running.is_none()
    });
    let b = &app.live.bench;
    assert_eq!(b.error, None);
    let g = b.gemm.as_ref().unwrap();
    assert_eq!(g.finished, Some(false));
    assert!(g.machine.is_some());
    assert_eq!(g.rows.len(), 1);
    let row = &g.rows[0];
    assert_eq!((row.m, row.k, row.n), (64, 64, 64));
    assert!(row.f32.gops > 0.0);
    assert!(row.paths.iter().any(|p| p.path == "portable"));
    assert!(
        row.paths
            .iter()
            .all(|p| p.gops > 0.0 && p.ratio_to_f32 > 0.0)
    );
    draw_bench_panel(&app);

    // End to end on the 8x8 data: no model is open and the pretrained one reads 28x28 images,
    // so a fresh seed-cnn of the data's shape is measured.
    let e2e = E2eConfig {
        precision: Precision::Int8,
        batch: 8,
        repeats: 1,
        secs: 0.01,
    };
    app.apply(Command::Bench(BenchCommand::RunE2e(e2e)), None);
    pump_until(&mut app, "the end-to-end benchmark", |a| {
        a.live.bench.running.is_none()
    });
    let b = &app.live.bench;
    assert_eq!(b.error, None);
    let v = b.e2e.as_ref().unwrap();
    assert!(v.model.as_ref().unwrap().contains("freshly initialised"));
    let r = v.result.as_ref().expect("end-to-end result");
    let t = &r.timing;
    assert_eq!(t.batch, 8);
    assert!(t.int_images_per_s > 0.0 && t.float_images_per_s > 0.0);
    assert!(t.int_latency_us > 0.0 && t.float_latency_us > 0.0);
    draw_bench_panel(&app);

    // Stop: the run ends stopped, before its (large) shapes.
    let long = GemmConfig {
        shapes: vec![(2048, 2048, 2048); 3],
        ..tiny
    };
    app.apply(Command::Bench(BenchCommand::RunGemm(long)), None);
    app.apply(Command::Bench(BenchCommand::Stop), None);
    assert!(
        app.live
            .busy_labels()
            .iter()
            .any(|l| l.contains("Stopping"))
    );
    pump_until(&mut app, "the stopped benchmark", |a| {
        a.live.bench.running.is_none()
    });
    let g = app.live.bench.gemm.as_ref().unwrap();
    assert_eq!(g.finished, Some(true));
    assert!(g.rows.is_empty());
}
