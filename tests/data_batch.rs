//! Batching: `Dataset::batch` normalization against hand-computed values, `limit`, the
//! `Normalization` checks, `Loader` order and reproducibility, and the real MNIST files.

use std::collections::HashSet;
use std::path::PathBuf;

use qatlas::data::{DataError, Dataset, Loader, Normalization, Pixels, Split, load_split};

fn close(a: f32, b: f32) -> bool {
    (a - b).abs() <= 1e-5 * (1.0 + b.abs())
}

/// Three RGB 1x2 images; pixel values `[[0, 255], [51, 102], [255, 0]]` per image, plus `10 * i`.
fn rgb_u8() -> Dataset {
    let mut p = Vec::new();
    for i in 0..3u8 {
        p.extend([0, 255, 51, 102, 255 - 10 * i, 10 * i]);
    }
    Dataset::new("rgb", Pixels::U8(p), vec![2, 0, 1], [3, 1, 2], vec![]).unwrap()
}

#[test]
fn batch_normalizes_u8_per_channel() {
    let ds = rgb_u8();
    let norm = Normalization {
        mean: vec![0.5, 0.2, 0.0],
        std: vec![0.5, 0.1, 2.0],
    };
    norm.validate(3).unwrap();
    let x = ds.batch(&[2, 0], &norm);
    assert_eq!(x.shape(), &[2, 3, 1, 2]);
    let got: Vec<f32> = x.iter().copied().collect();
    // Image 2: R = (0/255 - .5)/.5 = -1, (255/255 - .5)/.5 = 1; G = (.2 - .2)/.1 = 0,
    // (.4 - .2)/.1 = 2; B = (235/255)/2 = 0.4607843, (20/255)/2 = 0.0392157.
    // Image 0: R -1, 1; G 0, 2; B 0.5, 0.
    let want = [
        -1.0,
        1.0,
        0.0,
        2.0,
        0.460_784_3,
        0.039_215_7,
        -1.0,
        1.0,
        0.0,
        2.0,
        0.5,
        0.0,
    ];
    assert_eq!(got.len(), want.len());
    for (k, (g, w)) in got.iter().zip(want).enumerate() {
        assert!(close(*g, w), "element {k}: got {g}, want {w}");
    }
    assert_eq!(ds.labels_of(&[2, 0, 0]), vec![1, 2, 2]);
}

#[test]
fn batch_of_f32_pixels_skips_the_255_scale() {
    let ds = Dataset::new(
        "f32",
        Pixels::F32(vec![0.0, 0.1307, 1.0, -1.0]),
        vec![0, 1],
        [1, 1, 2],
        vec!["zero".into(), "one".into()],
    )
    .unwrap();
    assert_eq!(ds.num_classes, 2);
    let x = ds.batch(&[1, 0], &Normalization::mnist());
    let got: Vec<f32> = x.iter().copied().collect();
    let want = [
        (1.0 - 0.1307) / 0.3081,
        (-1.0 - 0.1307) / 0.3081,
        -0.1307 / 0.3081,
        0.0,
    ];
    for (g, w) in got.iter().zip(want) {
        assert!(close(*g, w), "got {g}, want {w}");
    }
    let x = ds.batch(&[0], &Normalization::identity());
    assert_eq!(x.iter().copied().collect::<Vec<_>>(), vec![0.0, 0.1307]);
}

#[test]
fn limit_keeps_the_first_samples_and_the_class_count() {
    let ds = rgb_u8().limit(2);
    assert_eq!(
        (ds.len(), ds.num_classes, ds.labels.clone()),
        (2, 3, vec![2, 0])
    );
    assert_eq!(ds.pixels.len(), 12);
    assert!(!ds.is_empty());
    assert_eq!(rgb_u8().limit(10).len(), 3);
}

