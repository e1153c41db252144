//! The integer model's description: a straight list of [`Step`]s over numbered buffers
//! ("slots", u8 or f32, one image-chunk each), and the [`LayerSpec`]s of its Conv2d/Linear layers
//! with their quantization grids. Serializable (RON in a bundle's metadata); weights and biases
//! are named tensors stored beside it.
//!
//! Layout: activations are **NHWC** inside the runtime (an integer GEMM's output rows are pixels,
//! its columns channels), so convolution weights are stored `[cout, kh, kw, cin/groups]`, and a
//! Linear after a Flatten of an NHWC map has its columns permuted at conversion. Quantized
//! activations are stored as u8 `u = q + offset` (offset 128 for a signed grid), so every grid
//! below has its zero point and bounds in that stored domain.
//!
//! [`ModelSpec::shapes`] re-derives every slot's per-image shape from the input shape with
//! checked arithmetic and a size cap: nothing in a (possibly hostile) description can make the
//! engine index out of range or allocate without bound (`validate.rs`). Depends on `ops` (pool
//! attributes only).

use super::error::{RuntimeError, invalid};
use crate::data::Normalization;
use serde::{Deserialize, Serialize};

/// Largest per-image element count of any slot, and of all slots together (the engine
/// allocates `chunk · elems` per slot).
pub const MAX_SLOT_ELEMS: usize = 1 << 26;

/// A per-tensor u8 grid in the stored domain: `x ≈ (u − zero_point) · scale`, `lo ≤ u ≤ hi`.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct QGrid {
    pub scale: f32,
    pub zero_point: i32,
    pub lo: i32,
    pub hi: i32,
}

impl QGrid {
    /// `1 / scale`, the multiplier the fake quantizer uses.
    pub fn inv_scale(&self) -> f32 {
        1.0 / self.scale
    }

    /// Checks `scale` finite and positive, `0 ≤ lo ≤ zero_point ≤ hi ≤ 255`.
    pub fn validate(&self, what: &str) -> Result<(), RuntimeError> {
        let ok = self.scale.is_finite()
            && self.scale > 0.0
            && 0 <= self.lo
            && self.lo <= self.zero_point
            && self.zero_point <= self.hi
            && self.hi <= 255;
        if ok {
            Ok(())
        } else {
            Err(invalid(format!(
                "{what}: grid {self:?} needs a finite positive scale and 0 <= lo <= zero point <= hi <= 255"
            )))
        }
    }

    /// Bitwise equality (same scale bits, zero point and bounds).
    pub fn same(&self, o: &QGrid) -> bool {
        self.scale.to_bits() == o.scale.to_bits()
            && (self.zero_point, self.lo, self.hi) == (o.zero_point, o.lo, o.hi)
    }
}

/// An activation applied after a layer or an Add (in float, or as a clamp of quantized output).
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub enum Act {
    None,
    Relu,
    Clip { min: f32, max: f32 },
    Sigmoid,
    HardSigmoid { alpha: f32, beta: f32 },
    HardSwish,
}

impl Act {
    /// The activation on one float value (the float ops' formulas).
    #[inline]
    pub fn apply(self, v: f32) -> f32 {
        match self {
            Act::None => v,
            Act::Relu => v.max(0.0),
            Act::Clip { min, max } => v.clamp(min, max),
            Act::Sigmoid => crate::ops::smooth::sigmoid1(v),
            Act::HardSigmoid { alpha, beta } => crate::ops::smooth::hard_sigmoid1(alpha, beta, v),
            Act::HardSwish => crate::ops::smooth::hard_swish1(v),
        }
    }
}

/// How weights are stored (and computed).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum WeightStorage {
    /// One s8 per weight.
    S8,
    /// Two per byte, low nibble first; signed (-8..7) or unsigned (0..15).
    Int4 { signed: bool },
    /// IEEE half; converted to f32 with F16C when the model is built.
    F16,
    /// f32.
    F32,
}

/// How an integer layer's s32 accumulators become the next grid's u8.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, Default)]
pub enum Requantization {
    /// `zp + round_half_even((acc + bias_q) · M / 2^shift)` with a 31-bit fixed-point multiplier
    /// `M/2^shift ≈ s_in · s_w / s_out` and the bias rounded to s32 at scale `s_in · s_w`,
    /// fused into the GEMM epilogue (or applied per row when the clamp is not the kernel's).
    FixedPoint,
    /// `round_half_even((acc · (s_in · s_w) + bias) · (1 / s_out)) + zp` in f32: the simulation's
    /// formula with the convolution sum taken exactly. The default: it matches the simulation
    /// more often (seed-cnn int8 on MNIST test: 99.99% of logits bit-equal vs 99.64%). Speed:
    /// its epilogue is vectorized but unfused (the GEMM writes s32 first); against the fused
    /// 64-bit fixed-point rounding, measurements on a loaded shared machine ranged from equal to
    /// 0.65x at batch 64 — still to be settled on a quiet machine.
    #[default]
    Float,
}

