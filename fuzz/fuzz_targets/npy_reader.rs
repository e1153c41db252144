//! Fuzz target: arbitrary bytes into the NumPy dataset readers (`qatlas::data::npy`). The first
//! byte selects the layout: even, the rest is one `.npz` archive; odd, the next four bytes
//! (u32 little-endian) give the length of an images `.npy` file and the remainder is the labels
//! `.npy` file. Reading must never panic and never allocate from an unchecked declared size; a
//! dataset that loads must give a normalised batch of its declared shape.

#![no_main]

use libfuzzer_sys::fuzz_target;
use qatlas::data::Normalization;
use qatlas::data::npy::{load_npy_pair_bytes, load_npz_bytes};
use std::path::Path;

fuzz_target!(|data: &[u8]| {
    let Some((&selector, rest)) = data.split_first() else {
        return;
    };
    let loaded = if selector % 2 == 0 {
        load_npz_bytes(rest, Path::new("fuzz.npz"))
    } else {
        let Some(len) = rest.get(..4) else { return };
        let len = u32::from_le_bytes([len[0], len[1], len[2], len[3]]) as usize;
        let rest = &rest[4..];
        let (images, labels) = rest.split_at(len.min(rest.len()));
        load_npy_pair_bytes(
            images,
            labels,
            Path::new("fuzz_images.npy"),
            Path::new("fuzz_labels.npy"),
        )
    };
    let Ok(ds) = loaded else { return };
    let [c, h, w] = ds.image_shape();
    let first: Vec<usize> = (0..ds.len().min(4)).collect();
    let batch = ds.batch(&first, &Normalization::identity());
    assert_eq!(batch.shape(), &[first.len(), c, h, w]);
    assert!(batch.iter().all(|v| v.is_finite()));
});
