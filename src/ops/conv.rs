//! 2-D convolution (NCHW): stride, asymmetric padding, dilation and groups (incl. depthwise).
//!
//! Convolutions with more than one input channel per group run as im2col + one GEMM per chunk of
//! images (the chunk's columns side by side, so the GEMMs are wide); convolutions with one input channel per group
//! (depthwise) run a direct loop. Images are processed in parallel chunks whose size depends only
//! on the batch size, and weight gradients are summed over chunks in a fixed order.

use super::im2col::{chunk_cols, chunk_cols_vec, col2im};
use super::par::{chunk_len, fast_sum};
use super::scratch::with_scratch;
use super::{Forward, OpError, Saved, error::invalid};
use crate::kernels::{MatMut, MatRef, sgemm};
use crate::tensor::{Tensor, from_vec, slice};
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

/// Attributes of a 2-D convolution. The kernel size comes from the weight's shape.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Conv2dAttrs {
    pub stride: [usize; 2],
    /// Padding as [top, left, bottom, right].
    pub pads: [usize; 4],
    pub dilation: [usize; 2],
    pub groups: usize,
}

impl Conv2dAttrs {
    /// Square kernel helper: stride `s`, symmetric padding `p`, no dilation, one group.
    pub fn simple(stride: usize, pad: usize) -> Self {
        Conv2dAttrs {
            stride: [stride; 2],
            pads: [pad; 4],
            dilation: [1, 1],
            groups: 1,
        }
    }
}

/// Geometry of one convolution call, derived from attributes and shapes.
#[derive(Clone, Copy, Debug)]
pub(super) struct Geom {
    pub(super) n: usize,
    pub(super) cin: usize,
    pub(super) h: usize,
    pub(super) w: usize,
    pub(super) cout: usize,
    pub(super) kh: usize,
    pub(super) kw: usize,
    pub(super) oh: usize,
    pub(super) ow: usize,
    pub(super) groups: usize,
    pub(super) cin_g: usize,
    pub(super) cout_g: usize,
    pub(super) sh: usize,
    pub(super) sw: usize,
    pub(super) pt: usize,
    pub(super) pl: usize,
    pub(super) dh: usize,
    pub(super) dw: usize,
}

impl Geom {
    pub(super) fn k(&self) -> usize {
        self.cin_g * self.kh * self.kw
    }
    pub(super) fn p(&self) -> usize {
        self.oh * self.ow
    }
    fn direct(&self) -> bool {
        self.cin_g == 1 && self.groups > 1
    }
}

fn geom(a: &Conv2dAttrs, x: &[usize], wt: &[usize]) -> Result<Geom, OpError> {
    let op = "Conv2d";
    if x.len() != 4 {
        return Err(invalid(
            op,
            format!("input must be 4-D [N,C,H,W], found shape {x:?}"),
        ));
    }
    if wt.len() != 4 {
        return Err(invalid(
            op,
            format!("weight must be 4-D, found shape {wt:?}"),
        ));
    }
    if a.groups == 0 || a.stride.contains(&0) || a.dilation.contains(&0) {
        return Err(invalid(
            op,
            "groups, strides and dilations must be positive",
        ));
    }
    let (n, cin, h, w) = (x[0], x[1], x[2], x[3]);
    let (cout, cin_g, kh, kw) = (wt[0], wt[1], wt[2], wt[3]);
    if cin % a.groups != 0 || cout % a.groups != 0 || cin / a.groups != cin_g {
        return Err(invalid(
            op,
            format!(
                "weight {wt:?} does not fit {cin} input channels in {} groups",
                a.groups
            ),
        ));
    }
    let span_h = a.dilation[0] * (kh.max(1) - 1) + 1;
    let span_w = a.dilation[1] * (kw.max(1) - 1) + 1;
    let ph = h + a.pads[0] + a.pads[2];
    let pw = w + a.pads[1] + a.pads[3];
    if kh == 0 || kw == 0 || ph < span_h || pw < span_w {
        return Err(invalid(
            op,
            format!("kernel {kh}x{kw} does not fit input {h}x{w} with padding"),
        ));
    }
    Ok(Geom {
        n,
        cin,
        h,
        w,
        cout,
        kh,
        kw,
        oh: (ph - span_h) / a.stride[0] + 1,
        ow: (pw - span_w) / a.stride[1] + 1,
        groups: a.groups,
        cin_g,
        cout_g: cout / a.groups,
        sh: a.stride[0],
        sw: a.stride[1],
        pt: a.pads[0],
        pl: a.pads[1],
        dh: a.dilation[0],
        dw: a.dilation[1],
    })
}

