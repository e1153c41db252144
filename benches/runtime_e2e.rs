//! End-to-end seed-cnn inference: the integer runtime (PTQ int8 and W4A8) versus the float runtime
//! and the float graph executor,
//! images/s at batch 64 and single-image latency, same run, medians.
//! `cargo bench --no-default-features --bench runtime_e2e` (with options and JSON: `qatlas bench
//! e2e`). `QATLAS_E2E_PROFILE=<seconds>` instead runs only the int8
//! model at batch 64 for that long (for `perf record`).

use qatlas::bench::timing::{FloatSide, measure};
use qatlas::data::{Loader, Split, load_split};
use qatlas::io::load_model;
use qatlas::quant::plan::{Precision, QuantPlan};
use qatlas::quant::ptq;
use qatlas::runtime::{ConvertOptions, IntModel, Requantization};
use std::path::PathBuf;
use std::sync::atomic::AtomicBool;
use std::time::Instant;

fn main() {
    let assets = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("assets");
    let model = load_model(&assets.join("seed_cnn_mnist.safetensors")).unwrap();
    let norm = model.meta.normalization.clone();
    let calib = load_split(&assets.join("mnist"), Split::Train)
        .unwrap()
        .limit(1000);
    let test = load_split(&assets.join("mnist"), Split::Test)
        .unwrap()
        .limit(64);
    let x = Loader::new(&test, &norm, 64, None, false).next().unwrap().0;
    let threads = rayon::current_num_threads();
    let profile: Option<f64> = std::env::var("QATLAS_E2E_PROFILE")
        .ok()
        .and_then(|v| v.parse().ok());
    let float_rt = IntModel::from_float(&model.graph, &ConvertOptions::default()).unwrap();
    for (prec, mode) in [
        (Precision::Int8, Requantization::FixedPoint),
        (Precision::Int8, Requantization::Float),
        (Precision::Int4, Requantization::FixedPoint),
    ] {
        let plan = QuantPlan::default_for(&model.graph, prec);
        let batches = Loader::new(&calib, &norm, 250, None, false).map(|(x, _)| x);
        let res = ptq(
            &model.graph,
            &plan,
            batches,
            &AtomicBool::new(false),
            &mut |_| {},
        )
        .unwrap();
        let opts = ConvertOptions {
            requantization: mode,
            ..ConvertOptions::default()
        };
        let m = IntModel::convert(&res.prepared.graph, &opts).unwrap();
        if let Some(secs) = profile {
            let xs = x.as_slice().unwrap();
            let mut out = vec![0f32; 64 * 10];
            let (t, mut n) = (Instant::now(), 0usize);
            while t.elapsed().as_secs_f64() < secs {
                m.infer_into(xs, 64, &mut out).unwrap();
                n += 64;
            }
            println!(
                "{} {mode:?}: {:.0} img/s",
                prec.name(),
                n as f64 / t.elapsed().as_secs_f64()
            );
            continue;
        }
        let side = FloatSide {
            runtime: Some(&float_rt),
            graph: &model.graph,
        };
        let t = measure(&m, side, &x, 5, 0.3).unwrap();
        println!(
            "seed-cnn {} {mode:?}, {threads} threads: batch 64 integer {:.0} img/s vs float runtime {:.0} img/s ({:.2}x) and graph {:.0} img/s; batch 1 integer {:.1} us vs float runtime {:.1} us ({:.2}x) and graph {:.1} us",
            prec.name(),
            t.int_images_per_s,
            t.float_images_per_s,
            t.int_images_per_s / t.float_images_per_s,
            t.graph_images_per_s,
            t.int_latency_us,
            t.float_latency_us,
            t.float_latency_us / t.int_latency_us,
            t.graph_latency_us
        );
    }
}
