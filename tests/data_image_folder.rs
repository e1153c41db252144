//! ImageFolder datasets (`root/train/<class>/*.png`): class order, labels, pixel layout, channel
//! handling and the errors for odd sizes, empty classes and undecodable files. PNG fixtures are
//! written by the test with the `image` crate.

use std::path::{Path, PathBuf};

use image::{GrayImage, Luma, Rgb, RgbImage, Rgba, RgbaImage};
use qatlas::data::{DataError, Pixels, Split, load_split};

/// A 4-wide, 3-high grayscale image with pixel `base + 4 * y + x`.
fn gray(base: u8) -> GrayImage {
    GrayImage::from_fn(4, 3, |x, y| Luma([base + (4 * y + x) as u8]))
}

fn save_gray(dir: &Path, rel: &str, base: u8) -> PathBuf {
    let path = dir.join(rel);
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    gray(base).save(&path).unwrap();
    path
}

fn u8_pixels(p: &Pixels) -> &[u8] {
    match p {
        Pixels::U8(v) => v,
        _ => panic!("a small ImageFolder is held in memory as u8"),
    }
}

#[test]
fn two_classes_of_grayscale_pngs() {
    let root = tempfile::tempdir().unwrap();
    let r = root.path();
    // Written out of order; classes and files are sorted by name.
    save_gray(r, "train/dog/b.png", 100);
    save_gray(r, "train/cat/z.png", 50);
    save_gray(r, "train/dog/a.PNG", 150);
    save_gray(r, "train/cat/y.png", 0);
    std::fs::write(r.join("train/cat/notes.txt"), "ignored").unwrap();
    save_gray(r, "train/.hidden/x.png", 0);
    save_gray(r, "val/cat/v.png", 200);

    let ds = load_split(r, Split::Train).unwrap();
    assert_eq!(ds.class_names, vec!["cat", "dog"]);
    assert_eq!(ds.num_classes, 2);
    assert_eq!((ds.n, ds.c, ds.h, ds.w), (4, 1, 3, 4));
    // cat/y (0), cat/z (50), dog/a.PNG (150), dog/b (100).
    assert_eq!(ds.labels, vec![0, 0, 1, 1]);
    let p = u8_pixels(&ds.pixels);
    assert_eq!(p.len(), 4 * 12);
    assert_eq!(&p[..12], &(0..12).collect::<Vec<u8>>()[..]);
    assert_eq!((p[12], p[12 + 11]), (50, 61));
    assert_eq!((p[24], p[24 + 5]), (150, 155));
    assert_eq!(p[36], 100);
    assert!(ds.source.ends_with("train"), "{}", ds.source);

    // `val` serves as the test split, with the same class indices as train.
    let test = load_split(r, Split::Test).unwrap();
    assert_eq!(test.class_names, vec!["cat", "dog"]);
    assert_eq!(test.labels, vec![0]);
    assert_eq!(u8_pixels(&test.pixels)[7], 207);
}

#[test]
fn test_split_classes_follow_the_union_of_splits() {
    let root = tempfile::tempdir().unwrap();
    let r = root.path();
    save_gray(r, "train/ant/1.png", 0);
    save_gray(r, "train/bee/1.png", 0);
    save_gray(r, "test/bee/1.png", 0);
    save_gray(r, "test/cow/1.png", 0);
    let test = load_split(r, Split::Test).unwrap();
    assert_eq!(test.class_names, vec!["ant", "bee", "cow"]);
    assert_eq!(test.labels, vec![1, 2]);
    let train = load_split(r, Split::Train).unwrap();
    assert_eq!(train.num_classes, 3);
    assert_eq!(train.labels, vec![0, 1]);
}

#[test]
fn any_color_image_makes_the_dataset_rgb() {
    let root = tempfile::tempdir().unwrap();
    let r = root.path();
    save_gray(r, "train/a/0.png", 10);
    let rgb = RgbImage::from_fn(4, 3, |x, y| Rgb([x as u8, y as u8, 200]));
    rgb.save(r.join("train/a/1.png")).unwrap();
    std::fs::create_dir_all(r.join("train/b")).unwrap();
    let rgba = RgbaImage::from_pixel(4, 3, Rgba([1, 2, 3, 0]));
    rgba.save(r.join("train/b/2.png")).unwrap();

    let ds = load_split(r, Split::Train).unwrap();
    assert_eq!(ds.image_shape(), [3, 3, 4]);
    assert_eq!(ds.labels, vec![0, 0, 1]);
    let p = u8_pixels(&ds.pixels);
    let chw = 36;
    // Gray image: the same plane in all three channels.
    assert_eq!(&p[0..12], &p[12..24]);
    assert_eq!(&p[0..12], &p[24..36]);
    assert_eq!(p[5], 15);
    // RGB image, planar: R = x, G = y, B = 200; pixel (x=3, y=2) is at 2 * 4 + 3 = 11.
    assert_eq!(
        (p[chw + 11], p[chw + 12 + 11], p[chw + 24 + 11]),
        (3, 2, 200)
    );
    // RGBA: alpha dropped, color kept even where fully transparent.
    assert_eq!((p[2 * chw], p[2 * chw + 12], p[2 * chw + 24]), (1, 2, 3));
}

#[test]
fn odd_size_empty_class_and_bad_file_are_errors() {
    let root = tempfile::tempdir().unwrap();
    let r = root.path();
    save_gray(r, "train/a/0.png", 0);
    let odd = r.join("train/b/1.png");
    std::fs::create_dir_all(odd.parent().unwrap()).unwrap();
    GrayImage::new(5, 3).save(&odd).unwrap();
    let e = load_split(r, Split::Train).unwrap_err();
    match &e {
        DataError::ImageSize {
            expected,
            found,
            path,
        } => {
            assert_eq!((*expected, *found), ((4, 3), (5, 3)));
            assert_eq!(path, &odd);
        }
        e => panic!("expected ImageSize, got {e}"),
    }
    assert!(e.to_string().ends_with(&odd.display().to_string()), "{e}");

    std::fs::remove_file(&odd).unwrap();
    let e = load_split(r, Split::Train).unwrap_err();
    assert!(
        matches!(e, DataError::EmptyClass { ref path } if path.ends_with("train/b")),
        "{e}"
    );

    let broken = r.join("train/b/broken.jpg");
    std::fs::write(&broken, b"\xff\xd8\xff\xe0 truncated jpeg").unwrap();
    let e = load_split(r, Split::Train).unwrap_err();
    assert!(
        matches!(e, DataError::Image { ref path, .. } if path == &broken),
        "{e}"
    );
}

#[test]
fn split_folder_without_classes_is_empty() {
    let root = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(root.path().join("train")).unwrap();
    let e = load_split(root.path(), Split::Train).unwrap_err();
    assert!(
        matches!(e, DataError::Empty { ref path } if path.ends_with("train")),
        "{e}"
    );
}
