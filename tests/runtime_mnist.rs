//! Simulation equals deployment on real MNIST with the pretrained seed-cnn: PTQ (1,000
//! calibration images), convert the fake-quant model to the integer runtime, and run both on the
//! 10,000 test images. Accuracies must differ by at most 0.1 percentage point; the agreement of
//! argmaxes and of the (dequantized) logits is printed and bounded. Covers int8, W4A8 (int4
//! weights packed two per byte), a mixed plan (fp16 / int8 / fp32 layers) and both
//! requantization modes; a saved bundle reloads to the same outputs.

use qatlas::data::{Dataset, Loader, Normalization, Split, load_split};
use qatlas::graph::Graph;
use qatlas::io::load_model;
use qatlas::quant::plan::{Precision, QuantPlan};
use qatlas::quant::ptq;
use qatlas::runtime::{ConvertOptions, IntModel, Requantization, WeightStorage};
use std::path::PathBuf;
use std::sync::atomic::AtomicBool;

fn assets() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("assets")
}

struct Setup {
    graph: Graph,
    norm: Normalization,
    calib: Dataset,
    test: Dataset,
}

fn setup() -> Setup {
    let model = load_model(&assets().join("seed_cnn_mnist.safetensors")).unwrap();
    let calib = load_split(&assets().join("mnist"), Split::Train)
        .unwrap()
        .limit(1000);
    let test = load_split(&assets().join("mnist"), Split::Test).unwrap();
    Setup {
        graph: model.graph,
        norm: model.meta.normalization,
        calib,
        test,
    }
}

fn fake_quant(s: &Setup, plan: &QuantPlan) -> Graph {
    let batches = Loader::new(&s.calib, &s.norm, 250, None, false).map(|(x, _)| x);
    ptq(
        &s.graph,
        plan,
        batches,
        &AtomicBool::new(false),
        &mut |_| {},
    )
    .unwrap()
    .prepared
    .graph
}

#[derive(Debug)]
struct Agreement {
    images: usize,
    sim_accuracy: f64,
    int_accuracy: f64,
    argmax_agree: usize,
    logits_equal: usize,
    logits: usize,
    max_abs_diff: f32,
}

fn argmax(row: &[f32]) -> usize {
    let mut best = 0;
    for (i, &v) in row.iter().enumerate() {
        if v > row[best] {
            best = i;
        }
    }
    best
}

fn compare(s: &Setup, sim: &Graph, m: &IntModel) -> Agreement {
    let mut a = Agreement {
        images: 0,
        sim_accuracy: 0.0,
        int_accuracy: 0.0,
        argmax_agree: 0,
        logits_equal: 0,
        logits: 0,
        max_abs_diff: 0.0,
    };
    let (mut cs, mut ci) = (0usize, 0usize);
    for (x, y) in Loader::new(&s.test, &s.norm, 500, None, false) {
        let ls = sim.infer(&x).unwrap();
        let li = m.infer(&x).unwrap();
        assert_eq!(ls.shape(), li.shape());
        let k = ls.shape()[1];
        let (ls, li) = (ls.as_slice().unwrap(), li.as_slice().unwrap());
        for (i, &label) in y.iter().enumerate() {
            let (rs, ri) = (&ls[i * k..(i + 1) * k], &li[i * k..(i + 1) * k]);
            let (ps, pi) = (argmax(rs), argmax(ri));
            cs += (ps == label as usize) as usize;
            ci += (pi == label as usize) as usize;
            a.argmax_agree += (ps == pi) as usize;
            for (u, v) in rs.iter().zip(ri) {
                a.logits_equal += (u == v) as usize;
                a.max_abs_diff = a.max_abs_diff.max((u - v).abs());
            }
            a.logits += k;
        }
        a.images += y.len();
    }
    a.sim_accuracy = cs as f64 / a.images as f64;
    a.int_accuracy = ci as f64 / a.images as f64;
    a
}

