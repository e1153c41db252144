//! Tests of the studio app (`super`): opening, training events, saving, driven headlessly.

use super::*;
use crate::app::state::{Command, Level, Loadable, TrainRequest, TrainRun};
use crate::data::Normalization;
use crate::io::Model;
use crate::io::{ModelMeta, load_model, save_model};
use crate::train::{EpochRecord, EvalResult, TrainEvent, TrainHistory, TrainSummary};
use crate::zoo::Arch;
use std::sync::Arc;

fn quiet() -> Waker {
    Arc::new(|| {})
}

fn tiny_model() -> Model {
    Model {
        graph: Arch::SeedCnn.build([1, 4, 4], 2, 0).unwrap(),
        meta: ModelMeta {
            normalization: Normalization::mnist(),
            class_names: vec!["a".into(), "b".into()],
            arch: Some("seed-cnn".into()),
            train_config: None,
            history: None,
            command: Some("test".into()),
            qat: None,
        },
    }
}

fn pump_until(app: &mut StudioApp, done: impl Fn(&StudioApp) -> bool) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !done(app) {
        assert!(Instant::now() < deadline, "timed out");
        app.pump(DRAIN_BUDGET);
        std::thread::sleep(Duration::from_millis(2));
    }
}

#[test]
fn opens_a_model_off_thread_and_reports_a_missing_one() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("m.safetensors");
    save_model(&tiny_model(), &path).unwrap();
    let args = GuiArgs {
        model: Some(path.clone()),
        data: Some(dir.path().join("no-data")),
    };
    let mut app = StudioApp::new(args, quiet());
    pump_until(&mut app, |a| a.live.tasks.is_empty());
    let view = app.live.model.as_ref().expect("model opened");
    assert_eq!(view.path(), Some(path.as_path()));
    assert_eq!(view.trainable, 160 + 4640 + 258);
    // The missing data folder is reported on both splits, and blocks evaluation.
    assert!(matches!(&app.live.data.test, Loadable::Failed(e) if e.contains("no dataset folder")));
    assert!(
        app.live
            .evaluate_blocker()
            .unwrap_err()
            .contains("no test set")
    );
    assert!(app.live.train_blocker().is_err());

    app.apply(
        Command::OpenModel(dir.path().join("absent.safetensors")),
        None,
    );
    pump_until(&mut app, |a| a.live.tasks.is_empty());
    let notice = app.live.notice.as_ref().unwrap();
    assert_eq!(notice.level, Level::Error);
    assert!(notice.text.contains("absent.safetensors"));
    // The model on screen stays.
    assert!(app.live.model.is_some());
}

#[test]
fn train_events_drive_the_run_and_the_trained_model_replaces_the_view() {
    let mut app = StudioApp::new(
        GuiArgs {
            model: Some("/nonexistent/m.safetensors".into()),
            data: Some("/nonexistent".into()),
        },
        quiet(),
    );
    pump_until(&mut app, |a| a.live.tasks.is_empty());
    let req = TrainRequest {
        arch: Arch::SeedCnn,
        epochs: 1,
        lr: 1e-3,
    };
    app.live.training = Some(TrainRun {
        request: req,
        phase: RunPhase::Running,
        progress: Default::default(),
        job: None,
        started: Instant::now(),
    });
    let t0 = Instant::now();
    for s in 1..=4 {
        let e = TrainEvent::Step {
            epoch: 0,
            step: s,
            total_steps: 8,
            loss: 1.0 / s as f32,
            lr: 1e-3,
            images_per_s: 100.0,
        };
        app.on_train_event(
            JobEvent::Train(e),
            t0 + Duration::from_millis(100 * s as u64),
        );
    }
    let run = app.live.training.as_ref().unwrap();
    assert_eq!(run.progress.loss.len(), 4);
    assert!((run.progress.fraction() - 0.5).abs() < 1e-6);
    // 3 steps in 0.3 s = 10 steps/s; 4 steps left = 0.4 s.
    let eta = run.progress.eta(t0 + Duration::from_millis(400)).unwrap();
    assert!((eta.as_secs_f64() - 0.4).abs() < 1e-6);
    assert!(app.live.busy_labels().iter().any(|l| l.contains("50 %")));

    let record = EpochRecord {
        epoch: 0,
        train_loss: 0.4,
        train_accuracy: 0.8,
        images_per_s: 100.0,
        eval: Some(EvalResult {
            accuracy: 0.75,
            loss: 0.5,
            images: 4,
            images_per_s: 10.0,
        }),
    };
    app.on_train_event(JobEvent::Train(TrainEvent::Epoch(record.clone())), t0);
    let mut model = tiny_model();
    let history = TrainHistory {
        loss: vec![(8, 0.3)],
        epochs: vec![record],
    };
    model.meta.history = Some(history.clone());
    let summary = TrainSummary {
        steps: 8,
        stopped: false,
        images_per_s: 100.0,
        seconds: 0.8,
        history,
    };
    app.on_train_event(
        JobEvent::Trained {
            model: Arc::new(model),
            summary,
            diverged: None,
        },
        t0,
    );
    assert_eq!(
        app.live.training.as_ref().unwrap().phase,
        RunPhase::Finished {
            stopped_early: false,
            steps: 8,
            seconds: 0.8
        }
    );
    pump_until(&mut app, |a| a.live.model.is_some());
    let view = app.live.model.as_ref().unwrap();
    assert_eq!(
        view.origin,
        ModelOrigin::Trained {
            stopped_early: false
        }
    );
    assert!(app.live.notice.as_ref().unwrap().text.contains("75.00 %"));
    assert!(!app.live.is_training());
}

#[test]
fn saving_adds_the_extension_and_marks_the_model_saved() {
    let dir = tempfile::tempdir().unwrap();
    let mut app = StudioApp::new(
        GuiArgs {
            model: Some(dir.path().join("none.safetensors")),
            data: Some(dir.path().into()),
        },
        quiet(),
    );
    pump_until(&mut app, |a| a.live.tasks.is_empty());
    let id = app.live.next_model_id();
    app.live.model = Some(ModelView::prepare(
        id,
        Arc::new(tiny_model()),
        ModelOrigin::Trained {
            stopped_early: false,
        },
    ));
    app.apply(Command::SaveModel(dir.path().join("out")), None);
    pump_until(&mut app, |a| a.live.tasks.is_empty());
    let saved = dir.path().join("out.safetensors");
    assert_eq!(
        app.live.model.as_ref().unwrap().origin,
        ModelOrigin::File(saved.clone())
    );
    let back = load_model(&saved).unwrap();
    assert_eq!(back.graph.num_trainable(), 160 + 4640 + 258);
}
