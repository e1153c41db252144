//! Image folders at ImageNet-like sizes: torchvision's evaluation transform (resize the shorter
//! side, centre crop) matched against torchvision's own output (fixtures made by
//! `tools/fixtures/make_image_fixtures.py` with PIL), mixed-size folders, the streamed form
//! (images decoded per batch) equal to the in-memory one, and the errors: mixed sizes without a
//! transform, a resize that leaves sizes unequal, a file that breaks after the folder opened.

use std::path::{Path, PathBuf};

use image::{Rgb, RgbImage};
use qatlas::data::image_folder::{FolderOptions, load_image_folder_with};
use qatlas::data::{DataError, ImageTransform, Loader, Normalization, Split, load_split_with};

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/images")
}

/// The uint8 payload of a `.npy` file of `len` bytes of data (the header comes first).
fn npy_u8(path: &Path, len: usize) -> Vec<u8> {
    let bytes = std::fs::read(path).unwrap();
    assert!(bytes.starts_with(b"\x93NUMPY"), "{}", path.display());
    bytes[bytes.len() - len..].to_vec()
}

#[test]
fn transform_matches_torchvision() {
    let t = ImageTransform {
        resize: Some(32),
        crop: Some((28, 28)),
    };
    let n = 3 * 28 * 28;
    for name in ["wide.jpg", "tall.png", "small.png", "gray.png", "odd.jpg"] {
        let path = fixtures().join(name);
        let ours = t.load(&path, 3).unwrap();
        let stem = name.rsplit_once('.').unwrap().0;
        let theirs = npy_u8(&fixtures().join(format!("{stem}.expected.npy")), n);
        assert_eq!(ours.len(), n);
        let diffs: Vec<i32> = ours
            .iter()
            .zip(&theirs)
            .map(|(&a, &b)| (i32::from(a) - i32::from(b)).abs())
            .collect();
        let max = *diffs.iter().max().unwrap();
        let mean = diffs.iter().sum::<i32>() as f64 / n as f64;
        println!("{name}: max |ours - torchvision| = {max}, mean {mean:.3} (of 255)");
        // PIL resamples in 8-bit fixed point and decodes JPEG with libjpeg; the image crate
        // in f32 and with zune-jpeg: a few levels apart, never a shifted or flipped crop.
        assert!(max <= 4, "{name}: max difference {max}");
        assert!(mean < 0.6, "{name}: mean difference {mean}");
    }
}

fn save_rgb(path: &Path, w: u32, h: u32, seed: u32) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    let img = RgbImage::from_fn(w, h, |x, y| {
        Rgb([
            ((x * 7 + seed * 31) % 256) as u8,
            ((y * 5 + seed * 17) % 256) as u8,
            ((x + y + seed) % 256) as u8,
        ])
    });
    img.save(path).unwrap();
}

/// A folder of 2 classes with images of mixed sizes and both formats.
fn mixed_folder(root: &Path) {
    let sizes = [(64, 48), (50, 70), (40, 40), (90, 45), (33, 60), (48, 64)];
    for (i, &(w, h)) in sizes.iter().enumerate() {
        let class = if i % 2 == 0 { "ant" } else { "bee" };
        let ext = if i % 3 == 0 { "jpg" } else { "png" };
        save_rgb(
            &root.join(format!("train/{class}/{i}.{ext}")),
            w,
            h,
            i as u32,
        );
        save_rgb(
            &root.join(format!("val/{class}/{i}.{ext}")),
            h,
            w,
            i as u32 + 7,
        );
    }
}

#[test]
fn mixed_sizes_need_a_transform() {
    let root = tempfile::tempdir().unwrap();
    mixed_folder(root.path());
    let e = load_split_with(root.path(), Split::Train, &ImageTransform::none()).unwrap_err();
    assert!(matches!(e, DataError::ImageSize { .. }), "{e}");
    assert!(e.to_string().contains("imagenet preset"), "{e}");
    let resize_only = ImageTransform {
        resize: Some(32),
        crop: None,
    };
    let e = load_split_with(root.path(), Split::Train, &resize_only).unwrap_err();
    assert!(e.to_string().contains("add a crop"), "{e}");

    let t = ImageTransform {
        resize: Some(36),
        crop: Some((32, 30)),
    };
    let ds = load_split_with(root.path(), Split::Train, &t).unwrap();
    assert_eq!((ds.n, ds.c, ds.h, ds.w), (6, 3, 32, 30));
    assert_eq!(ds.class_names, vec!["ant", "bee"]);
    assert!(!ds.is_streamed(), "a small split is held in memory");
    let test = load_split_with(root.path(), Split::Test, &t).unwrap();
    assert_eq!(test.image_shape(), [3, 32, 30]);
}

#[test]
fn streamed_batches_equal_in_memory_ones() {
    let root = tempfile::tempdir().unwrap();
    mixed_folder(root.path());
    let transform = ImageTransform {
        resize: Some(40),
        crop: Some((36, 36)),
    };
    let memory = FolderOptions {
        transform,
        ..Default::default()
    };
    let stream = FolderOptions {
        transform,
        in_memory_bytes: 0,
    };
    let a = load_image_folder_with(root.path(), Split::Train, &memory).unwrap();
    let b = load_image_folder_with(root.path(), Split::Train, &stream).unwrap();
    assert!(!a.is_streamed() && b.is_streamed());
    assert_eq!(
        (a.labels.clone(), a.image_shape()),
        (b.labels.clone(), b.image_shape())
    );
    let norm = Normalization {
        mean: vec![0.485, 0.456, 0.406],
        std: vec![0.229, 0.224, 0.225],
    };
    let xa: Vec<_> = Loader::new(&a, &norm, 4, Some(3), false).collect();
    let xb: Vec<_> = Loader::new(&b, &norm, 4, Some(3), false).collect();
    assert_eq!(xa.len(), 2);
    assert_eq!(xa, xb);
    b.check().unwrap();
    // `first` of a streamed set stays streamed and gives the same first images.
    let head = b.first(2);
    assert!(head.is_streamed());
    assert_eq!(head.batch(&[1], &norm), a.batch(&[1], &norm));
}

#[test]
fn a_file_that_breaks_mid_run_is_reported_by_name() {
    let root = tempfile::tempdir().unwrap();
    mixed_folder(root.path());
    let options = FolderOptions {
        transform: ImageTransform {
            resize: Some(32),
            crop: Some((32, 32)),
        },
        in_memory_bytes: 0,
    };
    let ds = load_image_folder_with(root.path(), Split::Train, &options).unwrap();
    // Sorted order: ant/0.jpg, ant/2.png, ant/4.png, bee/1.png, bee/3.jpg, bee/5.png.
    let broken = root.path().join("train/bee/3.jpg");
    let bytes = std::fs::read(&broken).unwrap();
    std::fs::write(&broken, &bytes[..bytes.len() / 3]).unwrap();
    let norm = Normalization::identity();
    let batches = Loader::new(&ds, &norm, 2, None, false).count();
    assert_eq!(
        batches, 2,
        "the loader stops at the batch holding the broken file"
    );
    let e = ds.check().unwrap_err();
    assert!(e.to_string().contains("3.jpg"), "{e}");
    ds.check().expect("a fault is reported once");

    // A header that no longer reads is refused when the folder opens.
    std::fs::write(&broken, b"not an image").unwrap();
    let e = load_image_folder_with(root.path(), Split::Train, &options).unwrap_err();
    assert!(e.to_string().contains("3.jpg"), "{e}");
}
