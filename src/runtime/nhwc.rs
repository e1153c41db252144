//! Data movement on NHWC images for the integer runtime: im2row (the GEMM's A operand, one row
//! per output pixel, padding filled with the input's zero point so padded taps contribute
//! exactly 0), max/average/global-average pooling on u8 or f32, and the layout changes
//! NCHW <-> NHWC. Safe Rust only; generic over the element type where the arithmetic allows.

use super::spec::{ConvGeom, Dims, PoolSpec};

/// One output window of a pool: clipped rows `[y0, y1)`, columns `[x0, x1)`, and the size of
/// the window counting padding (the float `ops::pool` rule).
#[derive(Clone, Copy, Debug)]
pub struct Window {
    pub y0: usize,
    pub y1: usize,
    pub x0: usize,
    pub x1: usize,
    pub padded: usize,
}

/// Clipped input ranges per output row and per output column, and the padded window sizes.
pub fn pool_windows(p: &PoolSpec, d: Dims, out: Dims) -> Vec<Window> {
    let axis = |o: usize, k: usize, s: usize, p0: usize, p1: usize, len: usize| {
        let st = (o * s) as isize - p0 as isize;
        let en = (st + k as isize).min((len + p1) as isize);
        let c = |v: isize| v.clamp(0, len as isize) as usize;
        (c(st), c(en), (en - st) as usize)
    };
    let mut v = Vec::with_capacity(out.h * out.w);
    for oy in 0..out.h {
        let (y0, y1, ph) = axis(oy, p.kernel[0], p.stride[0], p.pads[0], p.pads[2], d.h);
        for ox in 0..out.w {
            let (x0, x1, pw) = axis(ox, p.kernel[1], p.stride[1], p.pads[1], p.pads[3], d.w);
            v.push(Window {
                y0,
                y1,
                x0,
                x1,
                padded: ph * pw,
            });
        }
    }
    v
}

/// im2row of one image and one group: `col[(oy·ow + ox)·K + (i·kw + j)·cg + c] =
/// x[iy, ix, group·cg + c]`, or `pad` outside the image (K = kh·kw·cg).
pub fn im2row<T: Copy>(
    x: &[T],
    d: Dims,
    g: &ConvGeom,
    group: usize,
    out: Dims,
    pad: T,
    col: &mut [T],
) {
    if g.groups == 1
        && g.dilation == [1, 1]
        && let Some(f) = short_run::<T>(g.kw * g.cin)
    {
        return f(x, d, g, out, pad, col);
    }
    im2row_with(x, d, g, group, out, pad, col, |dst, src| {
        dst.copy_from_slice(src)
    });
}

/// [`im2row_run`] of one-group, undilated layers.
type RunFn<T> = fn(&[T], Dims, &ConvGeom, Dims, T, &mut [T]);

/// The fixed-size run copy for short runs (first layers: kw·cin of 3 to 21 values); longer
/// runs are a `memcpy` each, which is then the cheaper part.
fn short_run<T: Copy>(run: usize) -> Option<RunFn<T>> {
    Some(match run {
        3 => im2row_run::<T, 3> as RunFn<T>,
        5 => im2row_run::<T, 5>,
        9 => im2row_run::<T, 9>,
        21 => im2row_run::<T, 21>,
        _ => return None,
    })
}

/// An im2row function ([`im2row`], [`im2row_u8`]).
pub type Unfold<T> = fn(&[T], Dims, &ConvGeom, usize, Dims, T, &mut [T]);

/// `unfold` of one image split over the rayon pool by bands of output rows: each band is the
/// same im2row on the input rows it reads (the top padding shifted so that the band starts at
/// its first output row), so the result equals one call. For batch-1 inference, where the
/// GEMM after it is parallel and a serial im2row would be the critical path.
#[allow(clippy::too_many_arguments)]
pub fn im2row_banded<T: Copy + Send + Sync>(
    unfold: Unfold<T>,
    x: &[T],
    d: Dims,
    g: &ConvGeom,
    group: usize,
    out: Dims,
    pad: T,
    col: &mut [T],
) {
    use rayon::prelude::*;
    let row_len = out.w * g.kh * g.kw * (g.cin / g.groups);
    let bands = rayon::current_num_threads() * 2;
    let band_rows = out.h.div_ceil(bands.max(1)).max(1);
    if out.h < 2 || row_len == 0 {
        return unfold(x, d, g, group, out, pad, col);
    }
    col[..out.h * row_len]
        .par_chunks_mut(band_rows * row_len)
        .enumerate()
        .for_each(|(b, band)| {
            let rows = band.len() / row_len;
            let sub = Dims { h: rows, ..out };
            let start = (b * band_rows * g.stride[0]) as isize - g.pads[0] as isize;
            let mut gb = g.clone();
            if start < 0 {
                gb.pads[0] = (-start) as usize;
                unfold(x, d, &gb, group, sub, pad, band);
            } else if (start as usize) < d.h {
                let s = start as usize;
                gb.pads[0] = 0;
                let db = Dims { h: d.h - s, ..d };
                unfold(&x[s * d.w * d.c..], db, &gb, group, sub, pad, band);
            } else {
                // Every window of the band lies in the bottom padding.
                band.fill(pad);
            }
        });
}

