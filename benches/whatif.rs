//! The studio's per-layer precision what-if on the pretrained seed-cnn and real MNIST: one
//! `PlanSession` calibrated on 1000 training images, then 30 random flips of one layer's
//! precision (int8 / int4 / fp16 / fp32), each timed as `calibrate` (cached: a data pass only for
//! observers a flip adds) + `evaluate` on 1000 test images. Prints p50 / p90 / max, the
//! evaluated images/s, and the ratio to a plain float evaluation of the same 1000 images
//! measured in the same run. `cargo bench --no-default-features --bench whatif`.

use qatlas::analysis::PlanSession;
use qatlas::cli::common::{default_data_dir, default_model};
use qatlas::data::{Split, load_split};
use qatlas::graph::Graph;
use qatlas::io::load_any;
use qatlas::quant::plan::{Precision, QuantPlan};
use qatlas::train::evaluate;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::sync::atomic::AtomicBool;
use std::time::Instant;

const IMAGES: usize = 1000;
const BATCH: usize = 100;
const FLIPS: usize = 30;

fn ms(t: Instant) -> f64 {
    t.elapsed().as_secs_f64() * 1e3
}

fn quantile(sorted: &[f64], q: f64) -> f64 {
    let i = ((sorted.len() - 1) as f64 * q).round() as usize;
    sorted[i]
}

fn main() {
    let model = load_any(&default_model()).expect("the pretrained seed-cnn (assets/)");
    let norm = model.meta.normalization.clone();
    let dir = default_data_dir();
    let train = load_split(&dir, Split::Train).expect("MNIST train split (assets/mnist)");
    let test = load_split(&dir, Split::Test).expect("MNIST test split (assets/mnist)");
    let stop = AtomicBool::new(false);
    let mut session = PlanSession::new(&model.graph).unwrap();
    let mut plan = QuantPlan::default_for(&model.graph, Precision::Int8);
    let t = Instant::now();
    let observers = session
        .calibrate(&plan, &train, &norm, IMAGES, BATCH, &stop, &mut |_, _| {})
        .unwrap();
    println!(
        "initial calibration: {observers} observers on {IMAGES} images in {:.0} ms",
        ms(t)
    );
    let first = session
        .evaluate(&plan, &test, &norm, IMAGES, BATCH, &stop)
        .unwrap();
    println!(
        "int8: float {:.2}%, quantized {:.2}%, {:.1} kB ({:.2}x smaller)",
        first.comparison.float_accuracy * 100.0,
        first.comparison.quantized_accuracy * 100.0,
        first.size.bytes as f64 / 1e3,
        first.size.ratio()
    );
    let float_test = test.clone().limit(IMAGES);
    let time_float = |g: &Graph| {
        let t = Instant::now();
        evaluate(g, &float_test, &norm, BATCH).unwrap();
        ms(t)
    };
    let mut float_ms: Vec<f64> = (0..3).map(|_| time_float(session.folded())).collect();
    let precisions = [
        Precision::Int8,
        Precision::Int4,
        Precision::Fp16,
        Precision::Fp32,
    ];
    let mut rng = ChaCha8Rng::seed_from_u64(42);
    let (mut steps, mut recalibrated) = (Vec::new(), Vec::new());
    for i in 0..FLIPS {
        let li = rng.random_range(0..plan.layers.len());
        let now = plan.layers[li].precision;
        let choices: Vec<Precision> = precisions.into_iter().filter(|&p| p != now).collect();
        let to = choices[rng.random_range(0..choices.len())];
        plan.layers[li].precision = to;
        let t = Instant::now();
        let newly = session
            .calibrate(&plan, &train, &norm, IMAGES, BATCH, &stop, &mut |_, _| {})
            .unwrap();
        let calib_ms = ms(t);
        let ev = session
            .evaluate(&plan, &test, &norm, IMAGES, BATCH, &stop)
            .unwrap();
        let step = ms(t);
        println!(
            "flip {i:2}: {} -> {:4}: {newly} new observers ({calib_ms:6.1} ms), quantized \
             {:.2}%, {:6.1} kB, step {step:6.1} ms",
            plan.layers[li].layer,
            to.name(),
            ev.comparison.quantized_accuracy * 100.0,
            ev.size.bytes as f64 / 1e3,
        );
        if newly > 0 {
            recalibrated.push(step);
        }
        steps.push(step);
    }
    float_ms.extend((0..3).map(|_| time_float(session.folded())));
    float_ms.sort_by(f64::total_cmp);
    steps.sort_by(f64::total_cmp);
    let float = quantile(&float_ms, 0.5);
    let (p50, p90, max) = (
        quantile(&steps, 0.5),
        quantile(&steps, 0.9),
        steps[steps.len() - 1],
    );
    println!(
        "what-if step (calibrate + evaluate {IMAGES} images), {FLIPS} flips, {} threads: \
         p50 {p50:.1} ms, p90 {p90:.1} ms, max {max:.1} ms ({:.0} images/s at p50); {} flips \
         observed new observers",
        rayon::current_num_threads(),
        IMAGES as f64 / p50 * 1e3,
        recalibrated.len()
    );
    println!(
        "float evaluation of {IMAGES} images: {float:.1} ms median of {} ({:.0} images/s); \
         what-if p50 / float = {:.2}x, p90 / float = {:.2}x, max / float = {:.2}x",
        float_ms.len(),
        IMAGES as f64 / float * 1e3,
        p50 / float,
        p90 / float,
        max / float
    );
}
