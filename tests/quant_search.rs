//! Automatic mixed precision on real MNIST and the pretrained seed-cnn: the search keeps its
//! promise (the chosen plan is within the drop it was given, its front undominated, its
//! figures the library's own for that plan), honours pinned layers, reports when nothing meets
//! the constraint, and `qatlas search --out` writes a plan that `convert` accepts.

use qatlas::analysis::compare::compare;
use qatlas::analysis::search::{Objective, SearchConfig, SearchData, SearchEvent, search};
use qatlas::cli::common::{default_data_dir, default_model};
use qatlas::data::{Loader, Split, load_split};
use qatlas::io::load_any;
use qatlas::quant::plan::{Precision, QuantPlan};
use qatlas::quant::ptq;
use std::sync::atomic::AtomicBool;
use std::time::Duration;

/// The pretrained seed-cnn, its int8 plan, and the first `n` training and test images.
fn setup(
    n: usize,
) -> (
    qatlas::io::Model,
    QuantPlan,
    qatlas::data::Dataset,
    qatlas::data::Dataset,
) {
    let m = load_any(&default_model()).unwrap();
    let base = QuantPlan::default_for(&m.graph, Precision::Int8);
    let calib = load_split(&default_data_dir(), Split::Train)
        .unwrap()
        .limit(n);
    let eval = load_split(&default_data_dir(), Split::Test)
        .unwrap()
        .limit(n);
    (m, base, calib, eval)
}

fn quick(max_drop_pp: f64) -> SearchConfig {
    SearchConfig {
        max_drop_pp,
        calib_samples: 500,
        eval_samples: 500,
        budget: Duration::from_secs(120),
        latency: qatlas::bench::latency::LatencyConfig {
            batch: 1,
            repeats: 3,
            min_seconds: 0.0,
        },
        ..SearchConfig::default()
    }
}

#[test]
fn the_chosen_plan_is_within_the_drop_smaller_than_int8_and_measured_as_the_library_measures_it() {
    let (m, base, calib, eval) = setup(500);
    let norm = m.meta.normalization.clone();
    let d = SearchData {
        model: &m.graph,
        base: &base,
        calib: &calib,
        eval: &eval,
        norm: &norm,
        resume: None,
    };
    let mut events = 0;
    let r = search(&d, &quick(0.3), &AtomicBool::new(false), &mut |e| {
        if matches!(e, SearchEvent::Tried { .. }) {
            events += 1;
        }
    })
    .unwrap();
    assert_eq!(events + 1, r.tried.len());
    assert!(r.constraint_met);
    let best = r.best();
    assert!(best.drop_pp <= 0.3, "{best:?}");
    // int8 everywhere is ~4x; the search must do clearly better (the issue asks for >= 6x).
    let ratio = r.float_bytes as f64 / best.weight_bytes as f64;
    assert!(
        ratio >= 6.0,
        "{ratio:.2}x ({} of {} bytes)",
        best.weight_bytes,
        r.float_bytes
    );
    assert!(best.weight_bytes < r.int8.weight_bytes);
    // The front: no plan dominates a front plan.
    for f in r.tried.iter().filter(|c| c.on_front) {
        assert!(!r.tried.iter().any(|o| o.accuracy > f.accuracy
            && o.weight_bytes < f.weight_bytes
            && o.latency_est_us < f.latency_est_us));
    }
    // The library's own accuracy for the chosen precisions (calibration batches of 256).
    let mut plan = base.clone();
    for (n, p) in &best.layers {
        plan.layer_mut(n).unwrap().precision = *p;
    }
    let stop = AtomicBool::new(false);
    let batches = Loader::new(&calib, &norm, 256, None, false).map(|(x, _)| x);
    let res = ptq(&m.graph, &plan, batches, &stop, &mut |_| {}).unwrap();
    let c = compare(
        &res.folded,
        &res.points,
        &res.prepared,
        &eval,
        &norm,
        250,
        &stop,
    )
    .unwrap();
    assert_eq!(c.quantized_accuracy, best.accuracy);
    assert!(r.chosen_latency.as_ref().is_some_and(|l| l.int_us > 0.0));

    // A pinned layer keeps its precision in every plan tried.
    let mut cfg = quick(0.3);
    cfg.pinned.insert("fc".into(), Precision::Fp16);
    let r = search(&d, &cfg, &AtomicBool::new(false), &mut |_| {}).unwrap();
    assert!(r.tried.iter().all(|c| {
        c.layers
            .iter()
            .any(|(n, p)| n == "fc" && *p == Precision::Fp16)
    }));

    // An impossible constraint still gives a plan, and says so.
    let mut cfg = quick(-1.0);
    cfg.objective = Objective::Latency;
    let r = search(&d, &cfg, &AtomicBool::new(false), &mut |_| {}).unwrap();
    assert!(!r.constraint_met);
    let most = r.tried.iter().map(|c| c.accuracy).fold(0.0, f64::max);
    assert_eq!(r.best().accuracy, most);
}

