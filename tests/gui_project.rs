//! Project files through the studio (egui_kittest, the real app on the built-in seed-cnn and
//! MNIST): a project saved from the window replays headless (`qatlas run`) to the figures the
//! window showed; an opened project restores its plan, samples and panel settings and the title
//! marks changes; closing with unsaved work asks first; a project whose model changed, or from
//! a newer qatlas, is reported.
#![cfg(feature = "gui")]

use egui_kittest::Harness;
use qatlas::app::StudioApp;
use qatlas::app::export_control::ExportCommand;
use qatlas::app::project_control::ProjectCommand;
use qatlas::app::state::{Command, ConfirmAnswer, Level, Pending};
use qatlas::app::workspace::{PlanCommand, PlanEdit, Target};
use qatlas::cli::common::{GuiArgs, default_data_dir, default_model};
use qatlas::jobs::ExportFormat;
use qatlas::project::Project;
use qatlas::project::file::{Calibration, DataRef, ModelRef, file_sha256};
use qatlas::quant::plan::{Precision, QuantPlan};
use std::sync::Arc;
use std::time::{Duration, Instant};

fn harness() -> Harness<'static, StudioApp> {
    let app = StudioApp::new(
        GuiArgs {
            model: None,
            data: None,
        },
        Arc::new(|| {}),
    );
    Harness::builder()
        .with_size([1280.0, 800.0])
        .with_max_steps(1_000_000)
        .build_ui_state(|ui, app: &mut StudioApp| app.frame(ui), app)
}

fn step_until(h: &mut Harness<'_, StudioApp>, what: &str, done: impl Fn(&StudioApp) -> bool) {
    let deadline = Instant::now() + Duration::from_secs(240);
    while !done(h.state()) {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        h.step();
        std::thread::sleep(Duration::from_millis(5));
    }
    h.step();
    h.step();
}

/// The current plan revision is evaluated and its integer accuracy and latency are in.
fn settled(a: &StudioApp) -> bool {
    let ws = &a.ws;
    ws.current_eval().is_some()
        && !ws.is_evaluating()
        && !a.plan_busy().latency
        && ws.integer.as_ref().is_some_and(|t| t.rev == ws.rev)
        && ws.latency.as_ref().is_some_and(|t| t.rev == ws.rev)
}

fn send(h: &mut Harness<'_, StudioApp>, c: Command) {
    h.state_mut().apply(c, None);
    h.step();
}

