//! Fuzz target: arbitrary bytes as one IDX file (raw or gzipped) into the MNIST reader
//! (`qatlas::data::idx`), read both as an images file and as a labels file. Reading must never
//! panic, and must never allocate more than the input can justify (a gzipped input at most the
//! deflate ratio times its size); images that read must pair with a labels file of the same
//! count into a `Dataset` and give a normalised batch.

#![no_main]

use libfuzzer_sys::fuzz_target;
use qatlas::data::Normalization;
use qatlas::data::idx::{load_idx_pair_bytes, read_idx_images_bytes, read_idx_labels_bytes};
use std::path::Path;

fuzz_target!(|data: &[u8]| {
    let images = Path::new("fuzz-images-idx3-ubyte");
    let labels = Path::new("fuzz-labels-idx1-ubyte");
    let _ = read_idx_labels_bytes(data, labels);
    let Ok((pixels, [n, c, h, w])) = read_idx_images_bytes(data, images) else {
        return;
    };
    assert_eq!(pixels.len(), n * c * h * w);
    // A labels file for those images: header 0x00000801, count, then one byte per image.
    let Ok(count) = u32::try_from(n) else { return };
    let mut label_file = vec![0, 0, 8, 1];
    label_file.extend(count.to_be_bytes());
    label_file.extend((0..n).map(|i| (i % 10) as u8));
    let ds = load_idx_pair_bytes(data, &label_file, images, labels)
        .expect("images that read alone must load with a matching labels file");
    assert_eq!(ds.len(), n);
    let first: Vec<usize> = (0..n.min(4)).collect();
    let batch = ds.batch(&first, &Normalization::identity());
    assert_eq!(batch.shape(), &[first.len(), c, h, w]);
});
