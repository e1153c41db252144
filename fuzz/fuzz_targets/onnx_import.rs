//! Fuzz target: arbitrary bytes into the ONNX importer. Importing must never panic or allocate
//! from an unchecked declared size; a model that imports must summarise, export, and (when it is
//! small) run forward on one sample without panicking.

#![no_main]

mod common;

use libfuzzer_sys::fuzz_target;
use qatlas::io::onnx::{export_bytes, import_bytes};

fuzz_target!(|data: &[u8]| {
    let Ok(g) = import_bytes(data) else { return };
    let _ = export_bytes(&g, 17);
    if let Some(x) = common::cheap_input(&g) {
        let _ = g.infer(&x);
    }
});
