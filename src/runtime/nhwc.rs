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
    let cg = g.cin / g.groups;
    let c0 = group * cg;
    let k = g.kh * g.kw * cg;
    let contiguous = g.groups == 1 && g.dilation[1] == 1;
    for oy in 0..out.h {
        for ox in 0..out.w {
            let row = &mut col[(oy * out.w + ox) * k..][..k];
            let ix0 = (ox * g.stride[1]) as isize - g.pads[1] as isize;
            let full_w = ix0 >= 0 && ix0 as usize + (g.kw - 1) * g.dilation[1] < d.w;
            for i in 0..g.kh {
                let seg = &mut row[i * g.kw * cg..][..g.kw * cg];
                let iy = (oy * g.stride[0] + i * g.dilation[0]) as isize - g.pads[0] as isize;
                if iy < 0 || iy >= d.h as isize {
                    seg.fill(pad);
                    continue;
                }
                let base = iy as usize * d.w;
                if contiguous && full_w {
                    let s = (base + ix0 as usize) * d.c;
                    seg.copy_from_slice(&x[s..s + g.kw * cg]);
                    continue;
                }
                for j in 0..g.kw {
                    let dst = &mut seg[j * cg..][..cg];
                    let ix = ix0 + (j * g.dilation[1]) as isize;
                    if ix < 0 || ix >= d.w as isize {
                        dst.fill(pad);
                    } else {
                        let s = (base + ix as usize) * d.c + c0;
                        dst.copy_from_slice(&x[s..s + cg]);
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
                    // `!(v <= m)` also takes NaN (f32), as the float op does.
                    if !(v <= *m) {
                        *m = v;
                    }
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
        for ox in 0..ow {
            let (a, b) = (&r0[2 * ox * c..][..2 * c], &r1[2 * ox * c..][..2 * c]);
            for (ch, o) in yr[ox * c..][..c].iter_mut().enumerate() {
                *o = a[ch].max(a[c + ch]).max(b[ch].max(b[c + ch]));
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
    for ch in 0..d.c {
        for p in 0..hw {
            y[p * d.c + ch] = x[ch * hw + p];
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
