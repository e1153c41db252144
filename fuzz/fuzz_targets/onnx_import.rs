//! Fuzz target: arbitrary bytes into the ONNX importer. Importing must never panic or allocate
//! from an unchecked declared size; a model that imports must summarise, export, and (when it is
//! small) run forward on one sample without panicking.

#![no_main]

use libfuzzer_sys::fuzz_target;
use qatlas::graph::summarize;
use qatlas::io::onnx::{export_bytes, import_bytes};

/// Forward passes are only tried on models this cheap (multiply-accumulates per sample, input
/// elements), to keep executions fast.
const MAX_MACS: u64 = 2_000_000;
const MAX_INPUT: usize = 1 << 16;

fuzz_target!(|data: &[u8]| {
    let Ok(g) = import_bytes(data) else { return };
    let Ok(layers) = summarize(&g) else { return };
    let _ = export_bytes(&g, 17);
    let macs = layers.iter().fold(0u64, |a, l| a.saturating_add(l.macs));
    let elems = g
        .input_shape
        .iter()
        .fold(1usize, |a, &d| a.saturating_mul(d));
    let outputs: u64 = layers
        .iter()
        .map(|l| {
            l.output_shape
                .iter()
                .fold(1u64, |a, &d| a.saturating_mul(d as u64))
        })
        .fold(0u64, u64::saturating_add);
    if macs <= MAX_MACS && elems <= MAX_INPUT && outputs <= 1 << 22 {
        let mut shape = vec![1];
        shape.extend(&g.input_shape);
        let x = qatlas::tensor::zeros(&shape).mapv(|_| 0.5f32);
        let _ = g.infer(&x);
    }
});
