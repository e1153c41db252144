//! Fuzz target: arbitrary bytes as a quantization plan file (RON) into `QuantPlan::parse`, the
//! text half of `QuantPlan::load`, checked against a small built-in model (seed-cnn on 8x8
//! inputs, 3 classes: layers `conv1`, `conv2`, `fc`, as the seeds are) and without one. Parsing
//! must never panic; a plan that loads must write back to RON that loads again, and a plan with
//! ranges must build its fake-quant model, run it forward, and convert it to the integer
//! runtime (or fail with an error) without panicking.

#![no_main]

use libfuzzer_sys::fuzz_target;
use qatlas::graph::Graph;
use qatlas::quant::{QuantPlan, prepare_from_plan};
use qatlas::runtime::{ConvertOptions, IntModel};
use std::path::Path;
use std::sync::OnceLock;

fn model() -> &'static Graph {
    static G: OnceLock<Graph> = OnceLock::new();
    G.get_or_init(|| {
        qatlas::zoo::Arch::SeedCnn
            .build([1, 8, 8], 3, 0)
            .expect("seed-cnn builds")
    })
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let path = Path::new("fuzz-plan.ron");
    let _ = QuantPlan::parse(text, path, None);
    let g = model();
    let Ok(plan) = QuantPlan::parse(text, path, Some(g)) else {
        return;
    };
    let again = plan.to_ron().expect("a loaded plan writes as RON");
    QuantPlan::parse(&again, path, Some(g)).expect("a written plan loads again");
    if plan.ranges.is_empty() {
        return;
    }
    let Ok((_, prepared)) = prepare_from_plan(g, &plan) else {
        return;
    };
    let x = qatlas::tensor::zeros(&[1, 1, 8, 8]).mapv(|_| 0.5f32);
    let _ = prepared.graph.infer(&x);
    if let Ok(m) = IntModel::convert(&prepared.graph, &ConvertOptions::default()) {
        let _ = m.infer(&x);
    }
});