#[test]
fn the_cli_writes_a_plan_that_convert_accepts() {
    let tmp = tempfile::tempdir().unwrap();
    let plan = tmp.path().join("mixed.ron");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_qatlas"))
        .args([
            "search",
            "--json",
            "--budget",
            "60s",
            "--samples",
            "300",
            "--calib-samples",
            "300",
            "--qat-epochs",
            "1",
            "--qat-limit",
            "2000",
            "--out",
        ])
        .arg(&plan)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(v["constraint_met"].as_bool().unwrap(), "{v}");
    // The summary restates the chosen plan and the two latency runs.
    let s = &v["summary"];
    let c = &v["tried"][v["chosen"].as_u64().unwrap() as usize];
    assert_eq!(s["weight_bytes"], c["weight_bytes"]);
    assert_eq!(s["accuracy"], c["accuracy"]);
    let ratio = v["float_bytes"].as_f64().unwrap() / c["weight_bytes"].as_f64().unwrap();
    assert!((s["size_ratio_vs_float"].as_f64().unwrap() - ratio).abs() < 1e-9);
    assert!(ratio > 3.5, "{s}");
    let lat = s["latency_us"].as_f64().unwrap();
    assert_eq!(lat, v["chosen_latency"]["int_us"].as_f64().unwrap());
    // Each speed-up is against the float model timed in the same run.
    let c_ratio = v["chosen_latency"]["float_us"].as_f64().unwrap() / lat;
    let i_ratio = v["int8_latency"]["float_us"].as_f64().unwrap()
        / v["int8_latency"]["int_us"].as_f64().unwrap();
    let vs8 = c_ratio / i_ratio;
    assert!((s["speedup_vs_int8"].as_f64().unwrap() - vs8).abs() < 1e-9);
    let front = s["front"].as_array().unwrap();
    assert!(front.iter().any(|i| i == &v["chosen"]), "{s}");
    for i in front {
        assert!(
            v["tried"][i.as_u64().unwrap() as usize]["on_front"]
                .as_bool()
                .unwrap()
        );
    }
    // The short QAT of the chosen plan: measured before and after on the same images.
    let q = &v["qat"];
    let chosen = v["chosen"].as_u64().unwrap() as usize;
    let before = q["before"].as_f64().unwrap();
    assert_eq!(before, v["tried"][chosen]["accuracy"].as_f64().unwrap());
    assert_eq!(q["train_images"].as_u64(), Some(2000));
    // QAT starts from the searched plan's own ranges: same accuracy at the start.
    assert!((q["start"].as_f64().unwrap() - before).abs() < 0.005, "{q}");
    let after = q["after"].as_f64().unwrap();
    assert!(after > before - 0.01, "{q}");
    let drop = q["drop_pp_after"].as_f64().unwrap();
    let float = v["float_accuracy"].as_f64().unwrap();
    assert!((drop - (float - after) * 100.0).abs() < 1e-9);
    let back = QuantPlan::load(&plan, None).unwrap();
    assert!(!back.ranges.is_empty());
    let bundle = tmp.path().join("mixed.int.safetensors");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_qatlas"))
        .args(["convert", "--plan"])
        .arg(&plan)
        .arg("--out")
        .arg(&bundle)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(bundle.is_file());
    let bad = std::process::Command::new(env!("CARGO_BIN_EXE_qatlas"))
        .args(["search", "--budget", "soon"])
        .output()
        .unwrap();
    assert_eq!(bad.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&bad.stderr).contains("--budget"));
}

#[test]
fn a_resumed_search_keeps_its_plans_and_ends_where_an_uninterrupted_one_ends() {
    let (m, base, calib, eval) = setup(300);
    let norm = m.meta.normalization.clone();
    let mut d = SearchData {
        model: &m.graph,
        base: &base,
        calib: &calib,
        eval: &eval,
        norm: &norm,
        resume: None,
    };
    let mut cfg = quick(0.3);
    cfg.calib_samples = 300;
    cfg.eval_samples = 300;
    let full = search(&d, &cfg, &AtomicBool::new(false), &mut |_| {}).unwrap();
    assert!(!full.stopped_early);
    // Stopped after three new plans, as Stop or a short budget would.
    let stop = AtomicBool::new(false);
    let mut n = 0;
    let first = search(&d, &cfg, &stop, &mut |e| {
        if matches!(e, SearchEvent::Tried { .. }) {
            n += 1;
            if n == 3 {
                stop.store(true, std::sync::atomic::Ordering::Relaxed);
            }
        }
    })
    .unwrap();
    assert!(first.stopped_early);
    assert_eq!(first.tried.len(), 4);
    assert!(first.memory.fits(&base, &cfg));
    let mut other = cfg.clone();
    other.eval_samples = 200;
    assert!(!first.memory.fits(&base, &other));
    d.resume = Some(&first.memory);
    let mut resumed_from = 0;
    let mut new = 0;
    let second = search(&d, &cfg, &AtomicBool::new(false), &mut |e| match e {
        SearchEvent::Resumed { tried, .. } => resumed_from = tried.len(),
        SearchEvent::Tried { .. } => new += 1,
        SearchEvent::Baseline { .. } => panic!("a resumed search re-measured its baseline"),
    })
    .unwrap();
    assert_eq!(resumed_from, 4);
    assert_eq!(second.resumed_plans, 4);
    // Nothing is evaluated twice: the two runs together evaluated what one run did.
    assert_eq!(4 + new, full.tried.len());
    assert_eq!(second.tried.len(), full.tried.len());
    for (a, b) in second.tried.iter().zip(&full.tried) {
        assert_eq!(a.layers, b.layers);
        assert_eq!(a.accuracy, b.accuracy);
        assert_eq!(a.weight_bytes, b.weight_bytes);
    }
    assert_eq!(second.best().layers, full.best().layers);
    // A looser drop resumed from the finished search finds a plan at least as small.
    d.resume = Some(&full.memory);
    let mut loose = cfg.clone();
    loose.max_drop_pp = 1.0;
    let third = search(&d, &loose, &AtomicBool::new(false), &mut |_| {}).unwrap();
    assert_eq!(third.resumed_plans, full.tried.len());
    assert!(third.best().weight_bytes <= full.best().weight_bytes);
    assert!(third.best().drop_pp <= 1.0 + 1e-9);
}