/// Geometry of a convolution (kernel size and channels live in [`LayerSpec`]).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConvGeom {
    pub cin: usize,
    pub kh: usize,
    pub kw: usize,
    pub stride: [usize; 2],
    /// [top, left, bottom, right].
    pub pads: [usize; 4],
    pub dilation: [usize; 2],
    pub groups: usize,
}

/// Conv2d or Linear.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum LayerKind {
    Conv(ConvGeom),
    /// Input: all `h · w · c` values of an image (NHWC order), as the columns were permuted.
    Linear {
        inputs: usize,
    },
}

/// One Conv2d/Linear layer.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LayerSpec {
    /// The graph node it came from.
    pub name: String,
    pub kind: LayerKind,
    pub cout: usize,
    pub storage: WeightStorage,
    /// Tensor name of the weights: `cout x K` row-major, K = `kh·kw·cin/groups` in (i, j, c)
    /// order for a convolution, `inputs` for a Linear.
    pub weight: String,
    /// Per output channel (one value = per tensor), integer storage only.
    pub weight_scale: Vec<f32>,
    /// Per output channel, in the s8 domain the weights are stored in.
    pub weight_zero_point: Vec<i32>,
    /// Tensor name of the f32 bias, if any.
    pub bias: Option<String>,
    /// The input grid when the layer computes in integers; `None`: f32 compute.
    pub input: Option<QGrid>,
    pub act: Act,
    /// The output grid (u8 output) or `None` (f32 output).
    pub output: Option<QGrid>,
}

impl LayerSpec {
    /// The GEMM depth per group.
    pub fn k(&self) -> usize {
        match &self.kind {
            LayerKind::Conv(g) => g.kh * g.kw * (g.cin / g.groups.max(1)),
            LayerKind::Linear { inputs } => *inputs,
        }
    }

    /// Weight count (`cout · K`).
    pub fn weight_len(&self) -> Option<usize> {
        self.cout.checked_mul(self.k())
    }
}

/// Pooling window.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PoolSpec {
    pub kernel: [usize; 2],
    pub stride: [usize; 2],
    pub pads: [usize; 4],
    pub ceil_mode: bool,
    pub count_include_pad: bool,
}

impl PoolSpec {
    pub(crate) fn attrs(&self) -> crate::ops::PoolAttrs {
        crate::ops::PoolAttrs {
            kernel: self.kernel,
            stride: self.stride,
            pads: self.pads,
            ceil_mode: self.ceil_mode,
            count_include_pad: self.count_include_pad,
        }
    }
}

/// Slot element type.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum SlotKind {
    U8,
    F32,
}

/// Per-image shape of a slot: NHWC `h x w x c` (a flat vector is `1 x 1 x f`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Dims {
    pub h: usize,
    pub w: usize,
    pub c: usize,
}

impl Dims {
    pub fn flat(f: usize) -> Self {
        Dims { h: 1, w: 1, c: f }
    }
    pub fn elems(&self) -> usize {
        self.h * self.w * self.c
    }
}