fn check(name: &str, a: &Agreement, min_argmax: f64, min_logits: f64) {
    eprintln!(
        "{name}: simulation {:.2}%, integer {:.2}% ({:+.2} pp) on {} images; argmax agree {} ({:.3}%), logits equal {} of {} ({:.2}%), max |diff| {:.4}",
        a.sim_accuracy * 100.0,
        a.int_accuracy * 100.0,
        (a.int_accuracy - a.sim_accuracy) * 100.0,
        a.images,
        a.argmax_agree,
        a.argmax_agree as f64 * 100.0 / a.images as f64,
        a.logits_equal,
        a.logits,
        a.logits_equal as f64 * 100.0 / a.logits as f64,
        a.max_abs_diff
    );
    assert_eq!(a.images, 10_000);
    assert!(
        (a.sim_accuracy - a.int_accuracy).abs() <= 0.001 + 1e-12,
        "{name}: accuracy differs by more than 0.1 pp: {a:?}"
    );
    assert!(
        a.argmax_agree as f64 >= min_argmax * a.images as f64,
        "{name}: {a:?}"
    );
    assert!(
        a.logits_equal as f64 >= min_logits * a.logits as f64,
        "{name}: {a:?}"
    );
}

#[test]
fn int8_seed_cnn_integer_runtime_matches_simulation() {
    let s = setup();
    let plan = QuantPlan::default_for(&s.graph, Precision::Int8);
    let sim = fake_quant(&s, &plan);
    for mode in [Requantization::FixedPoint, Requantization::Float] {
        let opts = ConvertOptions {
            requantization: mode,
            normalization: s.norm.clone(),
            class_names: vec![],
        };
        let m = IntModel::convert(&sim, &opts).unwrap();
        let layers = m.layers();
        assert!(
            layers
                .iter()
                .all(|l| l.compute == "int" && l.storage == WeightStorage::S8)
        );
        let a = compare(&s, &sim, &m);
        check(&format!("int8 {mode:?}"), &a, 0.999, 0.95);
        assert!(a.sim_accuracy > 0.98);
    }
}

#[test]
fn w4a8_seed_cnn_uses_packed_int4_and_matches_simulation() {
    let s = setup();
    let plan = QuantPlan::default_for(&s.graph, Precision::Int4);
    let sim = fake_quant(&s, &plan);
    let m = IntModel::convert(&sim, &ConvertOptions::default()).unwrap();
    for l in m.layers() {
        assert_eq!(l.storage, WeightStorage::Int4 { signed: true }, "{l:?}");
        assert_eq!(l.compute, "int");
    }
    // fc: 10 x 6272 int4 weights in 31,360 bytes.
    let fc = m.layers().into_iter().find(|l| l.name == "fc").unwrap();
    assert_eq!(fc.weight_bytes, 31_360);
    let a = compare(&s, &sim, &m);
    check("W4A8", &a, 0.999, 0.95);
}

/// Learned rounding (AdaRound + bias correction) of seed-cnn at W4A8 on 256 calibration
/// images: every layer's output error on its patches falls below nearest rounding's, the
/// weights sit on their grids, the logits move closer to the float model's on the test set,
/// and the integer runtime still computes exactly what the simulation does.
#[test]
fn w4a8_learned_rounding_beats_nearest_and_converts_exactly() {
    use qatlas::quant::adaround::{AdaRoundOptions, adaround};
    let s = setup();
    let plan = QuantPlan::default_for(&s.graph, Precision::Int4);
    let batches: Vec<_> = Loader::new(&s.calib.first(256), &s.norm, 128, None, false)
        .map(|(x, _)| x)
        .collect();
    let res = ptq(
        &s.graph,
        &plan,
        batches.clone(),
        &AtomicBool::new(false),
        &mut |_| {},
    )
    .unwrap();
    let nearest = res.prepared.graph.clone();
    let mut learned = res.prepared.graph.clone();
    let opts = AdaRoundOptions::default();
    let layers = adaround(
        &res.folded,
        &mut learned,
        &batches,
        &opts,
        &AtomicBool::new(false),
        &mut |_, _| {},
    )
    .unwrap();
    assert_eq!(layers.len(), 3);
    for l in &layers {
        eprintln!("{l:?}");
        assert!(l.relative_error < 0.95, "{l:?}");
        assert!(l.flipped > 0 && l.flipped < l.weights / 2, "{l:?}");
    }
    // Weights on the grid: the quantizer leaves them as they are.
    for n in learned
        .nodes
        .iter()
        .filter(|n| matches!(n.op, qatlas::ops::OpKind::FakeQuant(_)))
    {
        let Some(wp) = learned.param_of(n.inputs[0]) else {
            continue;
        };
        let w = &learned.params[wp].tensor;
        let y = qatlas::quant::oscillation::param_value(&learned, n.output).unwrap();
        let d = (&y - w)
            .mapv(f32::abs)
            .iter()
            .fold(0.0f32, |a, &b| a.max(b));
        assert!(d < 1e-6, "{}: weights off the grid by {d}", n.name);
    }
    // Closer to the float logits on 2,000 test images.
    let mse = |g: &Graph| {
        let (mut e, mut n) = (0.0f64, 0usize);
        for (x, _) in Loader::new(&s.test.first(2000), &s.norm, 500, None, false) {
            let (a, b) = (s.graph.infer(&x).unwrap(), g.infer(&x).unwrap());
            e += (&a - &b).mapv(|v| f64::from(v * v)).sum();
            n += a.len();
        }
        e / n as f64
    };
    let (m_near, m_learned) = (mse(&nearest), mse(&learned));
    eprintln!("logits MSE vs float: nearest {m_near:.5}, learned {m_learned:.5}");
    assert!(m_learned < 0.8 * m_near, "{m_learned} vs {m_near}");
    let m = IntModel::convert(&learned, &ConvertOptions::default()).unwrap();
    let a = compare(&s, &learned, &m);
    check("W4A8 learned rounding", &a, 0.999, 0.95);
}

