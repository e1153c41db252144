//! File formats of `qatlas::data`: IDX (raw and gzipped), `.npy` pairs and `.npz` archives,
//! layout detection by `load_split`, and the errors for malformed files. Every fixture is
//! written by the test into a temporary directory.

use std::io::Write;
use std::path::{Path, PathBuf};

use flate2::Compression;
use flate2::write::GzEncoder;
use npyz::WriterBuilder;
use qatlas::data::{DataError, Pixels, Split, load_split};

// ---------------------------------------------------------------- fixture writers

fn idx_bytes(type_code: u8, dims: &[u32], data: &[u8]) -> Vec<u8> {
    let mut out = vec![0, 0, type_code, dims.len() as u8];
    for d in dims {
        out.extend_from_slice(&d.to_be_bytes());
    }
    out.extend_from_slice(data);
    out
}

fn gz(bytes: &[u8]) -> Vec<u8> {
    let mut enc = GzEncoder::new(Vec::new(), Compression::default());
    enc.write_all(bytes).unwrap();
    enc.finish().unwrap()
}

fn write(dir: &Path, name: &str, bytes: &[u8]) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, bytes).unwrap();
    path
}

/// A version-1 `.npy` file written by hand, so malformed headers are possible.
fn npy_bytes(descr: &str, shape: &str, payload: &[u8]) -> Vec<u8> {
    let mut header = format!("{{'descr': '{descr}', 'fortran_order': False, 'shape': {shape}, }}");
    while (10 + header.len() + 1) % 64 != 0 {
        header.push(' ');
    }
    header.push('\n');
    let mut out = b"\x93NUMPY\x01\x00".to_vec();
    out.extend_from_slice(&(header.len() as u16).to_le_bytes());
    out.extend_from_slice(header.as_bytes());
    out.extend_from_slice(payload);
    out
}

fn f32_le(values: &[f32]) -> Vec<u8> {
    values.iter().flat_map(|v| v.to_le_bytes()).collect()
}

/// Three 2x3 images with pixel `10 * i + j` and labels 2, 0, 1.
fn tiny_idx() -> (Vec<u8>, Vec<u8>) {
    let pixels: Vec<u8> = (0..3)
        .flat_map(|i| (0..6).map(move |j| 10 * i + j))
        .collect();
    (
        idx_bytes(0x08, &[3, 2, 3], &pixels),
        idx_bytes(0x08, &[3], &[2, 0, 1]),
    )
}

// ---------------------------------------------------------------- IDX, good path

#[test]
fn idx_round_trip_raw() {
    let dir = tempfile::tempdir().unwrap();
    let (images, labels) = tiny_idx();
    let images_path = write(dir.path(), "train-images-idx3-ubyte", &images);
    write(dir.path(), "train-labels-idx1-ubyte", &labels);
    let ds = load_split(dir.path(), Split::Train).unwrap();
    assert_eq!((ds.n, ds.c, ds.h, ds.w), (3, 1, 2, 3));
    assert_eq!(ds.len(), 3);
    assert_eq!(ds.image_shape(), [1, 2, 3]);
    assert_eq!(ds.labels, vec![2, 0, 1]);
    assert_eq!(ds.num_classes, 3);
    assert_eq!(ds.class_names, vec!["0", "1", "2"]);
    assert_eq!(ds.source, images_path.display().to_string());
    let Pixels::U8(p) = &ds.pixels else {
        panic!("IDX pixels must stay u8")
    };
    assert_eq!(&p[..7], &[0, 1, 2, 3, 4, 5, 10]);
    assert_eq!(p[17], 25);
}

#[test]
fn idx_gzipped_test_split_detects_gzip_by_content() {
    let dir = tempfile::tempdir().unwrap();
    let (images, labels) = tiny_idx();
    write(dir.path(), "t10k-images-idx3-ubyte.gz", &gz(&images));
    // Gzipped but named like a raw file: detected by the magic bytes 1f 8b.
    write(dir.path(), "t10k-labels-idx1-ubyte", &gz(&labels));
    let ds = load_split(dir.path(), Split::Test).unwrap();
    assert_eq!((ds.n, ds.c, ds.h, ds.w), (3, 1, 2, 3));
    assert_eq!(ds.labels, vec![2, 0, 1]);
    assert_eq!(
        ds.pixels,
        Pixels::U8(
            (0..3)
                .flat_map(|i| (0..6).map(move |j| 10 * i + j))
                .collect()
        )
    );
    // Train is absent: the error lists what was looked for and names the directory last.
    let e = load_split(dir.path(), Split::Train).unwrap_err();
    let msg = e.to_string();
    assert!(
        matches!(e, DataError::NotFound { split: "train", .. }),
        "{e}"
    );
    assert!(msg.contains("train-images-idx3-ubyte[.gz]"), "{msg}");
    assert!(msg.contains("train.npz"), "{msg}");
    assert!(msg.ends_with(&dir.path().display().to_string()), "{msg}");
}