#[test]
fn a_project_saved_from_the_window_replays_headless_to_the_same_figures() {
    let tmp = tempfile::tempdir().unwrap();
    let mut h = harness();
    step_until(&mut h, "the default plan", settled);
    assert_eq!(h.state().window_title(), "untitled project — qatlas studio");
    send(
        &mut h,
        Command::Plan(PlanCommand::Edit(
            Target::Layers(vec!["conv2".into()]),
            PlanEdit::Weights(Precision::Int4),
        )),
    );
    step_until(&mut h, "the edited plan", settled);
    assert!(
        h.state().window_title().contains('•'),
        "{}",
        h.state().window_title()
    );
    let bundle = tmp.path().join("seed.int.safetensors");
    send(
        &mut h,
        Command::Export(ExportCommand::Run {
            format: ExportFormat::Bundle,
            opset: 17,
            path: bundle.clone(),
        }),
    );
    step_until(&mut h, "the export", |a| {
        a.live.export.job.is_none() && a.live.export.last.is_some()
    });
    let file = tmp.path().join("work.qatlas.ron");
    send(
        &mut h,
        Command::Project(ProjectCommand::SaveAs(file.clone())),
    );
    step_until(&mut h, "the save", |a| !a.live.project.saving);
    assert_eq!(h.state().live.project.path.as_deref(), Some(file.as_path()));
    assert_eq!(h.state().window_title(), "work — qatlas studio");
    let shown = h.state().project_now().unwrap().results;

    // Replay it headless, exporting elsewhere.
    let out_dir = tmp.path().join("replay");
    std::fs::create_dir_all(&out_dir).unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_qatlas"))
        .args(["run", "--json", "--skip-latency", "--export-dir"])
        .arg(&out_dir)
        .arg(&file)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let now: qatlas::project::file::Results = serde_json::from_value(v["now"].clone()).unwrap();
    assert_eq!(now.float_accuracy, shown.float_accuracy);
    assert_eq!(now.plan_accuracy, shown.plan_accuracy);
    assert_eq!(now.integer_accuracy, shown.integer_accuracy);
    assert_eq!(now.weight_bytes, shown.weight_bytes);
    assert!(shown.latency.is_some(), "the window's latency is saved");
    let (a, b) = (&now.exports[0], &shown.exports[0]);
    assert_eq!(
        (a.format, a.bytes, a.accuracy),
        (b.format, b.bytes, b.accuracy)
    );
    assert_eq!(a.path, out_dir.join("seed.int.safetensors"));
    // What the JSON says was saved is what the window showed.
    let saved: qatlas::project::file::Results = serde_json::from_value(v["saved"].clone()).unwrap();
    assert_eq!(saved.plan_accuracy, shown.plan_accuracy);

    // Keyboard: a change, then Ctrl+S saves to the same file and the mark goes; F1 lists the
    // shortcuts.
    send(
        &mut h,
        Command::Plan(PlanCommand::Edit(
            Target::Layers(vec!["fc".into()]),
            PlanEdit::Weights(Precision::Fp16),
        )),
    );
    assert_eq!(h.state().window_title(), "work • — qatlas studio");
    h.key_press_modifiers(eframe::egui::Modifiers::COMMAND, eframe::egui::Key::S);
    h.step();
    step_until(&mut h, "the Ctrl+S save", |a| !a.live.project.saving);
    assert_eq!(h.state().window_title(), "work — qatlas studio");
    let back = Project::load(&file).unwrap();
    assert_eq!(
        back.plan.unwrap().layer("fc").unwrap().precision,
        Precision::Fp16
    );
    h.key_press(eframe::egui::Key::F1);
    h.run_steps(2);
    assert!(h.state().live.show_shortcuts);
    use egui_kittest::kittest::Queryable;
    h.get_by_label("Save the project as…");
}

/// A project on the pretrained model with conv1 at int4 and 500 test images.
fn hand_written(dir: &std::path::Path, sha: Option<&str>) -> (std::path::PathBuf, QuantPlan) {
    let model = default_model();
    let m = qatlas::io::load_any(&model).unwrap();
    let mut plan = QuantPlan::default_for(&m.graph, Precision::Int8);
    plan.layer_mut("conv1").unwrap().precision = Precision::Int4;
    let (sha256, bytes) = file_sha256(&model).unwrap();
    let p = Project {
        model: ModelRef {
            path: model,
            sha256: sha.map_or(sha256, str::to_string),
            bytes,
        },
        data: DataRef {
            dir: default_data_dir(),
            normalization: None,
            transform: Default::default(),
        },
        plan: Some(plan.clone()),
        calibration: Calibration {
            calib_samples: 600,
            eval_samples: 500,
        },
        qat: Some(qatlas::jobs::qat_request::QatRequest {
            precision: qatlas::jobs::qat_request::QatPrecision::W4A8,
            epochs: 3,
            lr: 2e-4,
            lsq: true,
            freeze_bn_after: None,
            freeze_observers_after: Some(2),
            limit: None,
            ..qatlas::jobs::qat_request::QatRequest::default()
        }),
        ..Project::default()
    };
    let file = dir.join("hand.qatlas.ron");
    p.save(&file).unwrap();
    (file, plan)
}