#[test]
fn mixed_fp16_int8_fp32_plan_matches_simulation_and_reloads() {
    let s = setup();
    let mut plan = QuantPlan::default_for(&s.graph, Precision::Int8);
    for l in &mut plan.layers {
        l.precision = match l.layer.as_str() {
            "conv1" => Precision::Fp16,
            "fc" => Precision::Fp32,
            _ => Precision::Int8,
        };
    }
    let sim = fake_quant(&s, &plan);
    let m = IntModel::convert(&sim, &ConvertOptions::default()).unwrap();
    let by: Vec<(String, WeightStorage, &str)> = m
        .layers()
        .into_iter()
        .map(|l| (l.name, l.storage, l.compute))
        .collect();
    assert_eq!(
        by,
        vec![
            ("conv1".to_string(), WeightStorage::F16, "float"),
            ("conv2".to_string(), WeightStorage::S8, "int"),
            ("fc".to_string(), WeightStorage::F32, "float"),
        ]
    );
    let a = compare(&s, &sim, &m);
    // The last layer computes in f32 with its own summation order: logits agree closely but
    // not bit for bit.
    check("mixed fp16/int8/fp32", &a, 0.999, 0.0);
    assert!(a.max_abs_diff < 0.05, "{a:?}");
    // Save and reload: identical outputs.
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("mixed.qat.safetensors");
    m.save(&p).unwrap();
    let back = IntModel::load(&p).unwrap();
    let x = Loader::new(&s.test, &s.norm, 100, None, false)
        .next()
        .unwrap()
        .0;
    assert_eq!(m.infer(&x).unwrap(), back.infer(&x).unwrap());
}

/// The runtime tests above run on the kernel path this CPU picks; this one runs them again in
/// child processes with `QATLAS_KERNEL` forcing each other path the CPU has (portable always,
/// avx2 / avxvnni / avx512vnni where present), so every path runs real models end to end, and
/// says which did (straight to stderr, which libtest does not capture).
#[test]
fn runtime_tests_pass_on_every_kernel_path() {
    use qatlas::kernels::int8::KernelPath;
    use std::io::Write;
    if std::env::var_os(qatlas::kernels::int8::KERNEL_ENV).is_some() {
        return; // a child: the path is already forced
    }
    let exe = std::env::current_exe().unwrap();
    let mut ran = Vec::new();
    for p in KernelPath::ALL {
        if p.missing().is_some() {
            continue;
        }
        let o = std::process::Command::new(&exe)
            .env(qatlas::kernels::int8::KERNEL_ENV, p.name())
            .args(["--test-threads", "1", "simulation"])
            .output()
            .unwrap();
        assert!(
            o.status.success(),
            "runtime tests with QATLAS_KERNEL={} failed:\n{}",
            p.name(),
            String::from_utf8_lossy(&o.stdout)
        );
        let stdout = String::from_utf8_lossy(&o.stdout);
        assert!(
            stdout.contains("test result: ok. 3 passed"),
            "QATLAS_KERNEL={}: {stdout}",
            p.name()
        );
        ran.push(p.name());
    }
    let _ = writeln!(
        std::io::stderr(),
        "runtime tests ran on int8 paths: {}",
        ran.join(", ")
    );
    assert!(ran.contains(&"portable"));
}
