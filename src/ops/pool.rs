//! Pooling over NCHW images: max, average (with or without counting padding) and global average.

use super::{Forward, OpError, Saved, error::invalid};
use crate::tensor::{Tensor, from_vec, slice};
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

/// Window attributes of MaxPool2d / AvgPool2d.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PoolAttrs {
    pub kernel: [usize; 2],
    pub stride: [usize; 2],
    /// [top, left, bottom, right].
    pub pads: [usize; 4],
    pub ceil_mode: bool,
    /// AvgPool: divide by the full window even where it covers padding.
    pub count_include_pad: bool,
}

impl PoolAttrs {
    /// Square window `k`, stride `s`, no padding.
    pub fn square(k: usize, s: usize) -> Self {
        PoolAttrs {
            kernel: [k, k],
            stride: [s, s],
            pads: [0; 4],
            ceil_mode: false,
            count_include_pad: false,
        }
    }
}

fn out_len(len: usize, k: usize, s: usize, p0: usize, p1: usize, ceil: bool) -> Option<usize> {
    let padded = len + p0 + p1;
    if k == 0 || s == 0 || padded < k {
        return None;
    }
    let mut o = if ceil {
        (padded - k).div_ceil(s) + 1
    } else {
        (padded - k) / s + 1
    };
    // A window must start inside the input or the leading padding (PyTorch's rule).
    if ceil && (o - 1) * s >= len + p0 {
        o -= 1;
    }
    Some(o)
}

/// Shape rule.
pub fn output_shape(a: &PoolAttrs, x: &[usize]) -> Result<Vec<usize>, OpError> {
    if x.len() != 4 {
        return Err(invalid(
            "Pool",
            format!("input must be [N,C,H,W], found {x:?}"),
        ));
    }
    let oh = out_len(
        x[2],
        a.kernel[0],
        a.stride[0],
        a.pads[0],
        a.pads[2],
        a.ceil_mode,
    );
    let ow = out_len(
        x[3],
        a.kernel[1],
        a.stride[1],
        a.pads[1],
        a.pads[3],
        a.ceil_mode,
    );
    match (oh, ow) {
        (Some(oh), Some(ow)) => Ok(vec![x[0], x[1], oh, ow]),
        _ => Err(invalid(
            "Pool",
            format!("window {:?} does not fit input {x:?}", a.kernel),
        )),
    }
}

/// Shape rule of global average pooling.
pub fn global_output_shape(x: &[usize]) -> Result<Vec<usize>, OpError> {
    if x.len() != 4 {
        return Err(invalid(
            "GlobalAvgPool",
            format!("input must be [N,C,H,W], found {x:?}"),
        ));
    }
    Ok(vec![x[0], x[1], 1, 1])
}

/// The clipped window [y0, y1) x [x0, x1) of output (oy, ox), and its padded size.
fn window(
    a: &PoolAttrs,
    h: usize,
    w: usize,
    oy: usize,
    ox: usize,
) -> (usize, usize, usize, usize, usize) {
    let ys = (oy * a.stride[0]) as isize - a.pads[0] as isize;
    let xs = (ox * a.stride[1]) as isize - a.pads[1] as isize;
    let ye = (ys + a.kernel[0] as isize).min((h + a.pads[2]) as isize);
    let xe = (xs + a.kernel[1] as isize).min((w + a.pads[3]) as isize);
    let padded = ((ye - ys) * (xe - xs)) as usize;
    let clamp = |v: isize, hi: usize| v.clamp(0, hi as isize) as usize;
    (
        clamp(ys, h),
        clamp(ye, h),
        clamp(xs, w),
        clamp(xe, w),
        padded,
    )
}

/// Clipped input ranges of every output row and column: ([y0, y1) per oy, [x0, x1) per ox).
fn ranges(
    a: &PoolAttrs,
    h: usize,
    w: usize,
    oh: usize,
    ow: usize,
) -> (Vec<(usize, usize)>, Vec<(usize, usize)>) {
    let ys = (0..oh).map(|oy| {
        let (y0, y1, _, _, _) = window(a, h, w, oy, 0);
        (y0, y1)
    });
    let xs = (0..ow).map(|ox| {
        let (_, _, x0, x1, _) = window(a, h, w, 0, ox);
        (x0, x1)
    });
    (ys.collect(), xs.collect())
}