/// Shape rule.
pub fn output_shape(a: &Conv2dAttrs, inputs: &[&[usize]]) -> Result<Vec<usize>, OpError> {
    let g = geom(a, inputs[0], inputs[1])?;
    if let Some(b) = inputs.get(2) {
        if *b != [g.cout] {
            return Err(OpError::Shape {
                op: "Conv2d".into(),
                what: "bias".into(),
                expected: vec![g.cout],
                found: b.to_vec(),
            });
        }
    }
    Ok(vec![g.n, g.cout, g.oh, g.ow])
}

/// Forward pass. Keeps the im2col columns when `keep` (training).
pub fn forward(a: &Conv2dAttrs, inputs: &[&Tensor], keep: bool) -> Forward {
    let (x, wt) = (inputs[0], inputs[1]);
    // Shapes were validated by the caller through `output_shape`.
    let g = geom(a, x.shape(), wt.shape()).expect("validated conv shapes");
    let xs = slice(x);
    let ws = slice(wt);
    let bias = inputs.get(2).map(|b| slice(b));
    let (img_in, img_out, k, p) = (g.cin * g.h * g.w, g.cout * g.p(), g.k(), g.p());
    let mut out = vec![0.0f32; g.n * img_out];
    let col_img = if g.direct() { 0 } else { g.groups * k * p };
    let ch = chunk_len(g.n);
    // Returns the chunk's columns when they are to be kept for backward.
    let body = |n0: usize, out: &mut [f32]| -> Vec<f32> {
        let nb = out.len() / img_out;
        let xc = &xs[n0 * img_in..][..nb * img_in];
        if g.direct() {
            for (i, o) in out.chunks_mut(img_out).enumerate() {
                direct_forward(&g, &xc[i * img_in..][..img_in], ws, o);
            }
            if let Some(b) = bias {
                for o in out.chunks_mut(img_out) {
                    for (co, plane) in o.chunks_mut(p).enumerate() {
                        plane.iter_mut().for_each(|v| *v += b[co]);
                    }
                }
            }
            return Vec::new();
        }
        let kept = if keep {
            chunk_cols_vec(&g, xc, nb)
        } else {
            Vec::new()
        };
        let lens = [if keep { 0 } else { nb * col_img }, g.cout_g * nb * p, 0];
        with_scratch(lens, |scratch, tmp, _| {
            let col: &[f32] = if keep {
                &kept
            } else {
                chunk_cols(&g, xc, nb, scratch);
                scratch
            };
            for gr in 0..g.groups {
                sgemm(
                    MatRef::row_major(&ws[gr * g.cout_g * k..][..g.cout_g * k], g.cout_g, k),
                    MatRef::row_major(&col[gr * k * nb * p..][..k * nb * p], k, nb * p),
                    MatMut::row_major(tmp, g.cout_g, nb * p),
                    false,
                    false,
                );
                // Scatter to NCHW, adding the bias on the way.
                for (co, row) in tmp.chunks(nb * p).enumerate() {
                    let oc = gr * g.cout_g + co;
                    let bv = bias.map_or(0.0, |b| b[oc]);
                    for n in 0..nb {
                        let dst = &mut out[n * img_out + oc * p..][..p];
                        dst.iter_mut()
                            .zip(&row[n * p..][..p])
                            .for_each(|(d, s)| *d = s + bv);
                    }
                }
            }
        });
        kept
    };
    let cols: Vec<Vec<f32>> = out
        .par_chunks_mut(ch * img_out)
        .enumerate()
        .map(|(c, o)| body(c * ch, o))
        .collect();
    Forward {
        output: from_vec(&[g.n, g.cout, g.oh, g.ow], out),
        saved: if keep && col_img > 0 {
            Saved::Conv(cols)
        } else {
            Saved::None
        },
        updates: Vec::new(),
    }
}

