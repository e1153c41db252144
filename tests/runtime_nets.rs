//! The integer runtime on the other built-in architectures (random weights, real MNIST images):
//! resnet-mini exercises BatchNorm folding, residual Adds (fused with ReLU and the next
//! quantizer) and global average pooling; mobilenet-mini grouped (depthwise) convolutions and
//! ReLU6 clamps; lenet5 5x5 kernels and three Linear layers; the `gates_concat.onnx` fixture
//! HardSwish, a squeeze-excitation gate (HardSigmoid, Mul broadcast over the pixels), SiLU and a
//! fire module's Concat; `shuffle_block.onnx` ShuffleNet's
//! channel split and shuffle; `dense_block.onnx` DenseNet's BatchNorm after a Concat of every
//! earlier feature map. The integer model's predictions must agree with the fake-quant
//! simulation.

use qatlas::data::{Loader, Normalization, Split, load_split};
use qatlas::quant::plan::{Precision, QuantPlan};
use qatlas::quant::ptq;
use qatlas::runtime::spec::Step;
use qatlas::runtime::{ConvertOptions, IntModel, Requantization};
use qatlas::zoo::Arch;
use std::path::PathBuf;
use std::sync::atomic::AtomicBool;

fn agreement(arch: Arch, mode: Requantization) -> (IntModel, f64, f64, f32) {
    let g = arch.build([1, 28, 28], 10, 3).unwrap();
    agreement_of(g, arch.name(), mode)
}

fn agreement_of(
    g: qatlas::graph::Graph,
    name: &str,
    mode: Requantization,
) -> (IntModel, f64, f64, f32) {
    let mnist = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("assets/mnist");
    let norm = Normalization::mnist();
    let calib = load_split(&mnist, Split::Train).unwrap().limit(256);
    let test = load_split(&mnist, Split::Test).unwrap().limit(500);
    let plan = QuantPlan::default_for(&g, Precision::Int8);
    let batches = Loader::new(&calib, &norm, 128, None, false).map(|(x, _)| x);
    let res = ptq(&g, &plan, batches, &AtomicBool::new(false), &mut |_| {}).unwrap();
    let opts = ConvertOptions {
        requantization: mode,
        ..ConvertOptions::default()
    };
    let m = IntModel::convert(&res.prepared.graph, &opts).unwrap();
    let (mut same, mut equal, mut n, mut logits, mut max_diff) = (0, 0, 0, 0, 0f32);
    for (x, _) in Loader::new(&test, &norm, 100, None, false) {
        let a = res.prepared.graph.infer(&x).unwrap();
        let b = m.infer(&x).unwrap();
        for (ra, rb) in a.outer_iter().zip(b.outer_iter()) {
            let am = |r: &ndarray::ArrayViewD<f32>| {
                r.iter()
                    .enumerate()
                    .fold(
                        (0, f32::MIN),
                        |best, (i, &v)| if v > best.1 { (i, v) } else { best },
                    )
                    .0
            };
            same += (am(&ra) == am(&rb)) as usize;
            n += 1;
            for (u, v) in ra.iter().zip(rb.iter()) {
                equal += (u == v) as usize;
                logits += 1;
                max_diff = max_diff.max((u - v).abs());
            }
        }
    }
    let (agree, eq) = (same as f64 / n as f64, equal as f64 / logits as f64);
    eprintln!(
        "{} {mode:?}: argmax agree {:.2}% of {n}, logits equal {:.2}%, max |diff| {max_diff:.4}",
        name,
        agree * 100.0,
        eq * 100.0
    );
    (m, agree, eq, max_diff)
}

#[test]
fn resnet_mini_folded_bn_and_residual_adds_match_simulation() {
    for mode in [Requantization::Float, Requantization::FixedPoint] {
        let (m, agree, eq, _) = agreement(Arch::ResnetMini, mode);
        let adds: Vec<&Step> = m
            .spec()
            .steps
            .iter()
            .filter(|s| matches!(s, Step::Add { .. }))
            .collect();
        assert_eq!(adds.len(), 2);
        // block1's Add feeds the next convolution's quantizer: fused to u8; block2's feeds the
        // global average pool in f32.
        assert!(matches!(
            adds[0],
            Step::Add {
                output: Some(_),
                ..
            }
        ));
        assert!(matches!(adds[1], Step::Add { output: None, .. }));
        assert!(m.layers().iter().all(|l| l.compute == "int"));
        assert!(agree >= 0.99, "{agree}");
        assert!(eq >= 0.5, "{eq}");
    }
}

