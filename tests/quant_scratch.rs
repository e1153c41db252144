use qatlas::data::{Loader, Split, load_split};
use qatlas::io::load_model;
use qatlas::quant::plan::{Precision, QuantPlan};
use qatlas::quant::*;
use qatlas::quant::points::only_layer;
use std::path::PathBuf;
use std::time::Instant;

fn assets() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("assets")
}

#[test]
fn scratch() {
    let model = load_model(&assets().join("seed_cnn_mnist.safetensors")).unwrap();
    let norm = model.meta.normalization.clone();
    let calib = load_split(&assets().join("mnist"), Split::Train).unwrap().limit(1000);
    let test = load_split(&assets().join("mnist"), Split::Test).unwrap().limit(1000);
    let plan = QuantPlan::default_for(&model.graph, Precision::Int4);
    let (f, _) = fold_batchnorm(&model.graph).unwrap();
    let qp = plan_points(&f, &plan).unwrap();
    let qps: Vec<_> = ["conv1","conv2","fc"].iter().map(|l| plan_points(&f, &only_layer(&plan, l)).unwrap()).collect();
    let mut all = vec![&qp]; all.extend(qps.iter());
    let t = Instant::now();
    let mut cal = Calibrator::new(&all);
    for (x, _) in Loader::new(&calib, &norm, 250, None, false) { cal.observe(&f, &x).unwrap(); }
    eprintln!("calibrate {:?}", t.elapsed());
    let t = Instant::now();
    let r = cal.ranges(&f, &qp).unwrap();
    eprintln!("ranges {:?}", t.elapsed());
    let p = prepare(&f, &qp, &r).unwrap();
    let batches: Vec<_> = Loader::new(&test, &norm, 250, None, false).collect();
    let t = Instant::now();
    for (x, _) in &batches { f.infer(x).unwrap(); }
    eprintln!("float eval {:?}", t.elapsed());
    let t = Instant::now();
    for (x, _) in &batches { p.graph.infer(x).unwrap(); }
    eprintln!("quant eval {:?}", t.elapsed());
    let t = Instant::now();
    for (x, _) in &batches { qatlas::quant::exec::run_tapped(&f, x, &mut |_, _| {}).unwrap(); }
    eprintln!("tapped float eval {:?}", t.elapsed());
}