/// Direct convolution for one input channel per group (depthwise and its channel multipliers).
fn direct_forward(g: &Geom, x: &[f32], w: &[f32], out: &mut [f32]) {
    for co in 0..g.cout {
        let ci = co / g.cout_g;
        let plane = &x[ci * g.h * g.w..][..g.h * g.w];
        let wk = &w[co * g.kh * g.kw..][..g.kh * g.kw];
        let o = &mut out[co * g.p()..][..g.p()];
        o.fill(0.0);
        for i in 0..g.kh {
            for j in 0..g.kw {
                let wv = wk[i * g.kw + j];
                for oy in 0..g.oh {
                    let iy = (oy * g.sh + i * g.dh) as isize - g.pt as isize;
                    if iy < 0 || iy >= g.h as isize {
                        continue;
                    }
                    let row = &plane[iy as usize * g.w..][..g.w];
                    let orow = &mut o[oy * g.ow..][..g.ow];
                    let off = (j * g.dw) as isize - g.pl as isize;
                    for (ox, ov) in orow.iter_mut().enumerate() {
                        let ix = (ox * g.sw) as isize + off;
                        if ix >= 0 && ix < g.w as isize {
                            *ov += wv * row[ix as usize];
                        }
                    }
                }
            }
        }
    }
}

/// Backward of the direct path for one image: accumulates into `dx` and `dw`.
fn direct_backward(
    g: &Geom,
    x: &[f32],
    w: &[f32],
    dy: &[f32],
    dx: Option<&mut [f32]>,
    dw: &mut [f32],
) {
    let mut dx = dx;
    for co in 0..g.cout {
        let ci = co / g.cout_g;
        let plane = &x[ci * g.h * g.w..][..g.h * g.w];
        let d = &dy[co * g.p()..][..g.p()];
        for i in 0..g.kh {
            for j in 0..g.kw {
                let wv = w[co * g.kh * g.kw + i * g.kw + j];
                let mut acc = 0.0f32;
                for oy in 0..g.oh {
                    let iy = (oy * g.sh + i * g.dh) as isize - g.pt as isize;
                    if iy < 0 || iy >= g.h as isize {
                        continue;
                    }
                    let off = (j * g.dw) as isize - g.pl as isize;
                    for ox in 0..g.ow {
                        let ix = (ox * g.sw) as isize + off;
                        if ix >= 0 && ix < g.w as isize {
                            let idx = iy as usize * g.w + ix as usize;
                            let gv = d[oy * g.ow + ox];
                            acc += gv * plane[idx];
                            if let Some(dx) = dx.as_deref_mut() {
                                dx[ci * g.h * g.w + idx] += gv * wv;
                            }
                        }
                    }
                }
                dw[co * g.kh * g.kw + i * g.kw + j] += acc;
            }
        }
    }
}

