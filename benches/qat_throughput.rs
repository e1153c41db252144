//! Quantization-aware-training throughput of the pretrained seed-cnn (int8 plan, batch 64) on
//! real MNIST versus float training of the same model, interleaved in the same run.
//! `cargo bench --bench qat_throughput` (more options: `qatlas bench qat`).

use qatlas::data::{Loader, Split, load_split};
use qatlas::quant::plan::{Precision, QuantPlan};
use qatlas::quant::{QatOptions, prepare_qat};
use qatlas::train::throughput::train_images_per_s;
use std::sync::atomic::AtomicBool;

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() {
    qatlas::kernels::alloc::retain_freed_memory();
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let (ds, model) = match (
        load_split(&root.join("assets/mnist"), Split::Train),
        qatlas::io::load_model(&root.join("assets/seed_cnn_mnist.safetensors")),
    ) {
        (Ok(d), Ok(m)) => (d.limit(64 * 64), m),
        _ => {
            eprintln!("qat_throughput: cannot load MNIST or the pretrained model; skipping");
            return;
        }
    };
    let norm = model.meta.normalization.clone();
    let plan = QuantPlan::default_for(&model.graph, Precision::Int8);
    let calib = Loader::new(&ds, &norm, 256, None, false).map(|(x, _)| x);
    let q = prepare_qat(
        &model.graph,
        &plan,
        calib.take(4),
        &AtomicBool::new(false),
        &mut |_| {},
        &QatOptions::default(),
    )
    .expect("QAT prepares");
    let (mut qat, mut float) = (Vec::new(), Vec::new());
    for _ in 0..5 {
        let mut g = q.graph.clone();
        qat.push(train_images_per_s(&mut g, &ds, &norm, 64, 10, 100).expect("QAT step"));
        let mut f = model.graph.clone();
        float.push(train_images_per_s(&mut f, &ds, &norm, 64, 10, 100).expect("float step"));
    }
    let med = |v: &mut Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    let (q, f) = (med(&mut qat), med(&mut float));
    println!(
        "seed-cnn, batch 64, {} threads: QAT {q:.0} img/s, float {f:.0} img/s, QAT epoch time {:.2}x float",
        rayon::current_num_threads(),
        f / q
    );
}