/// [`im2row`] for u8, copying the short runs with inline fixed-size moves (a `memcpy` call per
/// 3- or 48-byte run costs more than the copy).
pub fn im2row_u8(
    x: &[u8],
    d: Dims,
    g: &ConvGeom,
    group: usize,
    out: Dims,
    pad: u8,
    col: &mut [u8],
) {
    if g.groups == 1 && g.dilation == [1, 1] {
        // Runs of kw·cin bytes of common layers, copied as fixed-size arrays (for bytes a
        // `memcpy` call per run up to 384 costs more than the copy).
        let f = match g.kw * g.cin {
            30 => Some(im2row_run::<u8, 30> as RunFn<u8>),
            48 => Some(im2row_run::<u8, 48> as RunFn<u8>),
            96 => Some(im2row_run::<u8, 96> as RunFn<u8>),
            192 => Some(im2row_run::<u8, 192> as RunFn<u8>),
            384 => Some(im2row_run::<u8, 384> as RunFn<u8>),
            run => short_run::<u8>(run),
        };
        if let Some(f) = f {
            return f(x, d, g, out, pad, col);
        }
    }
    im2row_with(x, d, g, group, out, pad, col, copy_small)
}

/// One-group, undilated im2row whose kernel rows are `RUN = kw·cin` contiguous values of the
/// input wherever the window lies inside it.
fn im2row_run<T: Copy, const RUN: usize>(
    x: &[T],
    d: Dims,
    g: &ConvGeom,
    out: Dims,
    pad: T,
    col: &mut [T],
) {
    let (c, k) = (d.c, g.kh * RUN);
    for oy in 0..out.h {
        let line = &mut col[oy * out.w * k..(oy + 1) * out.w * k];
        for i in 0..g.kh {
            let iy = (oy * g.stride[0] + i) as isize - g.pads[0] as isize;
            if iy < 0 || iy >= d.h as isize {
                for row in line.chunks_exact_mut(k) {
                    row[i * RUN..(i + 1) * RUN].fill(pad);
                }
                continue;
            }
            let xrow = &x[iy as usize * d.w * c..][..d.w * c];
            for (ox, row) in line.chunks_exact_mut(k).enumerate() {
                let dst: &mut [T; RUN] = (&mut row[i * RUN..(i + 1) * RUN])
                    .try_into()
                    .expect("RUN-byte run");
                let ix0 = (ox * g.stride[1]) as isize - g.pads[1] as isize;
                if ix0 >= 0 && ix0 as usize + g.kw <= d.w {
                    let s = ix0 as usize * c;
                    *dst = xrow[s..s + RUN].try_into().expect("RUN-byte run");
                } else {
                    for j in 0..g.kw {
                        let ix = ix0 + j as isize;
                        let t = &mut dst[j * c..(j + 1) * c];
                        if ix < 0 || ix >= d.w as isize {
                            t.fill(pad);
                        } else {
                            t.copy_from_slice(&xrow[ix as usize * c..(ix as usize + 1) * c]);
                        }
                    }
                }
            }
        }
    }
}

/// Copies `src` into `dst` (same length) in 16/8/4/2/1-byte pieces of constant size.
#[inline(always)]
fn copy_small(dst: &mut [u8], src: &[u8]) {
    let n = dst.len().min(src.len());
    let mut o = 0;
    while o + 16 <= n {
        dst[o..o + 16].copy_from_slice(&src[o..o + 16]);
        o += 16;
    }
    for w in [8, 4, 2, 1] {
        if o + w <= n {
            for t in 0..w {
                dst[o + t] = src[o + t];
            }
            o += w;
        }
    }
    if o < n {
        dst[o] = src[o];
    }
}

