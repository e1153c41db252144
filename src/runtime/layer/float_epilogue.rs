//! The epilogue of a float layer: bias, activation and (for a u8 output) quantization of the
//! f32 GEMM or depthwise results. The activation is matched once per call, outside the element
//! loop, and each arm runs the loop monomorphised for it, so every loop is a branch-free
//! function of one value that the compiler vectorizes.

use super::{Layer, to_u8};
use crate::ops::fake_quant::round_half_even;
use crate::runtime::spec::Act;

impl Layer {
    /// f32 results of output channels `c0..c0 + cg` (`m x cg`) plus bias, activation, to the
    /// output.
    pub(super) fn float_epilogue(
        &self,
        c0: usize,
        cg: usize,
        m: usize,
        y: &[f32],
        out_u8: &mut [u8],
        out_f32: &mut [f32],
    ) {
        let rows = Rows { c0, cg, m, y };
        match self.act {
            Act::None => self.float_rows(&rows, |v| v, out_u8, out_f32),
            Act::Relu => self.float_rows(&rows, |v: f32| v.max(0.0), out_u8, out_f32),
            // Comparisons rather than `clamp`: NaN passes through as with `clamp`, and the
            // loop stays branch-free.
            Act::Clip { min, max } => self.float_rows(
                &rows,
                move |v: f32| {
                    if v < min {
                        min
                    } else if v > max {
                        max
                    } else {
                        v
                    }
                },
                out_u8,
                out_f32,
            ),
            other => self.float_rows(&rows, move |v| other.apply(v), out_u8, out_f32),
        }
    }

    #[inline(always)]
    fn float_rows<F: Fn(f32) -> f32>(
        &self,
        r: &Rows<'_>,
        f: F,
        out_u8: &mut [u8],
        out_f32: &mut [f32],
    ) {
        let (c0, cg) = (r.c0, r.cg);
        let bias = &self.bias[c0..c0 + cg];
        let span = |i: usize| i * self.cout + c0..i * self.cout + c0 + cg;
        match self.out {
            Some(go) => {
                let (inv, zp) = (go.inv_scale(), go.zero_point as f32);
                let (lo, hi) = (go.lo as f32, go.hi as f32);
                for i in 0..r.m {
                    let row = &r.y[i * cg..(i + 1) * cg];
                    for ((o, &v), &b) in out_u8[span(i)].iter_mut().zip(row).zip(bias) {
                        // max/min, not `clamp`: its bounds check keeps the loop scalar.
                        *o = to_u8((round_half_even(f(v + b) * inv) + zp).max(lo).min(hi));
                    }
                }
            }
            None => {
                for i in 0..r.m {
                    let row = &r.y[i * cg..(i + 1) * cg];
                    for ((o, &v), &b) in out_f32[span(i)].iter_mut().zip(row).zip(bias) {
                        *o = f(v + b);
                    }
                }
            }
        }
    }
}

/// `m x cg` results for output channels `c0..c0 + cg`.
struct Rows<'a> {
    c0: usize,
    cg: usize,
    m: usize,
    y: &'a [f32],
}