/// Backward pass: gradients for x, weight and bias (as requested by `need`).
pub fn backward(
    a: &Conv2dAttrs,
    inputs: &[&Tensor],
    saved: &Saved,
    dy: &Tensor,
    need: &[bool],
) -> Vec<Option<Tensor>> {
    let (x, wt) = (inputs[0], inputs[1]);
    let g = geom(a, x.shape(), wt.shape()).expect("validated conv shapes");
    let (xs, ws, dys) = (slice(x), slice(wt), slice(dy));
    let need_dx = need.first().copied().unwrap_or(false);
    let (img_in, img_out, k, p) = (g.cin * g.h * g.w, g.cout * g.p(), g.k(), g.p());
    let col_img = if g.direct() { 0 } else { g.groups * k * p };
    let ch = chunk_len(g.n);
    let chunks = g.n.div_ceil(ch);
    let saved_cols: Option<&[Vec<f32>]> = match saved {
        Saved::Conv(c) if c.len() == chunks && col_img > 0 => Some(c),
        _ => None,
    };
    let wlen = ws.len();
    let mut dx = vec![0.0f32; if need_dx { g.n * img_in } else { 0 }];
    // One weight-gradient accumulator per chunk, summed in order afterwards (reproducible).
    // Each chunk's slot holds the weight gradient followed by the bias gradient.
    let slot = wlen + g.cout;
    let mut dws = vec![0.0f32; chunks * slot];
    let work = |c: usize, dxc: &mut [f32], dwc: &mut [f32]| {
        let n0 = c * ch;
        let nb = ch.min(g.n - n0);
        let xc = &xs[n0 * img_in..][..nb * img_in];
        let dyc = &dys[n0 * img_out..][..nb * img_out];
        if g.direct() {
            for i in 0..nb {
                let dxi = if need_dx {
                    Some(&mut dxc[i * img_in..][..img_in])
                } else {
                    None
                };
                let dyi = &dyc[i * img_out..][..img_out];
                direct_backward(
                    &g,
                    &xc[i * img_in..][..img_in],
                    ws,
                    dyi,
                    dxi,
                    &mut dwc[..wlen],
                );
                for (co, plane) in dyi.chunks(p).enumerate() {
                    dwc[wlen + co] += fast_sum(plane);
                }
            }
            return;
        }
        let lens = [
            if saved_cols.is_some() {
                0
            } else {
                nb * col_img
            },
            g.cout_g * nb * p,
            if need_dx { k * nb * p } else { 0 },
        ];
        with_scratch(lens, |rebuilt, dyg, dcol| {
            let col: &[f32] = match saved_cols {
                Some(cs) => &cs[c],
                None => {
                    chunk_cols(&g, xc, nb, rebuilt);
                    rebuilt
                }
            };
            for gr in 0..g.groups {
                // Gather dY of this group into [cout_g, nb·P], the column layout of `col`, summing
                // the bias gradient on the way.
                for co in 0..g.cout_g {
                    let mut bsum = 0.0f32;
                    for n in 0..nb {
                        let src = &dyc[n * img_out + (gr * g.cout_g + co) * p..][..p];
                        bsum += fast_sum(src);
                        dyg[co * nb * p + n * p..][..p].copy_from_slice(src);
                    }
                    dwc[wlen + gr * g.cout_g + co] += bsum;
                }
                let colg = &col[gr * k * nb * p..][..k * nb * p];
                let wg = &ws[gr * g.cout_g * k..][..g.cout_g * k];
                // dW_g += dY_g [cout_g, nb·P] · col_gᵀ [nb·P, K]
                sgemm(
                    MatRef::row_major(dyg, g.cout_g, nb * p),
                    MatRef::row_major_t(colg, k, nb * p),
                    MatMut::row_major(&mut dwc[gr * g.cout_g * k..][..g.cout_g * k], g.cout_g, k),
                    true,
                    false,
                );
                if need_dx {
                    // dcol_g [K, nb·P] = W_gᵀ [K, cout_g] · dY_g, then scattered back per image.
                    sgemm(
                        MatRef::row_major_t(wg, g.cout_g, k),
                        MatRef::row_major(dyg, g.cout_g, nb * p),
                        MatMut::row_major(dcol, k, nb * p),
                        false,
                        false,
                    );
                    for n in 0..nb {
                        let dxg = &mut dxc[n * img_in + gr * g.cin_g * g.h * g.w..]
                            [..g.cin_g * g.h * g.w];
                        col2im(&g, &dcol[n * p..], nb * p, dxg);
                    }
                }
            }
        });
    };
    if need_dx {
        dx.par_chunks_mut(ch * img_in)
            .zip(dws.par_chunks_mut(slot))
            .enumerate()
            .for_each(|(c, (dxc, dwc))| work(c, dxc, dwc));
    } else {
        dws.par_chunks_mut(slot)
            .enumerate()
            .for_each(|(c, dwc)| work(c, &mut [], dwc));
    }
    let mut sum = vec![0.0f32; slot];
    for part in dws.chunks(slot) {
        sum.iter_mut().zip(part).for_each(|(a, b)| *a += b);
    }
    let db = sum.split_off(wlen);
    let dw = sum;
    let mut grads = vec![
        need_dx.then(|| from_vec(x.shape(), dx)),
        Some(from_vec(wt.shape(), dw)),
    ];
    if inputs.len() > 2 {
        grads.push(Some(from_vec(&[g.cout], db)));
    }
    grads
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::OpKind;
    use crate::ops::gradcheck::{check_op, rand_tensor};
    use crate::tensor::zeros;

    #[test]
    fn hand_computed_3x3_with_padding() {
        // 1x1x3x3 input 1..9, 1x1x3x3 kernel of ones, pad 1: centre = 45, corner = 12.
        let x = from_vec(&[1, 1, 3, 3], (1..=9).map(|v| v as f32).collect());
        let w = from_vec(&[1, 1, 3, 3], vec![1.0; 9]);
        let b = from_vec(&[1], vec![0.5]);
        let y = forward(&Conv2dAttrs::simple(1, 1), &[&x, &w, &b], false).output;
        assert_eq!(y.shape(), &[1, 1, 3, 3]);
        assert_eq!(y[[0, 0, 1, 1]], 45.5);
        assert_eq!(y[[0, 0, 0, 0]], 12.5);
        assert_eq!(y[[0, 0, 2, 2]], 28.5);
    }

    #[test]
    fn stride_dilation_shape() {
        let a = Conv2dAttrs {
            stride: [2, 1],
            pads: [1, 0, 2, 1],
            dilation: [2, 1],
            groups: 1,
        };
        let s = output_shape(&a, &[&[2, 3, 9, 8], &[4, 3, 3, 2]]).unwrap();
        // H: (9+3-5)/2+1 = 4; W: (8+1-2)/1+1 = 8
        assert_eq!(s, vec![2, 4, 4, 8]);
        assert!(output_shape(&a, &[&[2, 4, 9, 8], &[4, 3, 3, 2]]).is_err());
    }

    #[test]
    fn gradients_plain_strided_dilated() {
        let a = Conv2dAttrs {
            stride: [2, 1],
            pads: [1, 0, 2, 1],
            dilation: [1, 2],
            groups: 1,
        };
        let x = rand_tensor(&[2, 3, 6, 7], 1);
        let w = rand_tensor(&[4, 3, 3, 2], 2);
        let b = rand_tensor(&[4], 3);
        check_op(&OpKind::Conv2d(a), &[x, w, b], &[true, true, true]);
    }

    #[test]
    fn gradients_grouped_and_pointwise() {
        let a = Conv2dAttrs {
            stride: [1, 1],
            pads: [1; 4],
            dilation: [1, 1],
            groups: 2,
        };
        check_op(
            &OpKind::Conv2d(a),
            &[rand_tensor(&[2, 4, 5, 5], 4), rand_tensor(&[6, 2, 3, 3], 5)],
            &[true, true],
        );
        let p = Conv2dAttrs::simple(1, 0);
        check_op(
            &OpKind::Conv2d(p),
            &[
                rand_tensor(&[3, 4, 3, 3], 6),
                rand_tensor(&[5, 4, 1, 1], 7),
                rand_tensor(&[5], 8),
            ],
            &[true, true, true],
        );
    }

    #[test]
    fn gradients_depthwise_with_multiplier() {
        let a = Conv2dAttrs {
            stride: [2, 2],
            pads: [1; 4],
            dilation: [1, 1],
            groups: 3,
        };
        check_op(
            &OpKind::Conv2d(a),
            &[
                rand_tensor(&[2, 3, 7, 6], 9),
                rand_tensor(&[6, 1, 3, 3], 10),
                rand_tensor(&[6], 11),
            ],
            &[true, true, true],
        );
    }

    #[test]
    fn depthwise_direct_equals_dense_block_diagonal() {
        // Depthwise conv equals a dense conv whose weight is zero off the diagonal.
        let a = Conv2dAttrs {
            stride: [1, 1],
            pads: [1; 4],
            dilation: [1, 1],
            groups: 3,
        };
        let x = rand_tensor(&[2, 3, 5, 5], 12);
        let w = rand_tensor(&[3, 1, 3, 3], 13);
        let y = forward(&a, &[&x, &w], false).output;
        let mut wd = zeros(&[3, 3, 3, 3]);
        for c in 0..3 {
            for i in 0..3 {
                for j in 0..3 {
                    wd[[c, c, i, j]] = w[[c, 0, i, j]];
                }
            }
        }
        let yd = forward(&Conv2dAttrs::simple(1, 1), &[&x, &wd], false).output;
        for (p, q) in y.iter().zip(yd.iter()) {
            assert!((p - q).abs() < 1e-5);
        }
    }
}