#[allow(clippy::too_many_arguments)]
#[inline(always)]
fn im2row_with<T: Copy>(
    x: &[T],
    d: Dims,
    g: &ConvGeom,
    group: usize,
    out: Dims,
    pad: T,
    col: &mut [T],
    copy: impl Fn(&mut [T], &[T]),
) {
    let cg = g.cin / g.groups;
    let c0 = group * cg;
    let k = g.kh * g.kw * cg;
    let run = g.kw * cg;
    let contiguous = g.groups == 1 && g.dilation[1] == 1;
    for oy in 0..out.h {
        for ox in 0..out.w {
            let row = &mut col[(oy * out.w + ox) * k..][..k];
            let ix0 = (ox * g.stride[1]) as isize - g.pads[1] as isize;
            let full_w = ix0 >= 0 && ix0 as usize + (g.kw - 1) * g.dilation[1] < d.w;
            for i in 0..g.kh {
                let seg = &mut row[i * run..][..run];
                let iy = (oy * g.stride[0] + i * g.dilation[0]) as isize - g.pads[0] as isize;
                if iy < 0 || iy >= d.h as isize {
                    seg.fill(pad);
                    continue;
                }
                let base = iy as usize * d.w;
                if contiguous && full_w {
                    let s = (base + ix0 as usize) * d.c;
                    copy(seg, &x[s..s + run]);
                    continue;
                }
                for j in 0..g.kw {
                    let dst = &mut seg[j * cg..][..cg];
                    let ix = ix0 + (j * g.dilation[1]) as isize;
                    if ix < 0 || ix >= d.w as isize {
                        dst.fill(pad);
                    } else {
                        let s = (base + ix as usize) * d.c + c0;
                        copy(dst, &x[s..s + cg]);
                    }
                }
            }
        }
    }
}

/// Max pooling of one NHWC image (u8 on a grid: exact, since dequantization is monotone).
pub fn max_pool<T: Copy + PartialOrd>(x: &[T], d: Dims, wins: &[Window], y: &mut [T]) {
    let c = d.c;
    for (o, win) in wins.iter().enumerate() {
        let dst = &mut y[o * c..][..c];
        dst.copy_from_slice(&x[(win.y0 * d.w + win.x0) * c..][..c]);
        for iy in win.y0..win.y1 {
            for ix in win.x0..win.x1 {
                let src = &x[(iy * d.w + ix) * c..][..c];
                for (m, &v) in dst.iter_mut().zip(src) {
                    // `!(v <= m)` also takes NaN (f32), as the float op does; a select, not a
                    // conditional store, so the channel loop vectorizes (compare + blend).
                    *m = if v <= *m { *m } else { v };
                }
            }
        }
    }
}

/// [`max_pool`] for u8 (no NaN to carry): a plain `max` per channel, which vectorizes.
pub fn max_pool_u8(x: &[u8], d: Dims, wins: &[Window], y: &mut [u8]) {
    let c = d.c;
    for (o, win) in wins.iter().enumerate() {
        let dst = &mut y[o * c..][..c];
        dst.copy_from_slice(&x[(win.y0 * d.w + win.x0) * c..][..c]);
        for iy in win.y0..win.y1 {
            let row = &x[(iy * d.w + win.x0) * c..(iy * d.w + win.x1) * c];
            for src in row.chunks_exact(c) {
                for (m, &v) in dst.iter_mut().zip(src) {
                    *m = (*m).max(v);
                }
            }
        }
    }
}

/// The common 2x2 stride-2 unpadded max pool of one NHWC u8 image.
pub fn max_pool_2x2_u8(x: &[u8], d: Dims, y: &mut [u8]) {
    let (c, oh, ow) = (d.c, d.h / 2, d.w / 2);
    for oy in 0..oh {
        let r0 = &x[2 * oy * d.w * c..][..2 * ow * c];
        let r1 = &x[(2 * oy + 1) * d.w * c..][..2 * ow * c];
        let yr = &mut y[oy * ow * c..][..ow * c];
        for ((o, a), b) in yr
            .chunks_exact_mut(c)
            .zip(r0.chunks_exact(2 * c))
            .zip(r1.chunks_exact(2 * c))
        {
            let (a0, a1) = a.split_at(c);
            let (b0, b1) = b.split_at(c);
            for ((o, (&p, &q)), (&r, &s)) in
                o.iter_mut().zip(a0.iter().zip(a1)).zip(b0.iter().zip(b1))
            {
                *o = p.max(q).max(r.max(s));
            }
        }
    }
}

