//! The direct depthwise path of a [`Layer`]: a convolution with one filter per channel
//! (`groups == cin == cout`) runs on `kernels::depthwise` over the NHWC input instead of one
//! im2row copy and one single-column GEMM per channel. The integer sums are the same s32 values
//! the GEMM path computes (padding equals the input zero point, which contributes nothing), and
//! the same epilogue turns them into the output, so results are identical bit for bit.

use super::{Compute, IntParts, Layer, Scratch, grow};
use crate::kernels::depthwise::{DwShape, depthwise_f32, depthwise_u8, depthwise_u8_requant};
use crate::kernels::int8::Parallelism;
use crate::runtime::spec::{ConvGeom, Dims};
use rayon::prelude::*;

/// Below this many multiply-adds a depthwise layer runs on the calling thread.
const PAR_MIN_MACS: usize = 1 << 18;

/// Depthwise weights in `[tap][channel]` order.
pub(super) enum DwWeights {
    /// s8 weight minus its per-channel zero point.
    Int(Vec<i32>),
    F32(Vec<f32>),
}

/// A layer's depthwise form.
pub(super) struct Depthwise {
    shape: DwShape,
    weights: DwWeights,
}

/// The depthwise geometry of a convolution, if it is one (one filter per channel, no channel
/// multiplier).
pub(super) fn shape(g: &ConvGeom, cout: usize, input: Dims, output: Dims) -> Option<DwShape> {
    (g.groups == cout && g.cin == cout && input.c == cout && cout > 1).then_some(DwShape {
        h: input.h,
        w: input.w,
        c: cout,
        oh: output.h,
        ow: output.w,
        kh: g.kh,
        kw: g.kw,
        stride: g.stride,
        dilation: g.dilation,
        pad_top: g.pads[0],
        pad_left: g.pads[1],
    })
}

/// `[tap][channel]` from the layer's `[channel][tap]` weights (row-major taps `ky · kw + kx`,
/// the GEMM's K order when each group has one input channel).
fn tap_major<T: Copy, U>(sh: &DwShape, w: &[T], f: impl Fn(T, usize) -> U) -> Vec<U> {
    let (taps, c) = (sh.kh * sh.kw, sh.c);
    (0..taps * c)
        .map(|i| f(w[(i % c) * taps + i / c], i % c))
        .collect()
}

impl Depthwise {
    /// Integer weights: the s8 values minus the channel's zero point `zp(c)`.
    pub(super) fn int(shape: DwShape, q: &[i8], zp: impl Fn(usize) -> i32) -> Self {
        let weights = DwWeights::Int(tap_major(&shape, q, |v, c| v as i32 - zp(c)));
        Depthwise { shape, weights }
    }

    /// f32 weights.
    pub(super) fn float(shape: DwShape, w: &[f32]) -> Self {
        let weights = DwWeights::F32(tap_major(&shape, w, |v, _| v));
        Depthwise { shape, weights }
    }
}

impl Layer {
    /// Runs the depthwise form on `nb` images (see [`Layer::run`]).
    #[allow(clippy::too_many_arguments)]
    pub(super) fn run_depthwise(
        &self,
        dw: &Depthwise,
        nb: usize,
        x_u8: &[u8],
        x_f32: &[f32],
        out_u8: &mut [u8],
        out_f32: &mut [f32],
        s: &mut Scratch,
        par: Parallelism,
    ) {
        let sh = &dw.shape;
        let (c, m) = (self.cout, self.rows(nb));
        let (ie, row) = (sh.input_len(), sh.row_len());
        let parallel = par == Parallelism::Rayon && m * c * sh.kh * sh.kw >= PAR_MIN_MACS;
        match (&self.compute, &dw.weights) {
            (
                Compute::Int(
                    p @ IntParts {
                        float_rq: Some(rq), ..
                    },
                ),
                DwWeights::Int(w),
            ) => {
                // Requantized inside the kernel: the s32 sums never reach memory.
                let out = &mut out_u8[..m * c];
                let task = |(i, o): (usize, &mut [u8])| {
                    let (n, oy) = (i / sh.oh, i % sh.oh);
                    depthwise_u8_requant(&x_u8[n * ie..(n + 1) * ie], p.zx, w, sh, oy, rq, o)
                };
                if parallel {
                    out.par_chunks_mut(row).enumerate().for_each(task);
                } else {
                    out.chunks_mut(row).enumerate().for_each(task);
                }
            }
            (Compute::Int(p), DwWeights::Int(w)) => {
                grow(&mut s.acc, m * c);
                let acc = &mut s.acc[..m * c];
                let task = |(i, a): (usize, &mut [i32])| {
                    let (n, oy) = (i / sh.oh, i % sh.oh);
                    depthwise_u8(&x_u8[n * ie..(n + 1) * ie], p.zx, w, sh, oy, a)
                };
                if parallel {
                    acc.par_chunks_mut(row).enumerate().for_each(task);
                } else {
                    acc.chunks_mut(row).enumerate().for_each(task);
                }
                self.int_epilogue(p, 0, c, m, acc, out_u8, out_f32, &mut s.tmp_u8);
            }
            (Compute::Float(_), DwWeights::F32(w)) => {
                grow(&mut s.tmp_f32, m * c);
                let y = &mut s.tmp_f32[..m * c];
                let task = |(i, a): (usize, &mut [f32])| {
                    let (n, oy) = (i / sh.oh, i % sh.oh);
                    depthwise_f32(&x_f32[n * ie..(n + 1) * ie], w, sh, oy, a)
                };
                if parallel {
                    y.par_chunks_mut(row).enumerate().for_each(task);
                } else {
                    y.chunks_mut(row).enumerate().for_each(task);
                }
                self.float_epilogue(0, c, m, y, out_u8, out_f32);
            }
            _ => unreachable!("depthwise weights are built from the layer's own compute kind"),
        }
    }
}