/// Max pooling; keeps the argmax of each output when `keep`.
pub fn max_forward(a: &PoolAttrs, x: &Tensor, keep: bool) -> Forward {
    let s = output_shape(a, x.shape()).expect("validated pool shape");
    let (h, w, oh, ow) = (x.shape()[2], x.shape()[3], s[2], s[3]);
    let (yr, xr) = ranges(a, h, w, oh, ow);
    let xs = slice(x);
    let planes = s[0] * s[1];
    let mut y = vec![0.0f32; planes * oh * ow];
    let mut arg = vec![0u32; if keep { y.len() } else { 0 }];
    let two_by_two =
        a.kernel == [2, 2] && a.stride == [2, 2] && a.pads == [0; 4] && oh == h / 2 && ow == w / 2;
    let body = |p: usize, yp: &mut [f32], ap: &mut [u32]| {
        let xp = &xs[p * h * w..][..h * w];
        if two_by_two {
            return max2x2(xp, w, oh, ow, (p * h * w) as u32, yp, ap);
        }
        for (oy, &(y0, y1)) in yr.iter().enumerate() {
            for (ox, &(x0, x1)) in xr.iter().enumerate() {
                let (mut best, mut bi) = (f32::NEG_INFINITY, y0 * w + x0);
                for iy in y0..y1 {
                    let row = &xp[iy * w..];
                    for ix in x0..x1 {
                        let v = row[ix];
                        // `!(v <= best)` also selects NaN, so a NaN propagates like in PyTorch.
                        if !(v <= best) {
                            best = v;
                            bi = iy * w + ix;
                        }
                    }
                }
                yp[oy * ow + ox] = best;
                if let Some(slot) = ap.get_mut(oy * ow + ox) {
                    *slot = (p * h * w + bi) as u32;
                }
            }
        }
    };
    // Planes per parallel task: enough work to amortise scheduling.
    let per = (4096 / (h * w).max(1)).max(1);
    if keep {
        y.par_chunks_mut(per * oh * ow)
            .zip(arg.par_chunks_mut(per * oh * ow))
            .enumerate()
            .for_each(|(c, (yc, ac))| {
                for (i, (yp, ap)) in yc
                    .chunks_mut(oh * ow)
                    .zip(ac.chunks_mut(oh * ow))
                    .enumerate()
                {
                    body(c * per + i, yp, ap);
                }
            });
    } else {
        y.par_chunks_mut(per * oh * ow)
            .enumerate()
            .for_each(|(c, yc)| {
                for (i, yp) in yc.chunks_mut(oh * ow).enumerate() {
                    body(c * per + i, yp, &mut []);
                }
            });
    }
    Forward {
        output: from_vec(&s, y),
        saved: if keep {
            Saved::MaxPool(arg)
        } else {
            Saved::None
        },
        updates: Vec::new(),
    }
}

/// The common 2x2, stride-2 max pool of one plane, without window bookkeeping.
fn max2x2(xp: &[f32], w: usize, oh: usize, ow: usize, base: u32, yp: &mut [f32], ap: &mut [u32]) {
    for oy in 0..oh {
        let (r0, r1) = (
            &xp[2 * oy * w..][..2 * ow],
            &xp[(2 * oy + 1) * w..][..2 * ow],
        );
        let yrow = &mut yp[oy * ow..][..ow];
        // Branch-free selects (first maximum wins on ties), so the loop compiles to blends.
        for (ox, y) in yrow.iter_mut().enumerate() {
            let (a, b, c, d) = (r0[2 * ox], r0[2 * ox + 1], r1[2 * ox], r1[2 * ox + 1]);
            let (m01, i01) = if b > a { (b, 1u32) } else { (a, 0) };
            let (m23, i23) = if d > c {
                (d, w as u32 + 1)
            } else {
                (c, w as u32)
            };
            let (m, i) = if m23 > m01 { (m23, i23) } else { (m01, i01) };
            *y = m;
            if let Some(slot) = ap.get_mut(oy * ow + ox) {
                *slot = base + (2 * oy * w + 2 * ox) as u32 + i;
            }
        }
    }
}

/// Backward of max pooling: routes each output gradient to its argmax.
pub fn max_backward(x: &Tensor, saved: &Saved, dy: &Tensor) -> Result<Tensor, OpError> {
    let Saved::MaxPool(arg) = saved else {
        return Err(invalid(
            "MaxPool2d",
            "backward called without a training forward",
        ));
    };
    let mut dx = vec![0.0f32; x.len()];
    for (&i, &g) in arg.iter().zip(slice(dy)) {
        dx[i as usize] += g;
    }
    Ok(from_vec(x.shape(), dx))
}

fn avg_divisor(a: &PoolAttrs, win: (usize, usize, usize, usize, usize)) -> f32 {
    let (y0, y1, x0, x1, padded) = win;
    let n = if a.count_include_pad {
        padded
    } else {
        (y1 - y0) * (x1 - x0)
    };
    n.max(1) as f32
}

/// Average pooling.
pub fn avg_forward(a: &PoolAttrs, x: &Tensor) -> Tensor {
    let s = output_shape(a, x.shape()).expect("validated pool shape");
    let (h, w, oh, ow) = (x.shape()[2], x.shape()[3], s[2], s[3]);
    let xs = slice(x);
    let mut y = vec![0.0f32; s.iter().product()];
    y.par_chunks_mut(oh * ow).enumerate().for_each(|(p, yp)| {
        let xp = &xs[p * h * w..][..h * w];
        for oy in 0..oh {
            for ox in 0..ow {
                let win = window(a, h, w, oy, ox);
                let (y0, y1, x0, x1, _) = win;
                let sum: f32 = (y0..y1)
                    .map(|iy| xp[iy * w + x0..iy * w + x1].iter().sum::<f32>())
                    .sum();
                yp[oy * ow + ox] = sum / avg_divisor(a, win);
            }
        }
    });
    from_vec(&s, y)
}

