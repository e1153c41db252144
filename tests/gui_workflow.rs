//! The studio's quantization workflow driven through its widgets with egui_kittest: the real
//! app (built-in pretrained seed-cnn and MNIST) is built in a headless harness and acted on by
//! role and label, as a user would. Each test compares what the window shows with the numbers
//! the library computes itself for the same plan and data: the what-if after changing a
//! layer's precision, a sensitivity sweep on 200 images, Calibrate and its SQNR table, the
//! histogram range of a selected layer, and an ONNX model with a normalisation preset.
#![cfg(feature = "gui")]

use egui_kittest::Harness;
use egui_kittest::kittest::Queryable;
use qatlas::analysis::compare::compare;
use qatlas::app::StudioApp;
use qatlas::app::format;
use qatlas::cli::common::{GuiArgs, default_data_dir};
use qatlas::data::{Dataset, Loader, Normalization, Split, load_split};
use qatlas::io::load_any;
use qatlas::quant::plan::{Precision, QuantPlan};
use qatlas::quant::ptq;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::{Duration, Instant};

fn harness(model: Option<std::path::PathBuf>) -> Harness<'static, StudioApp> {
    // The workers' waker has nothing to wake: the tests step the harness themselves.
    let app = StudioApp::new(GuiArgs { model, data: None }, Arc::new(|| {}));
    Harness::builder()
        .with_size([1280.0, 800.0])
        .with_max_steps(1_000_000)
        .build_ui_state(|ui, app: &mut StudioApp| app.frame(ui), app)
}

/// Steps the harness (real time passes for the workers) until `done` holds.
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

fn split(s: Split, n: usize) -> Dataset {
    load_split(&default_data_dir(), s).unwrap().limit(n)
}

/// The library's own accuracy of `plan` on the pretrained model: calibrated on the first
/// 1000 training images (batches of 256, as the studio), measured on the first 1000 test images.
fn library_accuracy(plan: &QuantPlan) -> (f64, f64) {
    let m = load_any(&qatlas::cli::common::default_model()).unwrap();
    let norm = m.meta.normalization.clone();
    let calib = split(Split::Train, 1000);
    let test = split(Split::Test, 1000);
    let batches = Loader::new(&calib, &norm, 256, None, false).map(|(x, _)| x);
    let stop = AtomicBool::new(false);
    let res = ptq(&m.graph, plan, batches, &stop, &mut |_| {}).unwrap();
    let c = compare(
        &res.folded,
        &res.points,
        &res.prepared,
        &test,
        &norm,
        250,
        &stop,
    )
    .unwrap();
    (c.float_accuracy, c.quantized_accuracy)
}

fn evaluated(a: &StudioApp) -> bool {
    a.ws.current_eval().is_some() && !a.ws.is_evaluating()
}

/// Evaluated, and the follow-up latency / integer-runtime results are in (the layout no longer
/// moves under the pointer).
fn settled(a: &StudioApp) -> bool {
    evaluated(a) && !a.plan_busy().latency && a.ws.integer.is_some()
}

/// Opens the combo box named `combo` and picks `item` (the popup opens on the next frames).
fn choose(h: &mut Harness<'_, StudioApp>, combo: &str, item: &str) {
    h.get_by_label(combo).click();
    h.run_steps(3);
    let rect = h.get_by_label(combo).rect();
    assert!(
        h.query_by_label(item).is_some(),
        "the {combo} selector (at {rect:?}) did not open or does not offer {item}"
    );
    h.get_by_label(item).click();
    h.run_steps(2);
}

