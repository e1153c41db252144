//! Regression tests from fuzzing (`fuzz/`, see `fuzz/README.md`): every input a fuzz target
//! found to crash, hang or exhaust memory is kept here (small, under `tests/fixtures/fuzz/` or
//! inline) with the loader's expected answer, an `Err` naming the problem rather than a panic.
//! The committed seed corpora (`fuzz/seeds/`) are checked too: each seed that is a valid file
//! must still load through the same in-memory entry points the targets call, so the seeds keep
//! reaching past the parsers' first checks when the formats change.

use qatlas::data::idx::{read_idx_images_bytes, read_idx_labels_bytes};
use qatlas::data::npy::{load_npy_pair_bytes, load_npz_bytes};
use qatlas::data::transform::probe_bytes;
use qatlas::data::{ImageTransform, Normalization};
use qatlas::io::load_model_bytes;
use qatlas::project::Project;
use qatlas::quant::QuantPlan;
use qatlas::runtime::IntModel;
use std::path::{Path, PathBuf};

fn seeds(target: &str) -> Vec<(String, Vec<u8>)> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("fuzz/seeds")
        .join(target);
    let mut out: Vec<(String, Vec<u8>)> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| {
            let p = e.unwrap().path();
            let name = p.file_name().unwrap().to_string_lossy().into_owned();
            (name, std::fs::read(&p).unwrap())
        })
        .collect();
    out.sort();
    assert!(!out.is_empty(), "no seeds in {}", dir.display());
    out
}

fn seed_cnn_8x8() -> qatlas::graph::Graph {
    qatlas::zoo::Arch::SeedCnn.build([1, 8, 8], 3, 0).unwrap()
}

#[test]
fn idx_seeds_read_except_the_deliberately_broken_ones() {
    let p = Path::new("seed");
    for (name, bytes) in seeds("idx_reader") {
        let images = read_idx_images_bytes(&bytes, p);
        let labels = read_idx_labels_bytes(&bytes, p);
        let broken = name.contains("head") || name.contains("f32");
        if broken {
            assert!(images.is_err() && labels.is_err(), "{name} should not read");
        } else {
            assert!(
                images.is_ok() || labels.is_ok(),
                "{name}: {images:?} / {labels:?}"
            );
        }
    }
}

#[test]
fn npy_seeds_load_except_the_deliberately_broken_ones() {
    for (name, bytes) in seeds("npy_reader") {
        let rest = &bytes[1..];
        let loaded = if bytes[0] % 2 == 0 {
            load_npz_bytes(rest, Path::new("seed.npz"))
        } else {
            let len = u32::from_le_bytes(rest[..4].try_into().unwrap()) as usize;
            let (i, l) = rest[4..].split_at(len);
            load_npy_pair_bytes(i, l, Path::new("i.npy"), Path::new("l.npy"))
        };
        let broken = name.contains("missing") || name.contains("fortran");
        assert_eq!(loaded.is_err(), broken, "{name}: {loaded:?}");
        if let Ok(ds) = loaded {
            let b = ds.batch(&[0], &Normalization::identity());
            assert!(b.iter().all(|v| v.is_finite()), "{name}");
        }
    }
}

#[test]
fn plan_seeds_load_for_seed_cnn_except_the_mobilenet_one() {
    let g = seed_cnn_8x8();
    for (name, bytes) in seeds("plan_loader") {
        let text = String::from_utf8(bytes).unwrap();
        let p = Path::new("seed.ron");
        QuantPlan::parse(&text, p, None).unwrap_or_else(|e| panic!("{name}: {e}"));
        let for_g = QuantPlan::parse(&text, p, Some(&g));
        assert_eq!(for_g.is_err(), name.contains("mobile"), "{name}: {for_g:?}");
    }
}

#[test]
fn project_seeds_load() {
    for (name, bytes) in seeds("project_loader") {
        let text = String::from_utf8(bytes).unwrap();
        Project::parse(&text, Path::new("/p/seed.qatlas.ron"))
            .unwrap_or_else(|e| panic!("{name}: {e}"));
    }
}

#[test]
fn model_file_seeds_load() {
    for (name, bytes) in seeds("model_file") {
        load_model_bytes(&bytes, Path::new(&name)).unwrap_or_else(|e| panic!("{name}: {e}"));
    }
}

#[test]
fn int_bundle_seeds_load_and_run() {
    for (name, bytes) in seeds("int_bundle") {
        let m = IntModel::from_bytes(&bytes, Path::new(&name))
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        let (i, o) = m.io_elems();
        let mut y = vec![0f32; o];
        m.infer_into(&vec![0.5; i], 1, &mut y).unwrap();
        assert!(y.iter().all(|v| v.is_finite()), "{name}");
    }
}

#[test]
fn image_seeds_decode_to_the_probed_size() {
    let p = Path::new("seed");
    for (name, bytes) in seeds("image_decode") {
        let (h, w, colour) = probe_bytes(&bytes[1..], p).unwrap_or_else(|e| panic!("{name}: {e}"));
        let c = if colour { 3 } else { 1 };
        let t = ImageTransform::none();
        let planar = t
            .load_bytes(&bytes[1..], p, c)
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(planar.len(), c * h as usize * w as usize, "{name}");
    }
}

/// Found by `image_decode` (crash-78f1582a…, selector byte dropped): a 1 KB JPEG on which
/// zune-jpeg 0.5.15's AVX2 IDCT panics (`Option::unwrap` on a short block). The header probes;
/// decoding, from memory or from a file, is an error naming the file, not a panic.
#[test]
fn a_jpeg_that_panics_the_decoder_is_an_error_naming_the_file() {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/fuzz/zune_jpeg_idct_panic.jpg");
    let bytes = std::fs::read(&path).unwrap();
    let (h, w, colour) = probe_bytes(&bytes, &path).expect("the header is readable");
    assert_eq!((h, w, colour), (11, 17, true));
    let t = ImageTransform {
        resize: Some(20),
        crop: None,
    };
    // The panic is in the AVX2 IDCT: elsewhere the scalar IDCT may decode the file whole.
    let panics_here = std::is_x86_feature_detected!("avx2");
    for result in [t.load_bytes(&bytes, &path, 3), t.load(&path, 3)] {
        match result {
            Err(e) => {
                let err = e.to_string();
                assert!(err.contains("zune_jpeg_idct_panic.jpg"), "{err}");
                if panics_here {
                    assert!(err.contains("decoder failed"), "{err}");
                }
            }
            Ok(planar) => {
                assert!(
                    !panics_here,
                    "the AVX2 decoder no longer fails on this file"
                );
                let (oh, ow) = t.output_size((h, w));
                assert_eq!(planar.len(), 3 * oh as usize * ow as usize);
            }
        }
    }
}
