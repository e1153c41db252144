//! Fuzz target: arbitrary bytes as an integer bundle (the `.safetensors` file `qatlas convert`
//! writes) into `IntModel::from_bytes`, the in-memory half of `IntModel::load`: safetensors
//! header, RON model description, tensors checked against it, engine built. Loading must never
//! panic or allocate from an unchecked declared size; a bundle that loads must list its layers
//! and, when its input and output are small, run one image without panicking.

#![no_main]

use libfuzzer_sys::fuzz_target;
use qatlas::runtime::IntModel;
use std::path::Path;

/// Images are only run through bundles with per-image input and output this small and this
/// few steps, to keep executions fast.
const MAX_IO: usize = 1 << 16;
const MAX_STEPS: usize = 64;

fuzz_target!(|data: &[u8]| {
    let Ok(m) = IntModel::from_bytes(data, Path::new("fuzz-bundle.safetensors")) else {
        return;
    };
    let _ = m.layers();
    let _ = m.weight_bytes();
    let (inputs, outputs) = m.io_elems();
    if inputs <= MAX_IO && outputs <= MAX_IO && m.spec().steps.len() <= MAX_STEPS {
        let x = vec![0.5f32; inputs];
        let mut y = vec![0f32; outputs];
        let _ = m.infer_into(&x, 1, &mut y);
    }
});