#[test]
fn changing_a_layers_precision_updates_the_summary_to_the_librarys_numbers() {
    let mut h = harness(None);
    step_until(&mut h, "the default plan's evaluation", settled);
    // The layers table keeps its starting width (~45 % of the window) once the model is in:
    // it once shrank to its minimum when the first frames were drawn before the model loaded,
    // hiding the precision selectors under the centre panel.
    let tabs_x = h.get_by_label("Histograms").rect().min.x;
    assert!(tabs_x > 500.0, "the centre panel starts at x = {tabs_x}");
    let plan = h.state().ws.plan.clone().unwrap();
    let (float, int8) = library_accuracy(&plan);
    let c = &h.state().ws.current_eval().unwrap().eval.comparison;
    assert_eq!((c.float_accuracy, c.quantized_accuracy), (float, int8));
    assert_eq!(c.images, 1000);
    // The summary's plan value: "98.30 % (-0.20 pp)".
    h.get_by_label_contains(&format!("{} (", format::percent(int8)));
    let bytes_int8 = h.state().ws.current_eval().unwrap().eval.size.bytes;

    // conv2's weights to int4, through its selector in the layers table.
    choose(&mut h, "conv2 weights", "int4");
    assert_eq!(
        h.state().ws.layer_plan("conv2").unwrap().precision,
        Precision::Int4
    );
    step_until(&mut h, "the edited plan's evaluation", evaluated);
    let mut want = plan.clone();
    want.layer_mut("conv2").unwrap().precision = Precision::Int4;
    let (_, w4) = library_accuracy(&want);
    let ev = h.state().ws.current_eval().unwrap();
    assert_eq!(ev.eval.comparison.quantized_accuracy, w4);
    // conv2 holds 4608 of the 13.5k int8 weight bytes: int4 halves them.
    let bytes_w4 = ev.eval.size.bytes;
    assert_eq!(bytes_int8 - bytes_w4, 32 * 16 * 9 / 2);
    h.get_by_label_contains(&format!("{} (", format::percent(w4)));
    assert!(h.state().ws.whatif_seconds.len() >= 2);
}

#[test]
fn a_sensitivity_sweep_fills_one_row_per_layer_and_calibrate_shows_the_sqnr_table() {
    let mut h = harness(None);
    step_until(&mut h, "the default plan's evaluation", settled);
    h.get_by_label("Sensitivity").click();
    h.step();
    h.state_mut().state.sensitivity.form.samples = 200;
    h.get_by_label("Run sweep").click();
    h.step();
    step_until(&mut h, "the sweep", |a| {
        a.ws.sweep.settings.is_some() && !a.plan_busy().sweep && !a.ws.sweep.rows.is_empty()
    });
    let ws = &h.state().ws;
    assert!(ws.sweep.error.is_none(), "{:?}", ws.sweep.error);
    assert_eq!(ws.sweep.rows.len(), 3, "one row per layer");
    let drops: Vec<f64> = ["conv1", "conv2", "fc"]
        .iter()
        .map(|l| ws.sweep.rows[*l].only_drop_pp.unwrap())
        .collect();
    // The layers table shows each drop (equal drops share a label text).
    for d in &drops {
        let text = format!("{d:.2}");
        let want = drops.iter().filter(|x| format!("{x:.2}") == text).count();
        assert!(h.query_all_by_label(&text).count() >= want, "{text} shown");
    }

    h.get_by_label("Calibration").click();
    h.step();
    h.get_by_label("Calibrate").click();
    h.step();
    step_until(&mut h, "calibration", evaluated);
    let c = h.state().ws.current_eval().unwrap().eval.comparison.clone();
    assert_eq!(c.layers.len(), 3);
    for l in &c.layers {
        let sqnr = l.sqnr_db.expect("every int8 layer has an SQNR");
        assert!(sqnr > 10.0, "{}: {sqnr} dB", l.layer);
        // In the Calibration table (and the layers table's SQNR column).
        assert!(h.query_all_by_label(&format!("{sqnr:.1}")).count() >= 1);
    }
}

#[test]
fn a_selected_layers_histogram_shows_the_plans_range() {
    let mut h = harness(None);
    step_until(&mut h, "the default plan's evaluation", settled);
    h.get_by_label("fc").click();
    h.run_steps(2);
    assert_eq!(h.state().ws.selected.as_deref(), Some("fc"));
    h.get_by_label("Histograms").click();
    h.step();
    let ev = h.state().ws.current_eval().unwrap();
    let r = ev
        .eval
        .ptq
        .plan
        .ranges
        .iter()
        .find(|r| r.point == "fc.fq")
        .or_else(|| {
            ev.eval
                .ptq
                .plan
                .ranges
                .iter()
                .find(|r| r.point.starts_with("fc") && !r.point.contains("weight"))
        })
        .expect("fc's output range")
        .clone();
    h.get_by_label_contains(&format!("range [{:.4}, {:.4}]", r.min[0], r.max[0]));
}