#[test]
fn idx_four_dim_images_have_channels() {
    let dir = tempfile::tempdir().unwrap();
    let pixels: Vec<u8> = (0..24).collect();
    write(
        dir.path(),
        "train-images-idx3-ubyte",
        &idx_bytes(0x08, &[2, 3, 2, 2], &pixels),
    );
    write(
        dir.path(),
        "train-labels-idx1-ubyte",
        &idx_bytes(0x08, &[2], &[0, 4]),
    );
    let ds = load_split(dir.path(), Split::Train).unwrap();
    assert_eq!(ds.image_shape(), [3, 2, 2]);
    assert_eq!(ds.num_classes, 5);
    assert_eq!(ds.pixels, Pixels::U8(pixels));
}

// ---------------------------------------------------------------- IDX, malformed

fn load_bad_idx(images: &[u8], labels: &[u8]) -> (DataError, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let path = write(dir.path(), "train-images-idx3-ubyte", images);
    write(dir.path(), "train-labels-idx1-ubyte", labels);
    let e = load_split(dir.path(), Split::Train).unwrap_err();
    assert!(
        e.to_string().ends_with(&path.display().to_string())
            || matches!(e, DataError::CountMismatch { .. }),
        "message should end with the file: {e}"
    );
    (e, path)
}

#[test]
fn idx_wrong_magic() {
    let (_, labels) = tiny_idx();
    // A labels header where images are expected.
    let (e, _) = load_bad_idx(&idx_bytes(0x08, &[18], &[0; 18]), &labels);
    match e {
        DataError::BadMagic {
            found, expected, ..
        } => {
            assert_eq!(found, "0x00000801");
            assert!(expected.contains("0x00000803"));
        }
        e => panic!("expected BadMagic, got {e}"),
    }
    let (e, _) = load_bad_idx(b"<html><body>404</body></html>", &labels);
    assert!(
        matches!(e, DataError::BadMagic { ref found, .. } if found == "0x3c68746d"),
        "{e}"
    );
}

#[test]
fn idx_unsupported_dtype() {
    let (_, labels) = tiny_idx();
    let (e, _) = load_bad_idx(&idx_bytes(0x0D, &[3, 2, 3], &[0; 72]), &labels);
    assert!(
        matches!(e, DataError::UnsupportedDtype { ref found, .. } if found.starts_with("f32")),
        "{e}"
    );
}

#[test]
fn idx_truncated_and_trailing() {
    let (images, labels) = tiny_idx();
    let (e, _) = load_bad_idx(&images[..images.len() - 8], &labels);
    assert!(
        matches!(
            e,
            DataError::Truncated {
                expected: 18,
                found: 10,
                ..
            }
        ),
        "{e}"
    );
    let mut long = images.clone();
    long.push(0);
    let (e, _) = load_bad_idx(&long, &labels);
    assert!(
        matches!(e, DataError::TrailingData { expected: 18, .. }),
        "{e}"
    );
    // The file ends inside the dimension list.
    let (e, _) = load_bad_idx(&images[..9], &labels);
    assert!(matches!(e, DataError::BadHeader { .. }), "{e}");
}

#[test]
fn idx_dims_overflowing_u64() {
    let (_, labels) = tiny_idx();
    let (e, _) = load_bad_idx(&idx_bytes(0x08, &[u32::MAX; 3], &[0; 64]), &labels);
    assert!(
        matches!(e, DataError::ShapeOverflow { ref dims, .. } if dims == &[u64::from(u32::MAX); 3]),
        "{e}"
    );
}

