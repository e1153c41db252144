//! Built-in architectures: `seed-cnn` (the reference network of the quantization article the
//! product follows), `lenet5`, `resnet-mini` (residual blocks with BatchNorm and Add) and
//! `mobilenet-mini` (depthwise-separable convolutions with BatchNorm and ReLU6).
//! Each exercises something quantization must handle. Depends on `graph` and `ops` only.

use crate::graph::{Graph, GraphBuilder, GraphError, ValueId};
use crate::ops::{ClipAttrs, Conv2dAttrs, FlattenAttrs, OpKind, PoolAttrs};
use serde::{Deserialize, Serialize};

/// A built-in architecture.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
pub enum Arch {
    #[value(name = "seed-cnn")]
    SeedCnn,
    #[value(name = "lenet5")]
    Lenet5,
    #[value(name = "resnet-mini")]
    ResnetMini,
    #[value(name = "mobilenet-mini")]
    MobilenetMini,
}

impl Arch {
    /// All architectures.
    pub const ALL: [Arch; 4] = [
        Arch::SeedCnn,
        Arch::Lenet5,
        Arch::ResnetMini,
        Arch::MobilenetMini,
    ];

    /// The command-line name.
    pub fn name(self) -> &'static str {
        match self {
            Arch::SeedCnn => "seed-cnn",
            Arch::Lenet5 => "lenet5",
            Arch::ResnetMini => "resnet-mini",
            Arch::MobilenetMini => "mobilenet-mini",
        }
    }

    /// Builds the network for `[c, h, w]` inputs and `classes` outputs, initialised from `seed`.
    pub fn build(self, input: [usize; 3], classes: usize, seed: u64) -> Result<Graph, GraphError> {
        match self {
            Arch::SeedCnn => seed_cnn(input, classes, seed),
            Arch::Lenet5 => lenet5(input, classes, seed),
            Arch::ResnetMini => resnet_mini(input, classes, seed),
            Arch::MobilenetMini => mobilenet_mini(input, classes, seed),
        }
    }
}

fn relu(b: &mut GraphBuilder, name: &str, x: ValueId) -> ValueId {
    b.unary(name, OpKind::Relu, x)
}

fn flatten(b: &mut GraphBuilder, x: ValueId) -> ValueId {
    b.unary("flatten", OpKind::Flatten(FlattenAttrs { axis: 1 }), x)
}

/// Conv(c->16,3x3,p1)-ReLU-MaxPool(2)-Conv(16->32,3x3,p1)-ReLU-Flatten-Linear(32·h/2·w/2 -> classes).
pub fn seed_cnn([c, h, w]: [usize; 3], classes: usize, seed: u64) -> Result<Graph, GraphError> {
    let mut b = GraphBuilder::new("seed-cnn", &[c, h, w], seed);
    let x = b.input("input");
    let x = b.conv("conv1", x, c, 16, 3, Conv2dAttrs::simple(1, 1), true);
    let x = relu(&mut b, "relu1", x);
    let x = b.unary("pool1", OpKind::MaxPool2d(PoolAttrs::square(2, 2)), x);
    let x = b.conv("conv2", x, 16, 32, 3, Conv2dAttrs::simple(1, 1), true);
    let x = relu(&mut b, "relu2", x);
    let x = flatten(&mut b, x);
    let x = b.linear("fc", x, 32 * (h / 2) * (w / 2), classes);
    b.finish(&[x])
}

/// LeNet-5 (ReLU, max pooling): Conv(6,5x5,p2)-Pool-Conv(16,5x5)-Pool-FC120-FC84-FC.
pub fn lenet5([c, h, w]: [usize; 3], classes: usize, seed: u64) -> Result<Graph, GraphError> {
    let mut b = GraphBuilder::new("lenet5", &[c, h, w], seed);
    let x = b.input("input");
    let x = b.conv("conv1", x, c, 6, 5, Conv2dAttrs::simple(1, 2), true);
    let x = relu(&mut b, "relu1", x);
    let x = b.unary("pool1", OpKind::MaxPool2d(PoolAttrs::square(2, 2)), x);
    let x = b.conv("conv2", x, 6, 16, 5, Conv2dAttrs::simple(1, 0), true);
    let x = relu(&mut b, "relu2", x);
    let x = b.unary("pool2", OpKind::MaxPool2d(PoolAttrs::square(2, 2)), x);
    let x = flatten(&mut b, x);
    let (fh, fw) = (
        ((h / 2).saturating_sub(4)) / 2,
        ((w / 2).saturating_sub(4)) / 2,
    );
    let x = b.linear("fc1", x, 16 * fh * fw, 120);
    let x = relu(&mut b, "relu3", x);
    let x = b.linear("fc2", x, 120, 84);
    let x = relu(&mut b, "relu4", x);
    let x = b.linear("fc3", x, 84, classes);
    b.finish(&[x])
}