#[test]
fn an_onnx_model_with_the_mnist_preset_evaluates_as_the_cli_does() {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/onnx/seed_cnn_mnist.onnx");
    let mut h = harness(Some(path.clone()));
    step_until(&mut h, "the ONNX model", |a| {
        a.live.model.is_some() && a.live.data.test.ready().is_some()
    });
    h.get_by_label("Model & data").click();
    h.step();
    h.get_by_label("MNIST").click();
    step_until(&mut h, "the renormalised model", |a| {
        a.live
            .model
            .as_ref()
            .is_some_and(|v| v.model.meta.normalization == Normalization::mnist())
    });
    h.get_by_label("Evaluate float model on the test split")
        .click();
    step_until(&mut h, "the evaluation", |a| {
        a.live.current_eval().is_some()
    });
    let m = load_any(&path).unwrap();
    let test = load_split(&default_data_dir(), Split::Test).unwrap();
    let want = qatlas::train::evaluate(&m.graph, &test, &Normalization::mnist(), 256).unwrap();
    let got = h.state().live.current_eval().unwrap().accuracy;
    assert_eq!(got, want.accuracy);
    assert!(got > 0.98, "{got}");
    h.get_by_label_contains(&format!("accuracy {}", format::percent(got)));
}

#[test]
fn export_writes_the_plan_and_shows_the_accuracy_of_the_file_read_back() {
    let dir = tempfile::tempdir().unwrap();
    let mut h = harness(None);
    step_until(&mut h, "the default plan's evaluation", settled);
    let (sim, images) = {
        let c = &h.state().ws.current_eval().unwrap().eval.comparison;
        (c.quantized_accuracy, c.images)
    };
    let integer = match &h.state().ws.integer.as_ref().unwrap().value {
        Ok(v) => *v,
        Err(e) => panic!("{e}"),
    };
    h.get_by_label("Export").click();
    h.run_steps(2);
    for (label, file) in [
        ("integer bundle (qatlas runtime)", "seed.int.safetensors"),
        ("QDQ ONNX (ONNX Runtime, TensorRT, ...)", "seed_qdq.onnx"),
    ] {
        choose(&mut h, "Export format", label);
        let path = dir.path().join(file);
        h.state_mut().state.export.path = path.display().to_string();
        h.run_steps(2);
        h.get_by_label("Export to the typed path").click();
        h.run_steps(2);
        step_until(&mut h, "the export", |a| {
            a.live.export.job.is_none()
                && a.live
                    .export
                    .last
                    .as_ref()
                    .is_some_and(|d| d.result.as_ref().map_or(true, |r| r.path == path))
        });
        let done = h.state().live.export.last.as_ref().unwrap();
        let r = done.result.as_ref().unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(r.bytes, std::fs::metadata(&path).unwrap().len());
        assert_eq!(done.simulated, Some(sim));
        let (acc, n) = r.accuracy.unwrap();
        assert_eq!(n, images);
        // Read back independently of the studio: the same accuracy on the same images.
        let test = split(Split::Test, images);
        let norm = Normalization::mnist();
        let again = if file.ends_with(".onnx") {
            let m = load_any(&path).unwrap();
            qatlas::train::evaluate(&m.graph, &test, &m.meta.normalization, 250)
                .unwrap()
                .accuracy
        } else {
            let m = qatlas::runtime::IntModel::load(&path).unwrap();
            // The bundle is the plan on the integer runtime: the summary's integer accuracy.
            assert_eq!((acc, n), integer);
            qatlas::runtime::eval::evaluate(&m, &test, &norm, 250)
                .unwrap()
                .accuracy
        };
        assert_eq!(acc, again, "{file}");
        // int8 seed-cnn: the file is within 0.2 pp of the simulation and 3x smaller than f32.
        assert!((acc - sim).abs() <= 0.002, "{file}: {acc} vs {sim}");
        assert!(r.compression() > 3.0, "{file}: {}", r.compression());
        h.get_by_label_contains(&format!("{} on {n} test images", format::percent(acc)));
    }
}