#[test]
fn mobilenet_mini_depthwise_and_relu6_match_simulation() {
    let (_, agree, _, _) = agreement(Arch::MobilenetMini, Requantization::Float);
    assert!(agree >= 0.99, "{agree}");
}

#[test]
fn lenet5_matches_simulation() {
    let (_, agree, eq, _) = agreement(Arch::Lenet5, Requantization::Float);
    assert!(agree >= 0.99, "{agree}");
    assert!(eq >= 0.9, "{eq}");
}

#[test]
fn gates_and_concat_of_mobile_cnns_match_simulation() {
    let f = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/onnx/gates_concat.onnx");
    let g = qatlas::io::load_onnx(&f).unwrap().graph;
    let (m, agree, eq, _) = agreement_of(g, "gates_concat", Requantization::Float);
    let steps = &m.spec().steps;
    use qatlas::runtime::spec::Act;
    for act in [Act::HardSwish, Act::Sigmoid] {
        assert!(
            steps
                .iter()
                .any(|s| matches!(s, Step::Activation { act: a, .. } if *a == act)),
            "{act:?}"
        );
    }
    assert!(steps.iter().any(|s| matches!(
        s,
        Step::Activation {
            act: Act::HardSigmoid { .. },
            ..
        }
    )));
    assert!(steps.iter().any(|s| matches!(s, Step::Mul { .. })));
    assert!(steps.iter().any(|s| matches!(s, Step::Concat { .. })));
    assert!(agree >= 0.99, "{agree}");
    assert!(eq >= 0.5, "{eq}");
}

#[test]
fn dense_blocks_batchnorm_after_concat_match_simulation() {
    // DenseNet's pattern: BatchNorm after a Concat of every earlier feature map, which PTQ
    // cannot fold into a convolution: a BatchNorm step, one Concat step per node.
    let f = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/onnx/dense_block.onnx");
    let g = qatlas::io::load_onnx(&f).unwrap().graph;
    let (m, agree, eq, _) = agreement_of(g, "dense_block", Requantization::Float);
    let steps = &m.spec().steps;
    let bn = steps
        .iter()
        .filter(|s| matches!(s, Step::BatchNorm { .. }))
        .count();
    assert_eq!(bn, 4, "one BatchNorm step per unfoldable BatchNorm");
    assert!(
        steps
            .iter()
            .any(|s| matches!(s, Step::Concat { more, .. } if more.len() == 2))
    );
    assert!(agree >= 0.99, "{agree}");
    assert!(eq >= 0.5, "{eq}");
}

#[test]
fn shufflenet_channel_split_and_shuffle_match_simulation() {
    // `chunk` (Slice along the channels) and the channel shuffle (Reshape to 5-D, Transpose,
    // Reshape back) become channel gathers: values move, nothing is computed.
    let f =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/onnx/shuffle_block.onnx");
    let g = qatlas::io::load_onnx(&f).unwrap().graph;
    let (m, agree, eq, _) = agreement_of(g, "shuffle_block", Requantization::Float);
    let gathers = m
        .spec()
        .steps
        .iter()
        .filter(|s| matches!(s, Step::GatherChannels { .. }))
        .count();
    assert_eq!(gathers, 3, "two halves of the split and one shuffle");
    assert!(agree >= 0.99, "{agree}");
    assert!(eq >= 0.5, "{eq}");
}

#[test]
fn unsupported_patterns_name_the_node() {
    // A float resnet-mini still has BatchNorm nodes: convert wants the folded fake-quant model.
    let g = Arch::ResnetMini.build([1, 28, 28], 10, 3).unwrap();
    let e = IntModel::convert(&g, &ConvertOptions::default())
        .err()
        .expect("BatchNorm must be refused")
        .to_string();
    assert!(e.contains("stem.bn") && e.contains("folded"), "{e}");
}
