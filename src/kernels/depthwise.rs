//! Direct depthwise convolution over NHWC images (one filter per channel, no channel
//! multiplier): integer (u8 activations, zero-point-adjusted weights, exact s32 sums) and f32.
//!
//! In NHWC the channels of a pixel are contiguous, so each filter tap is one pass of vector
//! multiply-adds over the channels of one input pixel into the output pixel's accumulators: no
//! im2row copy and no one-column GEMM per channel (what the generic grouped path does). Taps that
//! fall into the padding are skipped, which is exact for the integer form because a padded input
//! equals the input zero point and so contributes `(zx - zx) · w = 0`.
//!
//! [`depthwise_u8_requant`] also fuses the float requantization of the integer GEMM's epilogue
//! ([`FloatRequant`]): each output pixel's channels are done in blocks of 16 whose accumulators
//! stay in registers through all taps and leave as u8, so the s32 sums never reach memory.
//!
//! One safe body per element type, compiled three times (baseline, AVX2, AVX-512) and chosen at
//! run time; the compiler vectorizes the channel loop. The integer sums are exact and identical on
//! every build; the f32 sums add the taps in the same order on every build (no fused multiply-add
//! is formed: Rust does not contract `a * b + c`).

use super::int8::{FloatRequant, float_requant_row_portable};

/// Channels per register block of [`depthwise_u8_requant`].
const BLOCK: usize = 16;

/// The geometry of one depthwise convolution over one image.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DwShape {
    /// Input height, width and channels (= output channels).
    pub h: usize,
    pub w: usize,
    pub c: usize,
    /// Output height and width.
    pub oh: usize,
    pub ow: usize,
    /// Filter height and width.
    pub kh: usize,
    pub kw: usize,
    /// [vertical, horizontal].
    pub stride: [usize; 2],
    pub dilation: [usize; 2],
    /// Padding above and to the left (the bottom and right padding follow from the output size).
    pub pad_top: usize,
    pub pad_left: usize,
}

impl DwShape {
    /// Elements of one input image.
    pub fn input_len(&self) -> usize {
        self.h * self.w * self.c
    }
    /// Elements of one output row (`ow · c`).
    pub fn row_len(&self) -> usize {
        self.ow * self.c
    }
    /// Weights: `kh · kw · c`, laid out `[tap][channel]`.
    pub fn weight_len(&self) -> usize {
        self.kh * self.kw * self.c
    }

    /// Panics unless the buffers fit rows `y0..y0 + out.len() / row_len` of this shape.
    fn check(&self, x: usize, w: usize, y0: usize, out: usize) {
        assert!(self.c > 0 && self.ow > 0, "depthwise: empty shape {self:?}");
        assert_eq!(x, self.input_len(), "depthwise: input length");
        assert_eq!(w, self.weight_len(), "depthwise: weight length");
        assert!(
            out % self.row_len() == 0 && y0 + out / self.row_len() <= self.oh,
            "depthwise: output rows"
        );
    }

    /// Input row of output row `oy` and tap row `ky`, if inside the image.
    #[inline(always)]
    fn in_row(&self, oy: usize, ky: usize) -> Option<usize> {
        let iy = (oy * self.stride[0] + ky * self.dilation[0]).checked_sub(self.pad_top)?;
        (iy < self.h).then_some(iy)
    }

    /// Input column of output column `ox` and tap column `kx`, if inside the image.
    #[inline(always)]
    fn in_col(&self, ox: usize, kx: usize) -> Option<usize> {
        let ix = (ox * self.stride[1] + kx * self.dilation[1]).checked_sub(self.pad_left)?;
        (ix < self.w).then_some(ix)
    }
}