#[test]
fn dataset_new_and_normalization_validate_reject_inconsistency() {
    let e = Dataset::new("x", Pixels::U8(vec![0; 5]), vec![0, 1], [1, 1, 2], vec![]).unwrap_err();
    assert!(
        matches!(
            e,
            DataError::Inconsistent {
                expected: 4,
                found: 5,
                ..
            }
        ),
        "{e}"
    );
    let e = Dataset::new("x", Pixels::U8(vec![]), vec![], [1, 1, 2], vec![]).unwrap_err();
    assert!(matches!(e, DataError::Empty { .. }), "{e}");
    let e = Dataset::new(
        "x",
        Pixels::U8(vec![0; 2]),
        vec![0, 2],
        [1, 1, 1],
        vec!["a".into(), "b".into()],
    )
    .unwrap_err();
    assert!(
        matches!(
            e,
            DataError::Inconsistent {
                expected: 2,
                found: 3,
                ..
            }
        ),
        "{e}"
    );

    assert!(Normalization::mnist().validate(1).is_ok());
    assert!(
        Normalization::mnist().validate(3).is_ok(),
        "length 1 broadcasts"
    );
    let two = Normalization {
        mean: vec![0.0, 0.0],
        std: vec![1.0],
    };
    assert!(matches!(
        two.validate(3),
        Err(DataError::Normalization { field: "mean", .. })
    ));
    let zero_std = Normalization {
        mean: vec![0.0],
        std: vec![0.0],
    };
    assert!(matches!(
        zero_std.validate(1),
        Err(DataError::Normalization { field: "std", .. })
    ));
    let nan_mean = Normalization {
        mean: vec![f32::NAN],
        std: vec![1.0],
    };
    assert!(nan_mean.validate(1).is_err());
    let json = serde_json::to_string(&Normalization::mnist()).unwrap();
    assert_eq!(json, r#"{"mean":[0.1307],"std":[0.3081]}"#);
    let back: Normalization = serde_json::from_str(&json).unwrap();
    assert_eq!(back, Normalization::mnist());
}

/// A dataset of `n` 1x1 images whose pixel equals its index (mod 256) and label `index % 3`.
fn counting(n: usize) -> Dataset {
    Dataset::new(
        "count",
        Pixels::F32((0..n).map(|i| i as f32).collect()),
        (0..n).map(|i| (i % 3) as u32).collect(),
        [1, 1, 1],
        vec![],
    )
    .unwrap()
}

fn epoch(ds: &Dataset, bs: usize, seed: Option<u64>, drop_last: bool) -> Vec<(Vec<f32>, Vec<u32>)> {
    let norm = Normalization::identity();
    Loader::new(ds, &norm, bs, seed, drop_last)
        .map(|(x, y)| (x.iter().copied().collect(), y))
        .collect()
}

#[test]
fn loader_in_order_covers_everything() {
    let ds = counting(10);
    let norm = Normalization::identity();
    let loader = Loader::new(&ds, &norm, 4, None, false);
    assert_eq!(loader.num_batches(), 3);
    assert_eq!(loader.len(), 3);
    let batches = epoch(&ds, 4, None, false);
    assert_eq!(batches.len(), 3);
    assert_eq!(batches[0], (vec![0.0, 1.0, 2.0, 3.0], vec![0, 1, 2, 0]));
    assert_eq!(batches[2], (vec![8.0, 9.0], vec![2, 0]));
}

#[test]
fn loader_drop_last() {
    let ds = counting(10);
    let norm = Normalization::identity();
    assert_eq!(Loader::new(&ds, &norm, 4, Some(1), true).num_batches(), 2);
    let batches = epoch(&ds, 4, Some(1), true);
    assert_eq!(batches.len(), 2);
    assert!(batches.iter().all(|(x, y)| x.len() == 4 && y.len() == 4));
    // Exactly divisible: nothing is dropped.
    assert_eq!(epoch(&ds, 5, Some(1), true).len(), 2);
    assert_eq!(Loader::new(&ds, &norm, 11, None, true).num_batches(), 0);
    assert_eq!(epoch(&ds, 11, None, true).len(), 0);
}

#[test]
fn loader_shuffle_is_reproducible_and_a_permutation() {
    let ds = counting(1000);
    let a = epoch(&ds, 64, Some(7), false);
    let b = epoch(&ds, 64, Some(7), false);
    let c = epoch(&ds, 64, Some(8), false);
    assert_eq!(a, b, "same seed, same order");
    assert_ne!(a, c, "different seeds, different orders");
    let seen: Vec<usize> = a
        .iter()
        .flat_map(|(x, _)| x.iter().map(|v| *v as usize))
        .collect();
    assert_eq!(seen.len(), 1000);
    assert_eq!(
        seen.iter().copied().collect::<HashSet<_>>().len(),
        1000,
        "each index once"
    );
    assert_ne!(seen, (0..1000).collect::<Vec<_>>(), "actually shuffled");
    // Labels travel with their images.
    for (x, y) in &a {
        for (v, l) in x.iter().zip(y) {
            assert_eq!(*v as u32 % 3, *l);
        }
    }
    let norm = Normalization::identity();
    let order = Loader::new(&ds, &norm, 64, Some(7), false).order().to_vec();
    assert_eq!(order, seen);
}

fn mnist_dir() -> Option<PathBuf> {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    [root.join("../shared/data/mnist"), root.join("assets/mnist")]
        .into_iter()
        .find(|d| d.is_dir())
}

#[test]
fn real_mnist() {
    let Some(dir) = mnist_dir() else {
        eprintln!(
            "\n!!!!! real_mnist SKIPPED: no MNIST at ../shared/data/mnist or assets/mnist !!!!!\n"
        );
        return;
    };
    let train = load_split(&dir, Split::Train).unwrap();
    let test = load_split(&dir, Split::Test).unwrap();
    assert_eq!((train.n, train.c, train.h, train.w), (60000, 1, 28, 28));
    assert_eq!((test.n, test.c, test.h, test.w), (10000, 1, 28, 28));
    assert_eq!((train.num_classes, test.num_classes), (10, 10));
    assert_eq!(train.labels[0], 5);
    assert_eq!(&train.labels[..5], &[5, 0, 4, 1, 9]);
    assert_eq!(&test.labels[..3], &[7, 2, 1]);
    let histogram = |labels: &[u32]| {
        let mut h = [0usize; 10];
        labels.iter().for_each(|&l| h[l as usize] += 1);
        h
    };
    let h = histogram(&train.labels);
    assert_eq!(h.iter().sum::<usize>(), 60000);
    assert_eq!(
        h,
        [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]
    );
    let h = histogram(&test.labels);
    assert_eq!(h.iter().sum::<usize>(), 10000);
    assert_eq!(h, [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]);

    // The usual normalization constants are the training set's pixel statistics.
    let Pixels::U8(p) = &train.pixels else {
        panic!("MNIST pixels are u8")
    };
    let mean = p.iter().map(|&v| f64::from(v)).sum::<f64>() / p.len() as f64 / 255.0;
    let var = p
        .iter()
        .map(|&v| (f64::from(v) / 255.0 - mean).powi(2))
        .sum::<f64>()
        / p.len() as f64;
    assert!((mean - 0.1307).abs() < 1e-4, "mean {mean}");
    assert!((var.sqrt() - 0.3081).abs() < 1e-4, "std {}", var.sqrt());

    // The whole training set, normalized, has mean ~0 and std ~1.
    let norm = Normalization::mnist();
    let x = train.batch(&(0..train.len()).collect::<Vec<_>>(), &norm);
    assert_eq!(x.shape(), &[60000, 1, 28, 28]);
    let n = x.len() as f64;
    let xm = x.iter().map(|&v| f64::from(v)).sum::<f64>() / n;
    let xs = (x.iter().map(|&v| (f64::from(v) - xm).powi(2)).sum::<f64>() / n).sqrt();
    assert!(
        xm.abs() < 1e-3 && (xs - 1.0).abs() < 1e-3,
        "mean {xm}, std {xs}"
    );
    let first = train.batch(&[0], &norm);
    // Pixel (row 14, col 14) of the first image (a "5"), hand-normalized from the raw byte.
    let raw = f32::from(p[14 * 28 + 14]);
    assert!(close(
        first[[0, 0, 14, 14]],
        (raw / 255.0 - 0.1307) / 0.3081
    ));
}
