//! Operators of the float engine: attributes, forward, backward and shape rule, one file per op
//! family, each with a finite-difference gradient check.
//!
//! Ops know tensors only: they never see the graph (the graph imports the ops, never the
//! reverse). Every op has exactly one output. Parameters (weights, BatchNorm statistics) arrive as
//! ordinary inputs; an op reports running-statistic updates through [`Forward::updates`] instead
//! of mutating them. Depends on `tensor` and `kernels` only.

pub mod activation;
pub mod add;
pub mod batchnorm;
pub mod channel_scale;
pub mod concat;
pub mod conv;
pub mod dropout;
pub mod error;
pub mod fake_quant;
pub mod im2col;
pub mod layernorm;
pub mod layout;
pub mod linear;
pub mod loss;
pub mod lrn;
pub mod matmul;
pub mod mul;
pub mod par;
pub mod pool;
pub mod reshape;
pub mod scratch;
pub mod smooth;
pub mod softmax;

#[cfg(test)]
pub mod gradcheck;

use crate::tensor::Tensor;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

pub use activation::ClipAttrs;
pub use batchnorm::BatchNormAttrs;
pub use channel_scale::{BnScaleAttrs, ChannelAffineAttrs};
pub use concat::ConcatAttrs;
pub use conv::Conv2dAttrs;
pub use dropout::DropoutAttrs;
pub use error::OpError;
pub use fake_quant::{FakeQuantAttrs, FqObserver, QuantGrid};
pub use layernorm::LayerNormAttrs;
pub use layout::{SliceAttrs, TransposeAttrs};
pub use lrn::LrnAttrs;
pub use pool::PoolAttrs;
pub use reshape::{FlattenAttrs, ReshapeAttrs};
pub use smooth::HardSigmoidAttrs;
pub use softmax::SoftmaxAttrs;

/// Whether an op runs for training (batch statistics, dropout active) or inference.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    Train,
    Eval,
}

/// The operator of a graph node, with its attributes.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum OpKind {
    /// Inputs: x [N,Cin,H,W], weight [Cout,Cin/groups,kh,kw], optional bias [Cout].
    Conv2d(Conv2dAttrs),
    /// Inputs: x [N,in], weight [out,in], optional bias [out]: `y = x·Wᵀ + b`.
    Linear,
    /// Inputs: a [..,M,K], b [K,N] or [..,K,N] (same leading dimensions).
    MatMul,
    /// Inputs: x [N,C,...], gamma, beta, running_mean, running_var (all [C]).
    BatchNorm2d(BatchNormAttrs),
    Relu,
    /// Clamp to [min, max]; ReLU6 is `Clip { min: 0, max: 6 }`.
    Clip(ClipAttrs),
    /// 1 / (1 + e^-x) (SiLU is `Mul(x, Sigmoid(x))`).
    Sigmoid,
    /// clamp(αx + β, 0, 1).
    HardSigmoid(HardSigmoidAttrs),
    /// x · clamp(x/6 + 1/2, 0, 1).
    HardSwish,
    /// The error function.
    Erf,
    /// Inputs x, scale, optional bias: rows over the trailing axes normalised.
    LayerNorm(LayerNormAttrs),
    /// Local response normalisation across channels.
    Lrn(LrnAttrs),
    /// Joins its inputs along one axis.
    Concat(ConcatAttrs),
    /// Permutes the axes.
    Transpose(TransposeAttrs),
    /// A strided range along one axis.
    Slice(SliceAttrs),
    MaxPool2d(PoolAttrs),
    AvgPool2d(PoolAttrs),
    /// [N,C,H,W] -> [N,C,1,1].
    GlobalAvgPool,
    /// Elementwise sum with numpy broadcasting.
    Add,
    Flatten(FlattenAttrs),
    Reshape(ReshapeAttrs),
    Dropout(DropoutAttrs),
    /// Elementwise product with numpy broadcasting (e.g. scaling by a constant).
    Mul,
    /// Softmax along one axis.
    Softmax(SoftmaxAttrs),
    /// Quantize-dequantize (see `fake_quant`): inputs x, scale, zero_point (integer grid) or x
    /// alone (fp16).
    FakeQuant(FakeQuantAttrs),
    /// BatchNorm's folding factor `gamma / sqrt(running_var + eps)`: inputs gamma, running_var.
    BnScale(BnScaleAttrs),
    /// Per-channel `x · f (+ b)` or `x / f (+ b)`: inputs x, f, optional b.
    ChannelAffine(ChannelAffineAttrs),
    /// An operator qatlas cannot run (kept so an imported model still opens).
    Unsupported {
        op_type: String,
    },
}