/// Average pooling divisor of a window (the float op's rule).
pub fn avg_divisor(p: &PoolSpec, w: &Window) -> f32 {
    let n = if p.count_include_pad {
        w.padded
    } else {
        (w.y1 - w.y0) * (w.x1 - w.x0)
    };
    n.max(1) as f32
}

/// Average pool of one NHWC f32 image, each window summed row by row like `ops::pool`
/// (`Σ_rows Σ_cols`, left to right, from 0), then divided: bit-identical to the float op.
pub fn avg_pool(x: &[f32], d: Dims, pool: &PoolSpec, wins: &[Window], y: &mut [f32]) {
    let c = d.c;
    for (o, win) in wins.iter().enumerate() {
        let div = avg_divisor(pool, win);
        for ch in 0..c {
            let mut total = 0.0f32;
            for iy in win.y0..win.y1 {
                let mut row = 0.0f32;
                for ix in win.x0..win.x1 {
                    row += x[(iy * d.w + ix) * c + ch];
                }
                total += row;
            }
            y[o * c + ch] = total / div;
        }
    }
}

/// `[h, w, c]` -> `[c, h, w]` of one image.
pub fn hwc_to_chw<T: Copy>(x: &[T], d: Dims, y: &mut [T]) {
    let hw = d.h * d.w;
    for p in 0..hw {
        for ch in 0..d.c {
            y[ch * hw + p] = x[p * d.c + ch];
        }
    }
}