#[test]
fn idx_dims_exceeding_the_file_fail_fast() {
    let (_, labels) = tiny_idx();
    // 10^12 bytes declared in a 100-byte file.
    let (e, _) = load_bad_idx(
        &idx_bytes(0x08, &[1_000_000, 1000, 1000], &[0; 84]),
        &labels,
    );
    assert!(
        matches!(
            e,
            DataError::Truncated {
                expected: 1_000_000_000_000,
                found: 84,
                ..
            }
        ),
        "{e}"
    );
    // Gzipped: 47 MB declared by a ~100-byte stream is more than deflate can expand to.
    let (e, _) = load_bad_idx(&gz(&idx_bytes(0x08, &[60000, 28, 28], &[0; 100])), &labels);
    assert!(
        matches!(e, DataError::TooLarge { declared: 47_040_000, limit, .. } if limit < 1_000_000),
        "{e}"
    );
}

#[test]
fn idx_gzip_truncated() {
    let pixels: Vec<u8> = (0..4000u32).map(|i| (i * 7919 % 251) as u8).collect();
    let images = gz(&idx_bytes(0x08, &[10, 20, 20], &pixels));
    let labels = idx_bytes(0x08, &[10], &[1; 10]);
    let (e, _) = load_bad_idx(&images[..images.len() / 2], &labels);
    assert!(
        matches!(e, DataError::Truncated { expected: 4000, found, .. } if found < 4000)
            || matches!(e, DataError::Io { .. }),
        "{e}"
    );
}

#[test]
fn idx_label_count_mismatch_names_both_files() {
    let (images, _) = tiny_idx();
    let (e, images_path) = load_bad_idx(&images, &idx_bytes(0x08, &[2], &[0, 1]));
    let msg = e.to_string();
    match e {
        DataError::CountMismatch {
            images,
            labels,
            images_path: ip,
            labels_path,
        } => {
            assert_eq!((images, labels), (3, 2));
            assert_eq!(ip, images_path);
            assert!(labels_path.ends_with("train-labels-idx1-ubyte"));
        }
        e => panic!("expected CountMismatch, got {e}"),
    }
    assert!(msg.contains("train-images-idx3-ubyte") && msg.contains("train-labels-idx1-ubyte"));
    assert!(msg.contains('3') && msg.contains('2'), "{msg}");
}

#[test]
fn idx_empty_and_missing_companion() {
    let (e, _) = load_bad_idx(
        &idx_bytes(0x08, &[0, 2, 3], &[]),
        &idx_bytes(0x08, &[0], &[]),
    );
    assert!(matches!(e, DataError::Empty { .. }), "{e}");

    let dir = tempfile::tempdir().unwrap();
    let (images, _) = tiny_idx();
    write(dir.path(), "train-images-idx3-ubyte.gz", &gz(&images));
    let e = load_split(dir.path(), Split::Train).unwrap_err();
    assert!(
        matches!(e, DataError::MissingCompanion { ref missing, .. } if missing.ends_with("train-labels-idx1-ubyte")),
        "{e}"
    );
}

// ---------------------------------------------------------------- NumPy, good path

#[test]
fn npz_written_by_npyz_round_trips() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("train.npz");
    let images: Vec<u8> = (0..2 * 3 * 4).collect();
    {
        let mut npz = npyz::npz::NpzWriter::create(&path).unwrap();
        let mut w = npz
            .array::<u8>("images", Default::default())
            .unwrap()
            .default_dtype()
            .shape(&[2, 3, 4])
            .begin_nd()
            .unwrap();
        w.extend(images.iter().copied()).unwrap();
        w.finish().unwrap();
        let stored = npyz::zip::write::FileOptions::default()
            .compression_method(npyz::zip::CompressionMethod::Stored);
        let mut w = npz
            .array::<i64>("labels", stored)
            .unwrap()
            .default_dtype()
            .shape(&[2])
            .begin_nd()
            .unwrap();
        w.extend([7i64, 3]).unwrap();
        w.finish().unwrap();
    }
    let ds = load_split(dir.path(), Split::Train).unwrap();
    assert_eq!((ds.n, ds.c, ds.h, ds.w), (2, 1, 3, 4));
    assert_eq!(ds.labels, vec![7, 3]);
    assert_eq!(ds.num_classes, 8);
    assert_eq!(ds.pixels, Pixels::U8(images));
    assert_eq!(ds.source, path.display().to_string());
}