/// Backward of average pooling.
pub fn avg_backward(a: &PoolAttrs, x: &Tensor, dy: &Tensor) -> Tensor {
    let (h, w) = (x.shape()[2], x.shape()[3]);
    let (oh, ow) = (dy.shape()[2], dy.shape()[3]);
    let dys = slice(dy);
    let mut dx = vec![0.0f32; x.len()];
    dx.par_chunks_mut(h * w).enumerate().for_each(|(p, dxp)| {
        for oy in 0..oh {
            for ox in 0..ow {
                let win = window(a, h, w, oy, ox);
                let g = dys[p * oh * ow + oy * ow + ox] / avg_divisor(a, win);
                let (y0, y1, x0, x1, _) = win;
                for iy in y0..y1 {
                    dxp[iy * w + x0..iy * w + x1]
                        .iter_mut()
                        .for_each(|v| *v += g);
                }
            }
        }
    });
    from_vec(x.shape(), dx)
}

/// Global average pooling.
pub fn global_forward(x: &Tensor) -> Tensor {
    let s = x.shape();
    let hw = s[2] * s[3];
    let y: Vec<f32> = slice(x)
        .chunks(hw.max(1))
        .map(|p| super::par::fast_sum(p) / hw as f32)
        .collect();
    from_vec(&[s[0], s[1], 1, 1], y)
}

/// Backward of global average pooling.
pub fn global_backward(x: &Tensor, dy: &Tensor) -> Tensor {
    let s = x.shape();
    let hw = s[2] * s[3];
    let mut dx = vec![0.0f32; x.len()];
    for (p, g) in slice(dy).iter().enumerate() {
        dx[p * hw..(p + 1) * hw].fill(g / hw as f32);
    }
    from_vec(s, dx)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::OpKind;
    use crate::ops::gradcheck::{check_op, rand_tensor};

    #[test]
    fn max_and_avg_values() {
        let x = from_vec(&[1, 1, 2, 4], vec![1.0, 5.0, 2.0, 0.0, 3.0, 4.0, -1.0, 8.0]);
        let m = max_forward(&PoolAttrs::square(2, 2), &x, false).output;
        assert_eq!(m.as_slice().unwrap(), &[5.0, 8.0]);
        let av = avg_forward(&PoolAttrs::square(2, 2), &x);
        assert_eq!(av.as_slice().unwrap(), &[3.25, 2.25]);
        let g = global_forward(&x);
        assert_eq!(g.as_slice().unwrap(), &[2.75]);
    }

    #[test]
    fn padding_and_ceil_mode_shapes() {
        let a = PoolAttrs {
            kernel: [3, 3],
            stride: [2, 2],
            pads: [1; 4],
            ceil_mode: false,
            count_include_pad: true,
        };
        assert_eq!(output_shape(&a, &[1, 1, 7, 7]).unwrap(), vec![1, 1, 4, 4]);
        let c = PoolAttrs {
            ceil_mode: true,
            ..PoolAttrs::square(2, 2)
        };
        assert_eq!(output_shape(&c, &[1, 1, 5, 5]).unwrap(), vec![1, 1, 3, 3]);
        // count_include_pad: corner window of ones covers 4 real of 9 cells.
        let ones = from_vec(&[1, 1, 3, 3], vec![1.0; 9]);
        let y = avg_forward(&a, &ones);
        assert!((y[[0, 0, 0, 0]] - 4.0 / 9.0).abs() < 1e-6);
        let ex = PoolAttrs {
            count_include_pad: false,
            ..a
        };
        assert_eq!(avg_forward(&ex, &ones)[[0, 0, 0, 0]], 1.0);
    }

    #[test]
    fn gradients() {
        // Distinct values so the max is unique and stable under small perturbations.
        let x = from_vec(
            &[2, 2, 5, 5],
            (0..100).map(|i| ((i * 37 % 100) as f32) / 25.0).collect(),
        );
        check_op(
            &OpKind::MaxPool2d(PoolAttrs {
                pads: [1; 4],
                ..PoolAttrs::square(3, 2)
            }),
            &[x],
            &[true],
        );
        let a = PoolAttrs {
            kernel: [3, 2],
            stride: [2, 1],
            pads: [1, 0, 1, 1],
            ceil_mode: true,
            count_include_pad: false,
        };
        check_op(
            &OpKind::AvgPool2d(a.clone()),
            &[rand_tensor(&[2, 2, 5, 6], 1)],
            &[true],
        );
        check_op(
            &OpKind::AvgPool2d(PoolAttrs {
                count_include_pad: true,
                ..a
            }),
            &[rand_tensor(&[2, 2, 5, 6], 2)],
            &[true],
        );
        check_op(
            &OpKind::GlobalAvgPool,
            &[rand_tensor(&[2, 3, 4, 3], 3)],
            &[true],
        );
    }
}