#[test]
fn an_opened_project_restores_its_plan_and_the_title_marks_a_change() {
    let tmp = tempfile::tempdir().unwrap();
    let (file, plan) = hand_written(tmp.path(), None);
    let mut h = harness();
    step_until(&mut h, "the default plan", settled);
    send(&mut h, Command::Project(ProjectCommand::Open(file.clone())));
    step_until(&mut h, "the project's plan", |a| {
        a.live.project.pending.is_none() && a.ws.plan.as_ref() == Some(&plan) && settled(a)
    });
    let a = h.state();
    assert_eq!(a.ws.eval_samples, 500);
    assert_eq!(a.ws.calib_samples, 600);
    assert_eq!(a.ws.current_eval().unwrap().eval.comparison.images, 500);
    assert_eq!(a.state.qat.epochs, 3);
    assert!(a.state.qat.lsq && a.state.qat.freeze_observers && !a.state.qat.freeze_bn);
    assert_eq!(a.window_title(), "hand — qatlas studio");
    assert!(
        h.state()
            .prefs
            .recent_projects
            .iter()
            .any(|p| p.ends_with("hand.qatlas.ron"))
    );

    // A change marks the title; closing then asks, and Cancel keeps the window.
    send(
        &mut h,
        Command::Plan(PlanCommand::Edit(
            Target::Layers(vec!["fc".into()]),
            PlanEdit::Weights(Precision::Fp16),
        )),
    );
    h.step();
    assert_eq!(h.state().window_title(), "hand • — qatlas studio");
    send(&mut h, Command::Quit);
    let c = h.state().live.confirm.clone().expect("closing asks first");
    assert_eq!(c.pending, Pending::Close);
    assert!(c.lost[0].contains("changes to hand"), "{:?}", c.lost);
    send(&mut h, Command::Confirm(ConfirmAnswer::Cancel));
    assert!(h.state().live.confirm.is_none());
    // Opening another project with unsaved changes asks too.
    send(&mut h, Command::Project(ProjectCommand::Open(file.clone())));
    assert!(matches!(
        h.state().live.confirm.as_ref().map(|c| &c.pending),
        Some(Pending::Command(_))
    ));
    send(&mut h, Command::Confirm(ConfirmAnswer::Cancel));
    // Undoing the change clears the mark.
    send(
        &mut h,
        Command::Plan(PlanCommand::Edit(
            Target::Layers(vec!["fc".into()]),
            PlanEdit::Weights(Precision::Int8),
        )),
    );
    h.step();
    assert_eq!(h.state().window_title(), "hand — qatlas studio");
}

#[test]
fn a_changed_model_and_a_newer_project_are_reported() {
    let tmp = tempfile::tempdir().unwrap();
    let (file, plan) = hand_written(tmp.path(), Some(&"ab".repeat(32)));
    let mut h = harness();
    step_until(&mut h, "the default plan", settled);
    send(&mut h, Command::Project(ProjectCommand::Open(file)));
    step_until(&mut h, "the project", |a| {
        a.live.project.pending.is_none() && a.ws.plan.as_ref() == Some(&plan)
    });
    let n = h.state().live.notice.clone().expect("a notice");
    assert_eq!(n.level, Level::Error);
    assert!(
        n.text.contains("changed since the project was saved"),
        "{}",
        n.text
    );

    let newer = tmp.path().join("newer.qatlas.ron");
    std::fs::write(&newer, "(version: 2, model: (path: \"x\"))").unwrap();
    send(&mut h, Command::Project(ProjectCommand::Open(newer)));
    step_until(&mut h, "the error", |a| {
        a.live
            .notice
            .as_ref()
            .is_some_and(|n| n.text.contains("newer qatlas"))
    });
    let n = h.state().live.notice.clone().unwrap();
    assert!(n.text.contains("newer.qatlas.ron"), "{}", n.text);
    // The session is untouched.
    assert_eq!(h.state().ws.plan.as_ref(), Some(&plan));
}

