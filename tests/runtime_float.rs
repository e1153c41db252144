//! The float runtime (`IntModel::from_float`: BatchNorm folded, every layer in f32 in NHWC with
//! fused epilogues) against the graph executor (`Graph::infer`) on real MNIST images: the
//! built-in architectures with non-trivial BatchNorm statistics (so the folding matters) and the
//! ONNX fixtures of the mobile, shuffle and dense patterns. Outputs must agree to f32 summation
//! order, and every Conv/Linear must compute in float.

use qatlas::data::{Loader, Normalization, Split, load_split};
use qatlas::graph::Graph;
use qatlas::runtime::{ConvertOptions, IntModel};
use qatlas::tensor::Tensor;
use qatlas::zoo::Arch;
use std::path::PathBuf;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// 32 normalised MNIST test images.
fn images() -> Tensor {
    let test = load_split(&root().join("assets/mnist"), Split::Test)
        .unwrap()
        .limit(32);
    Loader::new(&test, &Normalization::mnist(), 32, None, false)
        .next()
        .unwrap()
        .0
}

/// BatchNorm statistics and affine parameters away from the identity (a freshly built model's
/// BatchNorm is the identity, which would hide a wrong fold).
fn perturb_batchnorm(g: &mut Graph) {
    use rand::{Rng, SeedableRng};
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(7);
    let mut next = move || rng.random::<f32>();
    for p in &mut g.params {
        let kind = p.name.rsplit('.').next().unwrap_or("").to_string();
        if !p.name.contains("bn") {
            continue;
        }
        for v in p.tensor.iter_mut() {
            *v = match kind.as_str() {
                "weight" => 0.5 + next(),
                "bias" | "running_mean" => next() - 0.5,
                "running_var" => 0.3 + 1.7 * next(),
                _ => *v,
            };
        }
    }
}

/// Relative L2 distance of the float runtime's outputs from the graph executor's.
fn check(g: &Graph, name: &str, x: &Tensor) -> f64 {
    let m = IntModel::from_float(g, &ConvertOptions::default())
        .unwrap_or_else(|e| panic!("{name}: {e}"));
    for l in m.layers() {
        assert_eq!(l.compute, "float", "{name}: layer {}", l.name);
        assert!(
            l.kernel.is_none(),
            "{name}: layer {} on an int8 kernel",
            l.name
        );
    }
    let (a, b) = (g.infer(x).unwrap(), m.infer(x).unwrap());
    assert_eq!(a.shape(), b.shape(), "{name}");
    let (mut num, mut den) = (0.0f64, 0.0f64);
    for (p, q) in a.iter().zip(b.iter()) {
        num += f64::from(p - q).powi(2);
        den += f64::from(*p).powi(2);
    }
    let rel = (num / den.max(1e-30)).sqrt();
    assert!(rel < 1e-5, "{name}: relative L2 {rel:e}");
    rel
}

#[test]
fn built_in_architectures_match_the_graph_executor() {
    let x = images();
    for arch in [
        Arch::SeedCnn,
        Arch::ResnetMini,
        Arch::MobilenetMini,
        Arch::Lenet5,
    ] {
        let mut g = arch.build([1, 28, 28], 10, 5).unwrap();
        perturb_batchnorm(&mut g);
        check(&g, arch.name(), &x);
    }
}

#[test]
fn mobile_shuffle_and_dense_patterns_match_the_graph_executor() {
    for fixture in ["gates_concat", "shuffle_block", "dense_block"] {
        let path = root().join(format!("tests/fixtures/onnx/{fixture}.onnx"));
        let g = qatlas::io::load_onnx(&path).unwrap().graph;
        assert_eq!(g.input_shape, vec![1, 28, 28], "{fixture}");
        check(&g, fixture, &images());
    }
}

#[test]
fn a_single_large_image_matches_the_same_image_in_a_batch() {
    // 64x64 inputs: a lone image's im2row is large enough to run in bands on the pool
    // (`nhwc::im2row_banded`), while in a batch of 4 each image runs whole on one thread.
    let mut g = Arch::ResnetMini.build([1, 64, 64], 10, 9).unwrap();
    perturb_batchnorm(&mut g);
    let m = IntModel::from_float(&g, &ConvertOptions::default()).unwrap();
    let x = qatlas::tensor::from_vec(
        &[4, 1, 64, 64],
        (0..4 * 64 * 64)
            .map(|i| ((i * 37 % 101) as f32 - 50.0) / 25.0)
            .collect(),
    );
    let batch = m.infer(&x).unwrap();
    let one = x
        .slice_axis(ndarray::Axis(0), ndarray::Slice::from(0..1))
        .to_owned();
    let lone = m.infer(&one).unwrap();
    let row: Vec<f32> = batch.iter().take(10).copied().collect();
    assert_eq!(lone.iter().copied().collect::<Vec<_>>(), row);
    check(&g, "resnet-mini 64x64", &x);
}