impl OpKind {
    /// Short display name ("Conv2d", "Linear", ...).
    pub fn name(&self) -> &str {
        match self {
            OpKind::Conv2d(_) => "Conv2d",
            OpKind::Linear => "Linear",
            OpKind::MatMul => "MatMul",
            OpKind::BatchNorm2d(_) => "BatchNorm2d",
            OpKind::Relu => "Relu",
            OpKind::Clip(_) => "Clip",
            OpKind::Sigmoid => "Sigmoid",
            OpKind::HardSigmoid(_) => "HardSigmoid",
            OpKind::HardSwish => "HardSwish",
            OpKind::Erf => "Erf",
            OpKind::LayerNorm(_) => "LayerNorm",
            OpKind::Lrn(_) => "LRN",
            OpKind::Concat(_) => "Concat",
            OpKind::Transpose(_) => "Transpose",
            OpKind::Slice(_) => "Slice",
            OpKind::MaxPool2d(_) => "MaxPool2d",
            OpKind::AvgPool2d(_) => "AvgPool2d",
            OpKind::GlobalAvgPool => "GlobalAvgPool",
            OpKind::Add => "Add",
            OpKind::Flatten(_) => "Flatten",
            OpKind::Reshape(_) => "Reshape",
            OpKind::Dropout(_) => "Dropout",
            OpKind::Mul => "Mul",
            OpKind::Softmax(_) => "Softmax",
            OpKind::FakeQuant(_) => "FakeQuant",
            OpKind::BnScale(_) => "BnScale",
            OpKind::ChannelAffine(_) => "ChannelAffine",
            OpKind::Unsupported { op_type } => op_type,
        }
    }

    /// Allowed input counts (min, max).
    pub fn arity(&self) -> (usize, usize) {
        match self {
            OpKind::Conv2d(_) | OpKind::Linear => (2, 3),
            OpKind::MatMul | OpKind::Add | OpKind::Mul | OpKind::BnScale(_) => (2, 2),
            OpKind::ChannelAffine(_) => (2, 3),
            OpKind::BatchNorm2d(_) => (5, 5),
            OpKind::FakeQuant(a) => (a.num_inputs(), a.num_inputs()),
            OpKind::Unsupported { .. } => (0, usize::MAX),
            OpKind::Concat(_) => (1, usize::MAX),
            OpKind::LayerNorm(_) => (2, 3),
            _ => (1, 1),
        }
    }

    /// Output shape from input shapes, or an error saying which input is wrong.
    pub fn output_shape(&self, inputs: &[&[usize]]) -> Result<Vec<usize>, OpError> {
        let (lo, hi) = self.arity();
        if inputs.len() < lo || inputs.len() > hi {
            return Err(OpError::Arity {
                op: self.name().to_string(),
                expected: lo,
                found: inputs.len(),
            });
        }
        match self {
            OpKind::Conv2d(a) => conv::output_shape(a, inputs),
            OpKind::Linear => linear::output_shape(inputs),
            OpKind::MatMul => matmul::output_shape(inputs),
            OpKind::BatchNorm2d(_) => batchnorm::output_shape(inputs),
            OpKind::Relu
            | OpKind::Clip(_)
            | OpKind::Dropout(_)
            | OpKind::Sigmoid
            | OpKind::HardSigmoid(_)
            | OpKind::HardSwish
            | OpKind::Erf => Ok(inputs[0].to_vec()),
            OpKind::LayerNorm(a) => layernorm::output_shape(a, inputs),
            OpKind::Lrn(a) => lrn::output_shape(a, inputs),
            OpKind::Concat(a) => concat::output_shape(a, inputs),
            OpKind::Transpose(a) => layout::transpose_shape(a, inputs[0]),
            OpKind::Slice(a) => layout::slice_shape(a, inputs[0]),
            OpKind::MaxPool2d(a) | OpKind::AvgPool2d(a) => pool::output_shape(a, inputs[0]),
            OpKind::GlobalAvgPool => pool::global_output_shape(inputs[0]),
            OpKind::Add => add::output_shape(inputs[0], inputs[1]),
            OpKind::Flatten(a) => reshape::flatten_shape(a, inputs[0]),
            OpKind::Reshape(a) => reshape::reshape_shape(a, inputs[0]),
            OpKind::Mul => mul::output_shape(inputs[0], inputs[1]),
            OpKind::Softmax(a) => softmax::output_shape(a, inputs[0]),
            OpKind::FakeQuant(a) => fake_quant::output_shape(a, inputs),
            OpKind::BnScale(_) => channel_scale::bn_scale_shape(inputs),
            OpKind::ChannelAffine(a) => channel_scale::affine_shape(a, inputs),
            OpKind::Unsupported { op_type } => Err(OpError::Unsupported {
                op_type: op_type.clone(),
            }),
        }
    }