/// A file dropped on the window, as the windowing layer hands it over.
#[derive(Debug)]
struct Dropped(std::path::PathBuf);

impl eframe::egui::DroppedFile for Dropped {
    fn path(&self) -> &std::path::Path {
        &self.0
    }
    fn bytes(&self) -> Result<Vec<u8>, String> {
        std::fs::read(&self.0).map_err(|e| e.to_string())
    }
}

#[test]
fn a_bundle_dropped_on_the_window_opens_read_only_and_is_measured_on_the_integer_runtime() {
    let tmp = tempfile::tempdir().unwrap();
    let mut h = harness();
    step_until(&mut h, "the default plan", settled);
    let bundle = tmp.path().join("seed.int.safetensors");
    send(
        &mut h,
        Command::Export(ExportCommand::Run {
            format: ExportFormat::Bundle,
            opset: 17,
            path: bundle.clone(),
        }),
    );
    step_until(&mut h, "the export", |a| {
        a.live.export.job.is_none() && a.live.export.last.is_some()
    });
    h.input_mut()
        .dropped_files
        .push(Arc::new(Dropped(bundle.clone())));
    h.step();
    step_until(&mut h, "the bundle's accuracy", |a| {
        a.live.bundle.as_ref().is_some_and(|b| b.eval.is_some())
    });
    let a = h.state();
    assert!(a.live.model.is_none() && a.ws.plan.is_none());
    let b = a.live.bundle.as_ref().unwrap();
    let (acc, n) = b.eval.clone().unwrap().unwrap();
    // The library's own measurement of the same file.
    let m = qatlas::runtime::IntModel::load(&bundle).unwrap();
    let test = qatlas::data::load_split(&default_data_dir(), qatlas::data::Split::Test).unwrap();
    let r = qatlas::runtime::evaluate(&m, &test, &m.spec().normalization, 250).unwrap();
    assert_eq!((acc, n), (r.accuracy, 10_000));
    assert_eq!(b.layers.len(), 3);
    // The layers it stores, on the left, and the measured accuracy in the Model & data tab.
    h.get_by_label("Model & data").click();
    h.run_steps(2);
    use egui_kittest::kittest::Queryable;
    h.get_by_label_contains(&format!("accuracy {}", qatlas::app::format::percent(acc)));
    assert!(h.query_all_by_label("int8").count() >= 3);
    // A plan tool says why it cannot act.
    assert!(
        h.state()
            .live
            .no_model_reason
            .as_deref()
            .unwrap()
            .contains("integer bundle")
    );
    // Dropping a project file opens it as a project.
    let (file, plan) = hand_written(tmp.path(), None);
    h.input_mut().dropped_files.push(Arc::new(Dropped(file)));
    h.step();
    step_until(&mut h, "the dropped project", |a| {
        a.live.project.pending.is_none() && a.ws.plan.as_ref() == Some(&plan)
    });
    assert!(h.state().live.bundle.is_none());
}

