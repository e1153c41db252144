//! Fuzz target: arbitrary bytes as a native model file (`.safetensors` with the graph and
//! metadata as RON) into `qatlas::io::load_model_bytes`, the in-memory half of `load_model`.
//! Loading must never panic or allocate from an unchecked declared size; a model that loads must
//! summarise and, when it is small, run forward on one sample and convert to the integer
//! runtime (or fail with an error) without panicking.

#![no_main]

mod common;

use libfuzzer_sys::fuzz_target;
use qatlas::io::load_model_bytes;
use qatlas::runtime::{ConvertOptions, IntModel};
use std::path::Path;

fuzz_target!(|data: &[u8]| {
    let Ok(m) = load_model_bytes(data, Path::new("fuzz-model.safetensors")) else {
        return;
    };
    let g = &m.graph;
    if let Some(x) = common::cheap_input(g) {
        let _ = g.infer(&x);
        if let Ok(im) = IntModel::convert(g, &ConvertOptions::default()) {
            let _ = im.infer(&x);
        }
    }
});