    /// Runs the op forward.
    pub fn forward(&self, inputs: &[&Tensor], ctx: &mut FwdCtx<'_>) -> Result<Forward, OpError> {
        let shapes: Vec<&[usize]> = inputs.iter().map(|t| t.shape()).collect();
        self.output_shape(&shapes)?;
        Ok(match self {
            OpKind::Conv2d(a) => conv::forward(a, inputs, ctx.need_backward),
            OpKind::Linear => Forward::plain(linear::forward(inputs)),
            OpKind::MatMul => Forward::plain(matmul::forward(inputs[0], inputs[1])),
            OpKind::BatchNorm2d(a) => batchnorm::forward(a, inputs, ctx.mode),
            OpKind::Relu => Forward::plain(activation::relu(inputs[0])),
            OpKind::Clip(a) => Forward::plain(activation::clip(a, inputs[0])),
            OpKind::Sigmoid => Forward::plain(smooth::sigmoid(inputs[0])),
            OpKind::HardSigmoid(a) => Forward::plain(smooth::hard_sigmoid(a, inputs[0])),
            OpKind::HardSwish => Forward::plain(smooth::hard_swish(inputs[0])),
            OpKind::Erf => Forward::plain(smooth::erf(inputs[0])),
            OpKind::LayerNorm(a) => Forward::plain(layernorm::forward(a, inputs)?),
            OpKind::Lrn(a) => Forward::plain(lrn::forward(a, inputs[0])?),
            OpKind::Concat(a) => Forward::plain(concat::forward(a, inputs)?),
            OpKind::Transpose(a) => Forward::plain(layout::transpose(a, inputs[0])),
            OpKind::Slice(a) => Forward::plain(layout::slice(a, inputs[0])),
            OpKind::MaxPool2d(a) => pool::max_forward(a, inputs[0], ctx.need_backward),
            OpKind::AvgPool2d(a) => Forward::plain(pool::avg_forward(a, inputs[0])),
            OpKind::GlobalAvgPool => Forward::plain(pool::global_forward(inputs[0])),
            OpKind::Add => Forward::plain(add::forward(inputs[0], inputs[1])),
            OpKind::Flatten(a) => Forward::plain(reshape::flatten(a, inputs[0])?),
            OpKind::Reshape(a) => Forward::plain(reshape::reshape(a, inputs[0])?),
            OpKind::Dropout(a) => dropout::forward(a, inputs[0], ctx),
            OpKind::Mul => Forward::plain(mul::forward(inputs[0], inputs[1])),
            OpKind::Softmax(a) => Forward::plain(softmax::forward(a, inputs[0])),
            OpKind::FakeQuant(a) => fake_quant::forward(a, inputs, ctx.mode),
            OpKind::BnScale(a) => Forward::plain(channel_scale::bn_scale_forward(a, inputs)),
            OpKind::ChannelAffine(a) => Forward::plain(channel_scale::affine_forward(a, inputs)),
            OpKind::Unsupported { op_type } => {
                return Err(OpError::Unsupported {
                    op_type: op_type.clone(),
                });
            }
        })
    }