/// One step of the program; `src`/`dst` are slot indices (slot 0 is the f32 NCHW input).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum Step {
    /// f32 NCHW -> f32 NHWC.
    ToHwc { src: usize, dst: usize },
    /// f32 NHWC -> f32 in CHW order (flat).
    ToChw { src: usize, dst: usize },
    /// f32 -> u8: `clamp(round_half_even(x · (1/s)) + zp, lo, hi)`.
    Quantize { src: usize, dst: usize, grid: QGrid },
    /// u8 -> f32: `(u − zp) · s`.
    Dequantize { src: usize, dst: usize, grid: QGrid },
    /// u8 -> u8 through the float value (exactly the simulation's dequantize + fake-quant).
    Requantize {
        src: usize,
        dst: usize,
        from: QGrid,
        to: QGrid,
    },
    /// f32 -> f32 rounded through half precision.
    Fp16 { src: usize, dst: usize },
    /// A Conv2d or Linear layer (index into [`ModelSpec::layers`]).
    Layer {
        src: usize,
        dst: usize,
        layer: usize,
    },
    /// Max pooling, u8 -> u8 (exact on the grid) or f32 -> f32.
    MaxPool {
        src: usize,
        dst: usize,
        pool: PoolSpec,
    },
    /// Average pooling to f32; from u8 when `input` is given (integer window sums).
    AvgPool {
        src: usize,
        dst: usize,
        pool: PoolSpec,
        input: Option<QGrid>,
    },
    /// Mean over h x w to `1 x 1 x c` f32; from u8 when `input` is given.
    GlobalAvgPool {
        src: usize,
        dst: usize,
        input: Option<QGrid>,
    },
    /// Elementwise `a + b` (each u8 with its grid, or f32), then `act`, then quantized to
    /// `output` (u8) or kept f32.
    Add {
        a: usize,
        b: usize,
        dst: usize,
        a_grid: Option<QGrid>,
        b_grid: Option<QGrid>,
        act: Act,
        output: Option<QGrid>,
    },
    /// f32 -> f32 activation.
    Activation { src: usize, dst: usize, act: Act },
    /// u8 -> u8 `max(u, lo)`: ReLU of a quantized value (`lo` = its zero point).
    ClampU8 { src: usize, dst: usize, lo: u8 },
    /// f32 `a ⊙ b`, `b` of `a`'s shape or `1 x 1 x c` (a squeeze-excitation gate, broadcast over
    /// the pixels).
    Mul { a: usize, b: usize, dst: usize },
    /// f32 NHWC `[a, b, more...]` along the channels (same h x w): one step for any number of
    /// inputs (DenseNet concatenates up to 49), so nothing grows quadratically.
    Concat {
        a: usize,
        b: usize,
        dst: usize,
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        more: Vec<usize>,
    },
    /// Channels picked from an NHWC slot (u8 or f32, the grid unchanged): output channel `j`
    /// is input channel `channels[j]` (ShuffleNet's channel shuffle and split).
    GatherChannels {
        src: usize,
        dst: usize,
        channels: Vec<usize>,
    },
    /// f32 BatchNorm with running statistics, per channel (the innermost NHWC axis):
    /// `((x - mean) · inv_std) · gamma + beta`, the float op's formula and order (a BatchNorm
    /// PTQ could not fold, e.g. after a Concat in DenseNet).
    BatchNorm {
        src: usize,
        dst: usize,
        mean: Vec<f32>,
        inv_std: Vec<f32>,
        gamma: Vec<f32>,
        beta: Vec<f32>,
    },
}

impl Step {
    /// Slots read.
    pub fn sources(&self) -> Vec<usize> {
        match *self {
            Step::Concat { a, b, ref more, .. } => {
                [a, b].into_iter().chain(more.iter().copied()).collect()
            }
            Step::Add { a, b, .. } | Step::Mul { a, b, .. } => vec![a, b],
            Step::ToHwc { src, .. }
            | Step::ToChw { src, .. }
            | Step::Quantize { src, .. }
            | Step::Dequantize { src, .. }
            | Step::Requantize { src, .. }
            | Step::Fp16 { src, .. }
            | Step::Layer { src, .. }
            | Step::MaxPool { src, .. }
            | Step::AvgPool { src, .. }
            | Step::GlobalAvgPool { src, .. }
            | Step::Activation { src, .. }
            | Step::BatchNorm { src, .. }
            | Step::GatherChannels { src, .. }
            | Step::ClampU8 { src, .. } => vec![src],
        }
    }

    /// Slot written.
    pub fn dst(&self) -> usize {
        match *self {
            Step::ToHwc { dst, .. }
            | Step::ToChw { dst, .. }
            | Step::Quantize { dst, .. }
            | Step::Dequantize { dst, .. }
            | Step::Requantize { dst, .. }
            | Step::Fp16 { dst, .. }
            | Step::Layer { dst, .. }
            | Step::MaxPool { dst, .. }
            | Step::AvgPool { dst, .. }
            | Step::GlobalAvgPool { dst, .. }
            | Step::Add { dst, .. }
            | Step::Mul { dst, .. }
            | Step::Concat { dst, .. }
            | Step::Activation { dst, .. }
            | Step::BatchNorm { dst, .. }
            | Step::GatherChannels { dst, .. }
            | Step::ClampU8 { dst, .. } => dst,
        }
    }
}

/// The whole integer model without its tensors.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ModelSpec {
    /// The source graph's name.
    pub name: String,
    /// One input image, [c, h, w] (NCHW f32, normalised as `normalization` says).
    pub input_shape: [usize; 3],
    /// Shape of one output (without the batch axis), e.g. [10]; its element count equals the
    /// output slot's.
    pub output_shape: Vec<usize>,
    pub slots: Vec<SlotKind>,
    pub steps: Vec<Step>,
    /// The f32 slot holding the output.
    pub output: usize,
    pub layers: Vec<LayerSpec>,
    pub requantization: Requantization,
    pub normalization: Normalization,
    pub class_names: Vec<String>,
}

/// Output size of a window sweep (the float pooling/conv rule), `None` when it does not fit.
pub(crate) fn sweep(
    len: usize,
    pad0: usize,
    pad1: usize,
    span: usize,
    stride: usize,
) -> Option<usize> {
    let padded = len.checked_add(pad0)?.checked_add(pad1)?;
    if span == 0 || stride == 0 || padded < span {
        return None;
    }
    Some((padded - span) / stride + 1)
}

mod validate;