#[test]
fn npz_with_x_y_names_and_f32_nchw_images() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("test.npz");
    let images: Vec<f32> = (0..2 * 3 * 2 * 2).map(|i| i as f32 * 0.25 - 1.0).collect();
    {
        let mut npz = npyz::npz::NpzWriter::create(&path).unwrap();
        let mut w = npz
            .array::<f32>("x", Default::default())
            .unwrap()
            .default_dtype()
            .shape(&[2, 3, 2, 2])
            .begin_nd()
            .unwrap();
        w.extend(images.iter().copied()).unwrap();
        w.finish().unwrap();
        let mut w = npz
            .array::<u8>("y", Default::default())
            .unwrap()
            .default_dtype()
            .shape(&[2, 1])
            .begin_nd()
            .unwrap();
        w.extend([1u8, 0]).unwrap();
        w.finish().unwrap();
    }
    let ds = load_split(dir.path(), Split::Test).unwrap();
    assert_eq!(ds.image_shape(), [3, 2, 2]);
    assert_eq!(ds.labels, vec![1, 0]);
    assert_eq!(ds.pixels, Pixels::F32(images));
}

#[test]
fn npy_pair_with_f64_images_and_big_endian_labels() {
    let dir = tempfile::tempdir().unwrap();
    let values = [0.5f64, -2.0, 1e-3, 255.0];
    let payload: Vec<u8> = values.iter().flat_map(|v| v.to_le_bytes()).collect();
    write(
        dir.path(),
        "train_images.npy",
        &npy_bytes("<f8", "(2, 1, 2)", &payload),
    );
    let labels: Vec<u8> = [9i32, 65535].iter().flat_map(|v| v.to_be_bytes()).collect();
    write(
        dir.path(),
        "train_labels.npy",
        &npy_bytes(">i4", "(2,)", &labels),
    );
    let ds = load_split(dir.path(), Split::Train).unwrap();
    assert_eq!((ds.n, ds.c, ds.h, ds.w), (2, 1, 1, 2));
    assert_eq!(ds.labels, vec![9, 65535]);
    assert_eq!(ds.num_classes, 65536);
    assert_eq!(ds.pixels, Pixels::F32(vec![0.5, -2.0, 1e-3, 255.0]));
}

// ---------------------------------------------------------------- NumPy, malformed

/// Loads `train_images.npy` + `train_labels.npy` (default: two valid 1x2 images / labels).
fn load_bad_npy(images: Option<Vec<u8>>, labels: Option<Vec<u8>>) -> (DataError, String) {
    let dir = tempfile::tempdir().unwrap();
    let images = images.unwrap_or_else(|| npy_bytes("<f4", "(2, 1, 2)", &f32_le(&[0.0; 4])));
    let labels = labels.unwrap_or_else(|| npy_bytes("<i8", "(2,)", &[0; 16]));
    write(dir.path(), "train_images.npy", &images);
    write(dir.path(), "train_labels.npy", &labels);
    let e = load_split(dir.path(), Split::Train).unwrap_err();
    let msg = e.to_string();
    (e, msg)
}

#[test]
fn npy_non_finite_pixels_name_the_first_bad_index() {
    let payload = f32_le(&[0.0, 1.0, f32::NAN, f32::INFINITY]);
    let (e, msg) = load_bad_npy(Some(npy_bytes("<f4", "(2, 1, 2)", &payload)), None);
    assert!(
        matches!(e, DataError::NonFinite { index: 2, ref value, .. } if value.is_nan()),
        "{e}"
    );
    assert!(msg.ends_with("train_images.npy"), "{msg}");
    // An f64 beyond the f32 range is not finite after conversion.
    let payload: Vec<u8> = [0.0f64, 0.0, 0.0, 1e300]
        .iter()
        .flat_map(|v| v.to_le_bytes())
        .collect();
    let (e, _) = load_bad_npy(Some(npy_bytes("<f8", "(2, 1, 2)", &payload)), None);
    assert!(
        matches!(e, DataError::NonFinite { index: 3, value, .. } if value == 1e300),
        "{e}"
    );
}