    /// Gradients of the loss with respect to each input (`None` where `need[i]` is false).
    pub fn backward(
        &self,
        inputs: &[&Tensor],
        output: &Tensor,
        saved: &Saved,
        grad_out: &Tensor,
        need: &[bool],
    ) -> Result<Vec<Option<Tensor>>, OpError> {
        if grad_out.shape() != output.shape() {
            return Err(OpError::Shape {
                op: self.name().to_string(),
                what: "output gradient".into(),
                expected: output.shape().to_vec(),
                found: grad_out.shape().to_vec(),
            });
        }
        let g = match self {
            OpKind::Conv2d(a) => conv::backward(a, inputs, saved, grad_out, need),
            OpKind::Linear => linear::backward(inputs, grad_out, need),
            OpKind::MatMul => matmul::backward(inputs[0], inputs[1], grad_out, need),
            OpKind::BatchNorm2d(a) => batchnorm::backward(a, inputs, saved, grad_out, need),
            OpKind::Relu => vec![Some(activation::relu_backward(output, grad_out))],
            OpKind::Clip(a) => vec![Some(activation::clip_backward(a, inputs[0], grad_out))],
            OpKind::Sigmoid => vec![Some(smooth::sigmoid_backward(output, grad_out))],
            OpKind::HardSigmoid(a) => {
                vec![Some(smooth::hard_sigmoid_backward(a, inputs[0], grad_out))]
            }
            OpKind::HardSwish => vec![Some(smooth::hard_swish_backward(inputs[0], grad_out))],
            OpKind::Erf => vec![Some(smooth::erf_backward(inputs[0], grad_out))],
            OpKind::LayerNorm(a) => layernorm::backward(a, inputs, grad_out, need)?,
            OpKind::Lrn(a) => vec![Some(lrn::backward(a, inputs[0], grad_out)?)],
            OpKind::Concat(a) => concat::backward(a, inputs, grad_out, need)?,
            OpKind::Transpose(a) => vec![Some(layout::transpose_backward(a, grad_out))],
            OpKind::Slice(a) => vec![Some(layout::slice_backward(a, inputs[0], grad_out))],
            OpKind::MaxPool2d(_) => vec![Some(pool::max_backward(inputs[0], saved, grad_out)?)],
            OpKind::AvgPool2d(a) => vec![Some(pool::avg_backward(a, inputs[0], grad_out))],
            OpKind::GlobalAvgPool => vec![Some(pool::global_backward(inputs[0], grad_out))],
            OpKind::Add => add::backward(inputs[0], inputs[1], grad_out, need),
            OpKind::Flatten(_) | OpKind::Reshape(_) => {
                vec![Some(reshape::reshape_back(grad_out, inputs[0].shape()))]
            }
            OpKind::Dropout(_) => vec![Some(dropout::backward(saved, grad_out))],
            OpKind::Mul => mul::backward(inputs[0], inputs[1], grad_out, need),
            OpKind::Softmax(a) => vec![Some(softmax::backward(a, output, grad_out))],
            OpKind::FakeQuant(a) => fake_quant::backward(a, inputs, saved, grad_out, need),
            OpKind::BnScale(a) => channel_scale::bn_scale_backward(a, inputs, grad_out, need),
            OpKind::ChannelAffine(a) => channel_scale::affine_backward(a, inputs, grad_out, need),
            OpKind::Unsupported { op_type } => {
                return Err(OpError::Unsupported {
                    op_type: op_type.clone(),
                });
            }
        };
        Ok(g)
    }
}

/// Per-call context of a forward pass.
pub struct FwdCtx<'a> {
    pub mode: Mode,
    /// Keep what backward needs (off for pure inference).
    pub need_backward: bool,
    /// Source of randomness (dropout), seeded by the caller for reproducible runs.
    pub rng: &'a mut ChaCha8Rng,
}

/// What a forward pass produced.
pub struct Forward {
    pub output: Tensor,
    /// What backward needs beyond the inputs and output.
    pub saved: Saved,
    /// New values for some inputs (BatchNorm running statistics in training), by input index.
    pub updates: Vec<(usize, Tensor)>,
}

impl Forward {
    pub(crate) fn plain(output: Tensor) -> Self {
        Forward {
            output,
            saved: Saved::None,
            updates: Vec::new(),
        }
    }
}

/// Per-op state kept from forward for backward.
#[derive(Debug, Default)]
pub enum Saved {
    #[default]
    None,
    /// im2col columns of each chunk of images (see `conv`).
    Conv(Vec<Vec<f32>>),
    /// Flat input index of each max, per output element.
    MaxPool(Vec<u32>),
    /// Normalised input, 1/std per channel, and whether batch statistics were used.
    BatchNorm {
        xhat: Tensor,
        inv_std: Vec<f32>,
        batch_stats: bool,
    },
    /// Dropout's scaled keep-mask.
    Dropout(Tensor),
    /// The per-channel (scale, zero point) an observing fake quantizer used (it updates them
    /// before quantizing, so they differ from its inputs).
    FakeQuant(Vec<(f32, f32)>),
}