/// `[c, h, w]` -> `[h, w, c]` of one image.
pub fn chw_to_hwc<T: Copy>(x: &[T], d: Dims, y: &mut [T]) {
    let hw = d.h * d.w;
    let (x, y) = (&x[..hw * d.c], &mut y[..hw * d.c]);
    if d.c == 3 {
        // RGB images: three sequential reads, one sequential write, no index checks.
        let (r, rest) = x.split_at(hw);
        let (g, b) = rest.split_at(hw);
        for (((px, &r), &g), &b) in y.chunks_exact_mut(3).zip(r).zip(g).zip(b) {
            px.copy_from_slice(&[r, g, b]);
        }
        return;
    }
    // Pixel by pixel: writes stay sequential, reads walk `c` planes.
    for (p, px) in y.chunks_exact_mut(d.c.max(1)).enumerate() {
        for (ch, v) in px.iter_mut().enumerate() {
            *v = x[ch * hw + p];
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn im2row_pads_with_the_given_value() {
        // 1 channel 2x2 image, 3x3 kernel, pad 1: the centre row of output (0,0) taps.
        let x = [1u8, 2, 3, 4];
        let d = Dims { h: 2, w: 2, c: 1 };
        let g = ConvGeom {
            cin: 1,
            kh: 3,
            kw: 3,
            stride: [1, 1],
            pads: [1; 4],
            dilation: [1, 1],
            groups: 1,
        };
        let out = Dims { h: 2, w: 2, c: 1 };
        let mut col = vec![0u8; 4 * 9];
        im2row(&x, d, &g, 0, out, 9, &mut col);
        assert_eq!(&col[..9], &[9, 9, 9, 9, 1, 2, 9, 3, 4]);
        assert_eq!(&col[27..], &[1, 2, 9, 3, 4, 9, 9, 9, 9]);
        let mut fast = vec![0u8; 4 * 9];
        im2row_u8(&x, d, &g, 0, out, 9, &mut fast);
        assert_eq!(fast, col);
    }

    #[test]
    fn fast_im2row_matches_the_generic_one() {
        // 3 channels, 5x4 image, 3x3 (run 9) and 1x3 (run 9 too) kernels, strides and pads, on
        // u8 and f32.
        let d = Dims { h: 5, w: 4, c: 3 };
        let x: Vec<u8> = (0..60).map(|i| (i * 7 % 251) as u8).collect();
        for (kh, kw, stride, pads) in [
            (3, 3, [1, 1], [1; 4]),
            (3, 3, [2, 2], [1, 0, 1, 2]),
            (1, 3, [1, 2], [0, 1, 0, 1]),
        ] {
            let g = ConvGeom {
                cin: 3,
                kh,
                kw,
                stride,
                pads,
                dilation: [1, 1],
                groups: 1,
            };
            let oh = (d.h + pads[0] + pads[2] - kh) / stride[0] + 1;
            let ow = (d.w + pads[1] + pads[3] - kw) / stride[1] + 1;
            let out = Dims { h: oh, w: ow, c: 1 };
            let mut generic = vec![0u8; oh * ow * kh * kw * 3];
            im2row_with(&x, d, &g, 0, out, 200, &mut generic, |a, b| {
                a.copy_from_slice(b)
            });
            let mut fast = vec![0u8; generic.len()];
            im2row_u8(&x, d, &g, 0, out, 200, &mut fast);
            assert_eq!(fast, generic, "u8 {kh}x{kw} {stride:?} {pads:?}");
            // The f32 build of the same runs.
            let xf: Vec<f32> = x.iter().map(|&v| f32::from(v) - 0.5).collect();
            let mut generic_f = vec![0f32; generic.len()];
            im2row_with(&xf, d, &g, 0, out, -1.0, &mut generic_f, |a, b| {
                a.copy_from_slice(b)
            });
            let mut fast_f = vec![0f32; generic.len()];
            im2row(&xf, d, &g, 0, out, -1.0, &mut fast_f);
            assert_eq!(fast_f, generic_f, "f32 {kh}x{kw} {stride:?} {pads:?}");
        }
    }

    #[test]
    fn banded_im2row_equals_one_call() {
        // 9x7 image, 4 channels; kernels with top/bottom padding larger than a band, strides 1
        // and 2, dilation, groups; bands on a 3-thread pool (6 bands).
        let d = Dims { h: 9, w: 7, c: 4 };
        let x: Vec<u8> = (0..9 * 7 * 4).map(|i| (i * 11 % 253) as u8).collect();
        let xf: Vec<f32> = x.iter().map(|&v| f32::from(v) * 0.5).collect();
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(3)
            .build()
            .unwrap();
        for (kh, kw, stride, pads, dilation, groups) in [
            (3, 3, [1, 1], [1; 4], [1, 1], 1),
            (3, 3, [2, 2], [2, 1, 3, 0], [1, 1], 1),
            (5, 1, [1, 1], [4, 0, 4, 0], [1, 1], 1),
            (3, 3, [1, 2], [2, 2, 2, 2], [2, 1], 2),
        ] {
            let g = ConvGeom {
                cin: 4,
                kh,
                kw,
                stride,
                pads,
                dilation,
                groups,
            };
            let oh = (d.h + pads[0] + pads[2] - (kh - 1) * dilation[0] - 1) / stride[0] + 1;
            let ow = (d.w + pads[1] + pads[3] - (kw - 1) * dilation[1] - 1) / stride[1] + 1;
            let out = Dims { h: oh, w: ow, c: 1 };
            let len = oh * ow * kh * kw * 4 / groups;
            for group in 0..groups {
                let (mut one, mut banded) = (vec![0u8; len], vec![1u8; len]);
                im2row_u8(&x, d, &g, group, out, 9, &mut one);
                pool.install(|| im2row_banded(im2row_u8, &x, d, &g, group, out, 9, &mut banded));
                assert_eq!(
                    banded, one,
                    "u8 {kh}x{kw} {stride:?} {pads:?} group {group}"
                );
                let (mut one, mut banded) = (vec![0f32; len], vec![1f32; len]);
                im2row(&xf, d, &g, group, out, -2.0, &mut one);
                pool.install(|| im2row_banded(im2row, &xf, d, &g, group, out, -2.0, &mut banded));
                assert_eq!(
                    banded, one,
                    "f32 {kh}x{kw} {stride:?} {pads:?} group {group}"
                );
            }
        }
    }

    #[test]
    fn pools_hand_computed() {
        // 2x2 image, 2 channels (NHWC), 2x2 window.
        let x = [1u8, 10, 5, 20, 3, 30, 4, 0];
        let d = Dims { h: 2, w: 2, c: 2 };
        let mut y = [0u8; 2];
        max_pool_2x2_u8(&x, d, &mut y);
        assert_eq!(y, [5, 30]);
        let p = PoolSpec {
            kernel: [2, 2],
            stride: [2, 2],
            pads: [0; 4],
            ceil_mode: false,
            count_include_pad: false,
        };
        let wins = pool_windows(&p, d, Dims { h: 1, w: 1, c: 2 });
        let mut y2 = [0u8; 2];
        max_pool(&x, d, &wins, &mut y2);
        assert_eq!(y2, y);
        let xf: Vec<f32> = x.iter().map(|&v| v as f32).collect();
        let mut f = [0f32; 2];
        avg_pool(&xf, d, &p, &wins, &mut f);
        assert_eq!(f, [13.0 / 4.0, 15.0]);
    }
}
