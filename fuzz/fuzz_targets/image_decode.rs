//! Fuzz target: arbitrary bytes as one image file of an ImageFolder into the decoder and
//! transform of `qatlas::data::transform` (`probe_bytes`, then `ImageTransform::load_bytes`,
//! the in-memory halves of what an ImageFolder runs on each file). The first byte picks the
//! transform: none, resize 20, centre crop 12x9, or resize 32 then crop 28. Probing and
//! decoding must never panic; when both succeed the decoded, transformed image must have
//! exactly the size the header promised (`channels x output_size(header size)`), which is
//! what an ImageFolder relies on.
//!
//! The decoder crate itself panics on some files (zune-jpeg's AVX2 IDCT); qatlas catches that
//! and reports the file (`decode_with`). libFuzzer's panic hook would abort on the caught panic,
//! so this target installs a hook that only prints: a panic that escapes qatlas still aborts
//! (libfuzzer-sys aborts on any panic leaving the target) and is a finding.

#![no_main]

use libfuzzer_sys::fuzz_target;
use qatlas::data::ImageTransform;
use qatlas::data::transform::probe_bytes;
use std::path::Path;

/// Decoding is only tried on images with at most this many pixels (the folder loader's own cap,
/// `MAX_IMAGE_PIXELS`, is 150 M; this keeps executions fast).
const MAX_PIXELS: u64 = 1 << 22;

static QUIET_HOOK: std::sync::Once = std::sync::Once::new();

fuzz_target!(|data: &[u8]| {
    QUIET_HOOK.call_once(|| {
        std::panic::set_hook(Box::new(|info| eprintln!("panic (caught or not): {info}")));
    });
    let Some((&selector, bytes)) = data.split_first() else {
        return;
    };
    let transform = match selector % 4 {
        0 => ImageTransform::none(),
        1 => ImageTransform {
            resize: Some(20),
            crop: None,
        },
        2 => ImageTransform {
            resize: None,
            crop: Some((12, 9)),
        },
        _ => ImageTransform {
            resize: Some(32),
            crop: Some((28, 28)),
        },
    };
    let path = Path::new("fuzz-image");
    let Ok((h, w, colour)) = probe_bytes(bytes, path) else {
        return;
    };
    if u64::from(h) * u64::from(w) > MAX_PIXELS {
        return;
    }
    let channels = if colour { 3 } else { 1 };
    let Ok(planar) = transform.load_bytes(bytes, path, channels) else {
        return;
    };
    let (oh, ow) = transform.output_size((h, w));
    assert_eq!(
        planar.len(),
        channels * oh as usize * ow as usize,
        "decoded size differs from the probed header ({w}x{h})"
    );
});
