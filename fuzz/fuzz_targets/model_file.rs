//! Fuzz target: arbitrary bytes as a native model file (`.safetensors` with the graph and
//! metadata as RON) into `qatlas::io::load_model_bytes`, the in-memory half of `load_model`.
//! Loading must never panic or allocate from an unchecked declared size; a model that loads must
//! summarise and, when it is small, run forward on one sample and convert to the integer
//! runtime (or fail with an error) without panicking.

#![no_main]

use libfuzzer_sys::fuzz_target;
use qatlas::graph::summarize;
use qatlas::io::load_model_bytes;
use qatlas::runtime::{ConvertOptions, IntModel};
use std::path::Path;

/// Forward passes are only tried on models this cheap (multiply-accumulates per sample, input
/// elements, summed output elements), to keep executions fast.
const MAX_MACS: u64 = 2_000_000;
const MAX_INPUT: usize = 1 << 16;
const MAX_OUTPUTS: u64 = 1 << 22;

fuzz_target!(|data: &[u8]| {
    let Ok(m) = load_model_bytes(data, Path::new("fuzz-model.safetensors")) else {
        return;
    };
    let g = &m.graph;
    let Ok(layers) = summarize(g) else { return };
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
    if macs <= MAX_MACS && elems <= MAX_INPUT && outputs <= MAX_OUTPUTS {
        let mut shape = vec![1];
        shape.extend(&g.input_shape);
        let x = qatlas::tensor::zeros(&shape).mapv(|_| 0.5f32);
        let _ = g.infer(&x);
        if let Ok(im) = IntModel::convert(g, &ConvertOptions::default()) {
            let _ = im.infer(&x);
        }
    }
});