#[test]
fn a_100_mb_model_loads_on_a_worker_while_the_window_keeps_drawing() {
    let tmp = tempfile::tempdir().unwrap();
    // seed-cnn on 1120x1120 images: its fc layer holds 32·280·280·10 = 25.1 M weights.
    let graph = qatlas::zoo::Arch::SeedCnn
        .build([1, 1120, 1120], 10, 0)
        .unwrap();
    let model = qatlas::io::Model {
        graph,
        meta: qatlas::io::ModelMeta {
            normalization: qatlas::data::Normalization::mnist(),
            class_names: Vec::new(),
            arch: Some("seed-cnn".into()),
            train_config: None,
            history: None,
            command: None,
            qat: None,
        },
    };
    let path = tmp.path().join("big.safetensors");
    qatlas::io::save_model(&model, &path).unwrap();
    let bytes = std::fs::metadata(&path).unwrap().len();
    assert!(bytes > 100_000_000, "{bytes} bytes");
    let mut h = harness();
    step_until(&mut h, "the default plan", settled);
    send(&mut h, Command::OpenModel(path.clone()));
    // Every frame while the file is read and summarised is a frame the window drew: a UI
    // thread that loaded the model itself would have it at the first frame.
    let mut frames = 0;
    let deadline = Instant::now() + Duration::from_secs(240);
    while h.state().live.model.as_ref().and_then(|v| v.path()) != Some(path.as_path()) {
        assert!(Instant::now() < deadline, "timed out loading the big model");
        h.step();
        frames += 1;
        std::thread::sleep(Duration::from_millis(5));
    }
    assert!(
        frames >= 3,
        "only {frames} frames while loading {bytes} bytes"
    );
    let view = h.state().live.model.clone().unwrap();
    assert_eq!(
        view.model.graph.num_trainable(),
        model.graph.num_trainable()
    );
    eprintln!(
        "{bytes} bytes loaded while {frames} frames were drawn (frame p99 {:?} ms)",
        h.state().frame_times.p99_ms()
    );
}

#[test]
fn the_search_tab_runs_a_search_and_a_front_plan_becomes_the_current_plan() {
    let mut h = harness();
    step_until(&mut h, "the default plan", settled);
    use egui_kittest::kittest::Queryable;
    h.get_by_label("Search").click();
    h.run_steps(2);
    h.state_mut().state.search.form.budget_s = 60.0;
    h.get_by_label("Run search").click();
    h.step();
    step_until(&mut h, "the search", |a| {
        a.ws.search.report.is_some() && !a.plan_busy().search
    });
    let r = h.state().ws.search.report.clone().unwrap();
    assert!(r.constraint_met, "{:?}", r.best());
    let chosen = r.chosen;
    assert!(r.tried[chosen].on_front);
    // The front table offers the chosen plan (the button may lie below the visible part of
    // the tab, so its command is sent as the button sends it).
    h.get_by_label(&format!("Use plan {chosen}"));
    send(&mut h, Command::Plan(PlanCommand::UseSearched(chosen)));
    let plan = h.state().ws.plan.clone().unwrap();
    for (n, p) in &r.tried[chosen].layers {
        assert_eq!(plan.layer(n).unwrap().precision, *p, "{n}");
    }
    step_until(&mut h, "the chosen plan's evaluation", settled);
    // The what-if of the current plan (same images) gives the search's figure.
    let ev = h.state().ws.current_eval().unwrap();
    assert_eq!(
        ev.eval.comparison.quantized_accuracy,
        r.tried[chosen].accuracy
    );
    assert_eq!(ev.eval.size.bytes, r.tried[chosen].weight_bytes);

    // Resume with a looser drop: the evaluated plans are kept, not evaluated again, and the
    // chosen plan is no larger.
    h.state_mut().state.search.form.max_drop_pp = 1.0;
    h.run_steps(2);
    h.get_by_label("Resume").click();
    h.step();
    step_until(&mut h, "the resumed search", |a| {
        a.ws.search.report.is_some() && !a.plan_busy().search
    });
    let r2 = h.state().ws.search.report.clone().unwrap();
    assert_eq!(r2.resumed_plans, r.tried.len());
    assert!(r2.tried.len() >= r.tried.len());
    assert!(r2.best().weight_bytes <= r.best().weight_bytes);

    // The verdict's QAT button makes the chosen plan current and opens QAT set to train it.
    h.get_by_label("Fine-tune with QAT…").click();
    h.run_steps(2);
    let app = h.state();
    assert_eq!(app.state.central, qatlas::app::studio::CentralTab::Qat);
    assert_eq!(
        app.state.qat.precision,
        qatlas::jobs::qat_request::QatPrecision::Plan
    );
    let plan = app.ws.plan.clone().unwrap();
    for (n, p) in &r2.best().layers {
        assert_eq!(plan.layer(n).unwrap().precision, *p, "{n}");
    }
}