/// Integer depthwise convolution of output rows `y0..` of one image: `acc[r][ox][ch] =
/// Σ_taps (x[iy][ix][ch] - zx) · w[tap][ch]` for the rows `acc` holds (a whole number of
/// `ow · c` rows). `w` is the s8 weight minus its zero point, as i32.
pub fn depthwise_u8(x: &[u8], zx: u8, w: &[i32], s: &DwShape, y0: usize, acc: &mut [i32]) {
    s.check(x.len(), w.len(), y0, acc.len());
    #[cfg(target_arch = "x86_64")]
    {
        if std::is_x86_feature_detected!("avx512f") && std::is_x86_feature_detected!("avx512bw") {
            // SAFETY: the CPU has the features the function is compiled for.
            return unsafe { dw_u8_avx512(x, zx, w, s, y0, acc) };
        }
        if std::is_x86_feature_detected!("avx2") {
            // SAFETY: as above.
            return unsafe { dw_u8_avx2(x, zx, w, s, y0, acc) };
        }
    }
    dw_u8_body(x, zx, w, s, y0, acc)
}

/// [`depthwise_u8`] followed by the float requantization of [`FloatRequant`] (per channel
/// `scale`, `bias`; `clamp(round_half_even((acc · scale + bias) · inv_out) + zero_point, lo,
/// hi)`, the GEMM epilogue's formula operation for operation), written as u8 to `out` (rows
/// of `ow · c`).
pub fn depthwise_u8_requant(
    x: &[u8],
    zx: u8,
    w: &[i32],
    s: &DwShape,
    y0: usize,
    rq: &FloatRequant,
    out: &mut [u8],
) {
    s.check(x.len(), w.len(), y0, out.len());
    assert!(
        rq.scale.len() == s.c && rq.bias.len() == s.c,
        "depthwise: requantization has {} scales and {} biases for {} channels",
        rq.scale.len(),
        rq.bias.len(),
        s.c
    );
    #[cfg(target_arch = "x86_64")]
    {
        if std::is_x86_feature_detected!("avx512f") && std::is_x86_feature_detected!("avx512bw") {
            // SAFETY: the CPU has the features the function is compiled for.
            return unsafe { dw_rq_avx512(x, zx, w, s, y0, rq, out) };
        }
        if std::is_x86_feature_detected!("avx2") {
            // SAFETY: as above.
            return unsafe { dw_rq_avx2(x, zx, w, s, y0, rq, out) };
        }
    }
    dw_rq_body(x, zx, w, s, y0, rq, out)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512bw")]
fn dw_rq_avx512(
    x: &[u8],
    zx: u8,
    w: &[i32],
    s: &DwShape,
    y0: usize,
    rq: &FloatRequant,
    out: &mut [u8],
) {
    dw_rq_body(x, zx, w, s, y0, rq, out)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
fn dw_rq_avx2(
    x: &[u8],
    zx: u8,
    w: &[i32],
    s: &DwShape,
    y0: usize,
    rq: &FloatRequant,
    out: &mut [u8],
) {
    dw_rq_body(x, zx, w, s, y0, rq, out)
}

/// Taps of one output pixel that fall inside the image: (input pixel offset, weight offset), in
/// elements, in tap order. Filters of up to `MAX_TAPS` taps use this list.
const MAX_TAPS: usize = 49;

#[inline(always)]
fn pixel_taps(s: &DwShape, oy: usize, ox: usize, taps: &mut [(usize, usize); MAX_TAPS]) -> usize {
    let mut n = 0;
    for ky in 0..s.kh {
        let Some(iy) = s.in_row(oy, ky) else {
            continue;
        };
        for kx in 0..s.kw {
            let Some(ix) = s.in_col(ox, kx) else {
                continue;
            };
            taps[n] = ((iy * s.w + ix) * s.c, (ky * s.kw + kx) * s.c);
            n += 1;
        }
    }
    n
}

/// One block of `n <= N` channels starting at `c0` of one output pixel, over its `taps`.
#[inline(always)]
#[allow(clippy::too_many_arguments)]
fn dw_rq_block<const N: usize>(
    x: &[u8],
    zx: i32,
    w: &[i32],
    (taps, base): (&[(usize, usize)], usize),
    c0: usize,
    rq: &FloatRequant,
    n: usize,
    out: &mut [u8],
) {
    let mut acc = [0i32; N];
    for &(xo, wo) in taps {
        let xo = base + xo;
        let (xv, wv) = (&x[xo + c0..xo + c0 + n], &w[wo + c0..wo + c0 + n]);
        for l in 0..n.min(N) {
            acc[l] = acc[l].wrapping_add((xv[l] as i32 - zx).wrapping_mul(wv[l]));
        }
    }
    let (sc, bi) = (&rq.scale[c0..c0 + n], &rq.bias[c0..c0 + n]);
    requant(&acc[..n], sc, bi, rq, &mut out[..n]);
}

#[inline(always)]
fn dw_rq_body(
    x: &[u8],
    zx: u8,
    w: &[i32],
    s: &DwShape,
    y0: usize,
    rq: &FloatRequant,
    out: &mut [u8],
) {
    let (c, zx) = (s.c, zx as i32);
    if s.kh * s.kw > MAX_TAPS {
        // Large filters (rare): sums by the general kernel, then the same requantization.
        let mut acc = vec![0i32; out.len()];
        dw_u8_body(x, zx as u8, w, s, y0, &mut acc);
        for (o, px) in out.chunks_exact_mut(c).zip(acc.chunks_exact(c)) {
            requant(px, &rq.scale, &rq.bias, rq, o);
        }
        return;
    }
    // Interior pixels (the whole window inside the image) use the same taps relative to the
    // window's first input pixel; only border pixels list theirs one by one.
    let mut rel = [(0usize, 0usize); MAX_TAPS];
    let mut nrel = 0;
    for ky in 0..s.kh {
        for kx in 0..s.kw {
            let dy = ky * s.dilation[0];
            let dx = kx * s.dilation[1];
            rel[nrel] = ((dy * s.w + dx) * c, (ky * s.kw + kx) * c);
            nrel += 1;
        }
    }
    let (span_y, span_x) = ((s.kh - 1) * s.dilation[0], (s.kw - 1) * s.dilation[1]);
    let mut taps = [(0usize, 0usize); MAX_TAPS];
    for (r, orow) in out.chunks_exact_mut(s.row_len()).enumerate() {
        let iy0 = ((y0 + r) * s.stride[0]).checked_sub(s.pad_top);
        for (ox, o) in orow.chunks_exact_mut(c).enumerate() {
            let ix0 = (ox * s.stride[1]).checked_sub(s.pad_left);
            let taps = match (iy0, ix0) {
                (Some(iy), Some(ix)) if iy + span_y < s.h && ix + span_x < s.w => {
                    (&rel[..nrel], (iy * s.w + ix) * c)
                }
                _ => {
                    let nt = pixel_taps(s, y0 + r, ox, &mut taps);
                    (&taps[..nt], 0)
                }
            };
            let mut c0 = 0;
            while c0 + BLOCK <= c {
                dw_rq_block::<BLOCK>(x, zx, w, taps, c0, rq, BLOCK, &mut o[c0..c0 + BLOCK]);
                c0 += BLOCK;
            }
            if c0 < c {
                dw_rq_block::<BLOCK>(x, zx, w, taps, c0, rq, c - c0, &mut o[c0..]);
            }
        }
    }
}

/// The GEMM epilogue's float requantization (the same inlined row), for consecutive channels.
#[inline(always)]
fn requant(acc: &[i32], scale: &[f32], bias: &[f32], rq: &FloatRequant, out: &mut [u8]) {
    let (inv, zp, lo, hi) = (rq.inv_out, rq.zero_point, rq.lo, rq.hi);
    float_requant_row_portable(acc, scale, bias, inv, zp, lo, hi, out)
}

/// f32 depthwise convolution of output rows `y0..` of one image (no bias): `out[r][ox][ch] =
/// Σ_taps x[iy][ix][ch] · w[tap][ch]`, padding as zeros.
pub fn depthwise_f32(x: &[f32], w: &[f32], s: &DwShape, y0: usize, out: &mut [f32]) {
    s.check(x.len(), w.len(), y0, out.len());
    #[cfg(target_arch = "x86_64")]
    {
        if std::is_x86_feature_detected!("avx512f") {
            // SAFETY: the CPU has the feature the function is compiled for.
            return unsafe { dw_f32_avx512(x, w, s, y0, out) };
        }
        if std::is_x86_feature_detected!("avx2") {
            // SAFETY: as above.
            return unsafe { dw_f32_avx2(x, w, s, y0, out) };
        }
    }
    dw_f32_body(x, w, s, y0, out)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512bw")]
fn dw_u8_avx512(x: &[u8], zx: u8, w: &[i32], s: &DwShape, y0: usize, acc: &mut [i32]) {
    dw_u8_body(x, zx, w, s, y0, acc)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
fn dw_u8_avx2(x: &[u8], zx: u8, w: &[i32], s: &DwShape, y0: usize, acc: &mut [i32]) {
    dw_u8_body(x, zx, w, s, y0, acc)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
fn dw_f32_avx512(x: &[f32], w: &[f32], s: &DwShape, y0: usize, out: &mut [f32]) {
    dw_f32_body(x, w, s, y0, out)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
fn dw_f32_avx2(x: &[f32], w: &[f32], s: &DwShape, y0: usize, out: &mut [f32]) {
    dw_f32_body(x, w, s, y0, out)
}

#[inline(always)]
fn dw_u8_body(x: &[u8], zx: u8, w: &[i32], s: &DwShape, y0: usize, acc: &mut [i32]) {
    let zx = zx as i32;
    dw_body(x, w, s, y0, acc, 0, |o: i32, x: u8, w: i32| {
        o.wrapping_add((x as i32 - zx).wrapping_mul(w))
    })
}

#[inline(always)]
fn dw_f32_body(x: &[f32], w: &[f32], s: &DwShape, y0: usize, out: &mut [f32]) {
    dw_body(x, w, s, y0, out, 0.0, |o: f32, x: f32, w: f32| o + x * w)
}

/// The sums of both element types: `out = mac(out, x, w)` over every tap inside the image, in
/// tap order, one pass over the channels of an input pixel per tap.
#[inline(always)]
fn dw_body<X: Copy, W: Copy, A: Copy>(
    x: &[X],
    w: &[W],
    s: &DwShape,
    y0: usize,
    out: &mut [A],
    zero: A,
    mac: impl Fn(A, X, W) -> A,
) {
    let c = s.c;
    for (r, orow) in out.chunks_exact_mut(s.row_len()).enumerate() {
        orow.fill(zero);
        for ky in 0..s.kh {
            let Some(iy) = s.in_row(y0 + r, ky) else {
                continue;
            };
            let xrow = &x[iy * s.w * c..(iy + 1) * s.w * c];
            for (ox, o) in orow.chunks_exact_mut(c).enumerate() {
                for kx in 0..s.kw {
                    let Some(ix) = s.in_col(ox, kx) else {
                        continue;
                    };
                    let xv = &xrow[ix * c..(ix + 1) * c];
                    let wv = &w[(ky * s.kw + kx) * c..(ky * s.kw + kx + 1) * c];
                    for ((o, &xv), &wv) in o.iter_mut().zip(xv).zip(wv) {
                        *o = mac(*o, xv, wv);
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernels::round::round_half_even;

    fn shape(h: usize, w: usize, c: usize, k: usize, stride: usize, pad: usize) -> DwShape {
        DwShape {
            h,
            w,
            c,
            oh: (h + 2 * pad - k) / stride + 1,
            ow: (w + 2 * pad - k) / stride + 1,
            kh: k,
            kw: k,
            stride: [stride, stride],
            dilation: [1, 1],
            pad_top: pad,
            pad_left: pad,
        }
    }

    /// Naive NHWC depthwise with explicit zero-point padding (what im2row + GEMM computes).
    fn reference(x: &[u8], zx: u8, w: &[i32], s: &DwShape) -> Vec<i32> {
        let mut out = vec![0i32; s.oh * s.row_len()];
        for oy in 0..s.oh {
            for ox in 0..s.ow {
                for ch in 0..s.c {
                    let mut a = 0i32;
                    for ky in 0..s.kh {
                        for kx in 0..s.kw {
                            let iy = (oy * s.stride[0] + ky) as isize - s.pad_top as isize;
                            let ix = (ox * s.stride[1] + kx) as isize - s.pad_left as isize;
                            let inside =
                                iy >= 0 && ix >= 0 && (iy as usize) < s.h && (ix as usize) < s.w;
                            let v = if inside {
                                x[(iy as usize * s.w + ix as usize) * s.c + ch]
                            } else {
                                zx
                            };
                            a += (v as i32 - zx as i32) * w[(ky * s.kw + kx) * s.c + ch];
                        }
                    }
                    out[(oy * s.ow + ox) * s.c + ch] = a;
                }
            }
        }
        out
    }

    #[test]
    fn integer_depthwise_matches_the_padded_reference() {
        let mut seed = 7u32;
        let mut next = || {
            seed = seed.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
            (seed >> 8) as i32
        };
        for (h, w, c, k, stride, pad) in [
            (7, 5, 3, 3, 1, 1),
            (9, 9, 37, 3, 2, 1),
            (6, 8, 64, 5, 1, 2),
            (4, 4, 17, 3, 2, 0),
            // 81 taps: past MAX_TAPS, the general sums then the same requantization.
            (10, 9, 20, 9, 1, 4),
        ] {
            let s = shape(h, w, c, k, stride, pad);
            let x: Vec<u8> = (0..s.input_len()).map(|_| next() as u8).collect();
            let wt: Vec<i32> = (0..s.weight_len()).map(|_| next() % 256 - 128).collect();
            let zx = (next() % 256) as u8;
            let want = reference(&x, zx, &wt, &s);
            let mut got = vec![0i32; want.len()];
            depthwise_u8(&x, zx, &wt, &s, 0, &mut got);
            assert_eq!(got, want, "{s:?}");
            // Rows computed separately match the whole.
            let half = s.oh / 2 * s.row_len();
            let mut tail = vec![0i32; want.len() - half];
            depthwise_u8(&x, zx, &wt, &s, s.oh / 2, &mut tail);
            assert_eq!(tail, want[half..], "{s:?}");
            // The scalar body gives the same (the SIMD builds are exact too).
            let mut plain = vec![0i32; want.len()];
            dw_u8_body(&x, zx, &wt, &s, 0, &mut plain);
            assert_eq!(plain, want);
            // The fused requantization equals the s32 sums requantized by the GEMM's formula.
            let rq = FloatRequant {
                scale: (0..c).map(|i| 0.001 + i as f32 * 1e-4).collect(),
                bias: (0..c).map(|i| i as f32 * 0.37 - 3.0).collect(),
                inv_out: 1.0 / 0.05,
                zero_point: 3.0,
                lo: 3.0,
                hi: 250.0,
            };
            let mut q = vec![0u8; want.len()];
            depthwise_u8_requant(&x, zx, &wt, &s, 0, &rq, &mut q);
            let mut plain_q = vec![0u8; want.len()];
            dw_rq_body(&x, zx, &wt, &s, 0, &rq, &mut plain_q);
            assert_eq!(q, plain_q);
            for (i, (&a, &got)) in want.iter().zip(&q).enumerate() {
                let ch = i % c;
                let y = a as f32 * rq.scale[ch] + rq.bias[ch];
                let e = (round_half_even(y * rq.inv_out) + rq.zero_point).clamp(rq.lo, rq.hi);
                assert_eq!(got as f32, e, "{s:?} element {i}");
            }
            assert!(q.iter().any(|&v| v != 3) && q.iter().any(|&v| v != 250));
            // f32 on the same integers (exactly representable) agrees.
            let xf: Vec<f32> = x.iter().map(|&v| v as f32 - zx as f32).collect();
            let wf: Vec<f32> = wt.iter().map(|&v| v as f32).collect();
            let mut yf = vec![0f32; want.len()];
            depthwise_f32(&xf, &wf, &s, 0, &mut yf);
            assert!(yf.iter().zip(&want).all(|(&a, &b)| a == b as f32), "{s:?}");
        }
    }
}