#[test]
fn npy_negative_and_huge_labels() {
    let labels: Vec<u8> = [4i64, -1].iter().flat_map(|v| v.to_le_bytes()).collect();
    let (e, msg) = load_bad_npy(None, Some(npy_bytes("<i8", "(2,)", &labels)));
    assert!(
        matches!(
            e,
            DataError::NegativeLabel {
                index: 1,
                value: -1,
                ..
            }
        ),
        "{e}"
    );
    assert!(msg.ends_with("train_labels.npy"), "{msg}");
    let labels: Vec<u8> = [70000u32, 0].iter().flat_map(|v| v.to_le_bytes()).collect();
    let (e, _) = load_bad_npy(None, Some(npy_bytes("<u4", "(2,)", &labels)));
    assert!(
        matches!(
            e,
            DataError::LabelTooLarge {
                index: 0,
                value: 70000,
                max: 65535,
                ..
            }
        ),
        "{e}"
    );
}

#[test]
fn npy_unsupported_dtypes() {
    let (e, _) = load_bad_npy(Some(npy_bytes("<i4", "(2, 1, 2)", &[0; 16])), None);
    assert!(
        matches!(e, DataError::UnsupportedDtype { ref found, .. } if found == "<i4"),
        "{e}"
    );
    let (e, _) = load_bad_npy(None, Some(npy_bytes("<f4", "(2,)", &[0; 8])));
    assert!(
        matches!(e, DataError::UnsupportedDtype { ref found, .. } if found == "<f4"),
        "{e}"
    );
    let (e, _) = load_bad_npy(None, Some(npy_bytes("<c8", "(2,)", &[0; 16])));
    assert!(matches!(e, DataError::BadHeader { .. }), "{e}");
}

#[test]
fn npy_bad_magic_shape_and_sizes() {
    let (e, _) = load_bad_npy(Some(b"PK\x03\x04 definitely not npy".to_vec()), None);
    assert!(
        matches!(e, DataError::BadMagic { format: "NPY", .. }),
        "{e}"
    );
    // Shape product overflows u64.
    let shape = format!("({0}, {0}, {0})", u32::MAX);
    let (e, _) = load_bad_npy(Some(npy_bytes("|u1", &shape, &[0; 8])), None);
    assert!(matches!(e, DataError::ShapeOverflow { .. }), "{e}");
    // 4e12 bytes declared, a few present: rejected before allocating.
    let (e, _) = load_bad_npy(
        Some(npy_bytes("<f4", "(1000000, 1000, 1000)", &[0; 8])),
        None,
    );
    assert!(
        matches!(
            e,
            DataError::Truncated {
                expected: 4_000_000_000_000,
                found: 8,
                ..
            }
        ),
        "{e}"
    );
    let (e, _) = load_bad_npy(Some(npy_bytes("<f4", "(2, 2)", &[0; 16])), None);
    assert!(
        matches!(e, DataError::BadShape { ref found, .. } if found == &[2, 2]),
        "{e}"
    );
    let (e, _) = load_bad_npy(None, Some(npy_bytes("<i8", "(3,)", &[0; 24])));
    assert!(
        matches!(
            e,
            DataError::CountMismatch {
                images: 2,
                labels: 3,
                ..
            }
        ),
        "{e}"
    );
    // A header length pointing past the end of the file.
    let mut bytes = npy_bytes("<i8", "(2,)", &[0; 16]);
    bytes[8] = 0xff;
    bytes[9] = 0xff;
    let (e, _) = load_bad_npy(None, Some(bytes));
    assert!(matches!(e, DataError::BadHeader { .. }), "{e}");
}

#[test]
fn npz_malformed() {
    let dir = tempfile::tempdir().unwrap();
    let path = write(dir.path(), "train.npz", b"not a zip archive at all");
    let e = load_split(dir.path(), Split::Train).unwrap_err();
    assert!(matches!(e, DataError::BadHeader { .. }), "{e}");
    assert!(e.to_string().ends_with(&path.display().to_string()), "{e}");

    let path = dir.path().join("test.npz");
    {
        let mut npz = npyz::npz::NpzWriter::create(&path).unwrap();
        let mut w = npz
            .array::<u8>("pixels", Default::default())
            .unwrap()
            .default_dtype()
            .shape(&[1, 1, 1])
            .begin_nd()
            .unwrap();
        w.extend([0u8]).unwrap();
        w.finish().unwrap();
    }
    let e = load_split(dir.path(), Split::Test).unwrap_err();
    assert!(
        matches!(e, DataError::MissingArray { ref found, .. } if found == &["pixels"]),
        "{e}"
    );
}
