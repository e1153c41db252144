//! The studio's application logic end to end, without a window: a tiny IDX dataset on disk, a
//! "Train from scratch" command, the live events folded into the run, the trained model
//! replacing the view, then "Evaluate on test set" giving exactly what `train::evaluate` gives
//! for that model. Only the public API of `qatlas::app` is used, as the window uses it.
#![cfg(feature = "gui")]

use qatlas::app::StudioApp;
use qatlas::app::state::{Command, Loadable, ModelOrigin, RunPhase, TrainRequest};
use qatlas::cli::common::GuiArgs;
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