fn conv_bn(
    b: &mut GraphBuilder,
    name: &str,
    x: ValueId,
    cin: usize,
    cout: usize,
    k: usize,
    attrs: Conv2dAttrs,
) -> ValueId {
    let x = b.conv(name, x, cin, cout, k, attrs, false);
    b.batchnorm(&format!("{name}.bn"), x, cout)
}

fn basic_block(b: &mut GraphBuilder, name: &str, x: ValueId, c: usize) -> ValueId {
    let y = conv_bn(
        b,
        &format!("{name}.conv1"),
        x,
        c,
        c,
        3,
        Conv2dAttrs::simple(1, 1),
    );
    let y = relu(b, &format!("{name}.relu1"), y);
    let y = conv_bn(
        b,
        &format!("{name}.conv2"),
        y,
        c,
        c,
        3,
        Conv2dAttrs::simple(1, 1),
    );
    let y = b.node(&format!("{name}.add"), OpKind::Add, &[y, x]);
    relu(b, &format!("{name}.relu2"), y)
}

/// Stem Conv-BN-ReLU(16); residual block(16); Conv-BN-ReLU stride 2 (32); residual block(32);
/// global average pool; Linear(32 -> classes). The same layout as the shared ONNX fixture.
pub fn resnet_mini([c, h, w]: [usize; 3], classes: usize, seed: u64) -> Result<Graph, GraphError> {
    let mut b = GraphBuilder::new("resnet-mini", &[c, h, w], seed);
    let x = b.input("input");
    let x = conv_bn(&mut b, "stem", x, c, 16, 3, Conv2dAttrs::simple(1, 1));
    let x = relu(&mut b, "stem.relu", x);
    let x = basic_block(&mut b, "block1", x, 16);
    let x = conv_bn(&mut b, "down", x, 16, 32, 3, Conv2dAttrs::simple(2, 1));
    let x = relu(&mut b, "down.relu", x);
    let x = basic_block(&mut b, "block2", x, 32);
    let x = b.unary("gap", OpKind::GlobalAvgPool, x);
    let x = flatten(&mut b, x);
    let x = b.linear("fc", x, 32, classes);
    b.finish(&[x])
}

fn separable(
    b: &mut GraphBuilder,
    name: &str,
    x: ValueId,
    cin: usize,
    cout: usize,
    stride: usize,
) -> ValueId {
    let dw = Conv2dAttrs {
        groups: cin,
        ..Conv2dAttrs::simple(stride, 1)
    };
    let x = conv_bn(b, &format!("{name}.dw"), x, cin, cin, 3, dw);
    let x = b.unary(
        &format!("{name}.dw.relu6"),
        OpKind::Clip(ClipAttrs::relu6()),
        x,
    );
    let x = conv_bn(
        b,
        &format!("{name}.pw"),
        x,
        cin,
        cout,
        1,
        Conv2dAttrs::simple(1, 0),
    );
    b.unary(
        &format!("{name}.pw.relu6"),
        OpKind::Clip(ClipAttrs::relu6()),
        x,
    )
}

/// Conv-BN-ReLU6(16) then depthwise-separable blocks 16->32 (stride 2), 32->64 (stride 2),
/// 64->64; global average pool; Linear(64 -> classes).
pub fn mobilenet_mini(
    [c, h, w]: [usize; 3],
    classes: usize,
    seed: u64,
) -> Result<Graph, GraphError> {
    let mut b = GraphBuilder::new("mobilenet-mini", &[c, h, w], seed);
    let x = b.input("input");
    let x = conv_bn(&mut b, "stem", x, c, 16, 3, Conv2dAttrs::simple(1, 1));
    let x = b.unary("stem.relu6", OpKind::Clip(ClipAttrs::relu6()), x);
    let x = separable(&mut b, "sep1", x, 16, 32, 2);
    let x = separable(&mut b, "sep2", x, 32, 64, 2);
    let x = separable(&mut b, "sep3", x, 64, 64, 1);
    let x = b.unary("gap", OpKind::GlobalAvgPool, x);
    let x = flatten(&mut b, x);
    let x = b.linear("fc", x, 64, classes);
    b.finish(&[x])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn architectures_build_with_expected_sizes() {
        let g = Arch::SeedCnn.build([1, 28, 28], 10, 0).unwrap();
        // 16*9+16 + 32*144+32 + 6272*10+10
        assert_eq!(g.num_trainable(), 160 + 4640 + 62730);
        let l = Arch::Lenet5.build([1, 28, 28], 10, 0).unwrap();
        assert_eq!(l.num_trainable(), 61706);
        for a in Arch::ALL {
            let g = a.build([3, 32, 32], 7, 1).unwrap();
            let s = g.infer_shapes(5).unwrap();
            assert_eq!(s[g.outputs[0]], vec![5, 7], "{}", a.name());
        }
    }
}
