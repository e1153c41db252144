//! im2col and its adjoint col2im for [`super::conv`]: unfolding input patches into the columns of
//! a GEMM operand, for one image or a chunk of images laid side by side.

use super::conv::Geom;

/// im2col of one group of one image into rows of stride `rs`:
/// `col[((c*kh+i)*kw+j)*rs + oy*ow+ox] = x[c][iy][ix]` (0 outside the image).
pub(super) fn im2col(g: &Geom, x: &[f32], col: &mut [f32], rs: usize) {
    let p = g.p();
    for c in 0..g.cin_g {
        let plane = &x[c * g.h * g.w..(c + 1) * g.h * g.w];
        for i in 0..g.kh {
            for j in 0..g.kw {
                let row = &mut col[((c * g.kh + i) * g.kw + j) * rs..][..p];
                for oy in 0..g.oh {
                    let out = &mut row[oy * g.ow..(oy + 1) * g.ow];
                    let iy = (oy * g.sh + i * g.dh) as isize - g.pt as isize;
                    if iy < 0 || iy >= g.h as isize {
                        out.fill(0.0);
                        continue;
                    }
                    let src = &plane[iy as usize * g.w..(iy as usize + 1) * g.w];
                    let off = (j * g.dw) as isize - g.pl as isize;
                    if g.sw == 1 {
                        // Contiguous run with zero edges.
                        let lo = (-off).clamp(0, g.ow as isize) as usize;
                        let hi = (g.w as isize - off).clamp(lo as isize, g.ow as isize) as usize;
                        out[..lo].fill(0.0);
                        let s = (lo as isize + off) as usize;
                        out[lo..hi].copy_from_slice(&src[s..s + hi - lo]);
                        out[hi..].fill(0.0);
                    } else {
                        for (ox, o) in out.iter_mut().enumerate() {
                            let ix = (ox * g.sw) as isize + off;
                            *o = if ix >= 0 && ix < g.w as isize {
                                src[ix as usize]
                            } else {
                                0.0
                            };
                        }
                    }
                }
            }
        }
    }
}

/// Adjoint of [`im2col`]: adds the columns (rows of stride `rs`) back into the image gradient.
pub(super) fn col2im(g: &Geom, col: &[f32], rs: usize, dx: &mut [f32]) {
    for c in 0..g.cin_g {
        let plane = &mut dx[c * g.h * g.w..(c + 1) * g.h * g.w];
        for i in 0..g.kh {
            for j in 0..g.kw {
                let row = &col[((c * g.kh + i) * g.kw + j) * rs..][..g.p()];
                for oy in 0..g.oh {
                    let iy = (oy * g.sh + i * g.dh) as isize - g.pt as isize;
                    if iy < 0 || iy >= g.h as isize {
                        continue;
                    }
                    let dst = &mut plane[iy as usize * g.w..(iy as usize + 1) * g.w];
                    let src = &row[oy * g.ow..(oy + 1) * g.ow];
                    let off = (j * g.dw) as isize - g.pl as isize;
                    if g.sw == 1 {
                        let lo = (-off).clamp(0, g.ow as isize) as usize;
                        let hi = (g.w as isize - off).clamp(lo as isize, g.ow as isize) as usize;
                        let s = (lo as isize + off) as usize;
                        dst[s..s + hi - lo]
                            .iter_mut()
                            .zip(&src[lo..hi])
                            .for_each(|(d, v)| *d += v);
                    } else {
                        for (ox, v) in src.iter().enumerate() {
                            let ix = (ox * g.sw) as isize + off;
                            if ix >= 0 && ix < g.w as isize {
                                dst[ix as usize] += v;
                            }
                        }
                    }
                }
            }
        }
    }
}

/// Column buffer of a chunk of `nb` images, group-major: for group `gr`, a [K, nb·P] matrix
/// whose column `n·P + p` is output position `p` of image `n`.
pub(super) fn chunk_cols(g: &Geom, x: &[f32], nb: usize, col: &mut [f32]) {
    let (k, p, img_in) = (g.k(), g.p(), g.cin * g.h * g.w);
    for gr in 0..g.groups {
        let cg = &mut col[gr * k * nb * p..][..k * nb * p];
        for n in 0..nb {
            let xg = &x[n * img_in + gr * g.cin_g * g.h * g.w..][..g.cin_g * g.h * g.w];
            im2col(g, xg, &mut cg[n * p..], nb * p);
        }
    }
}

/// The same columns as [`chunk_cols`], appended in memory order to a fresh vector (no zero-fill
/// pass over a buffer that is overwritten anyway).
pub(super) fn chunk_cols_vec(g: &Geom, x: &[f32], nb: usize) -> Vec<f32> {
    let (p, img_in, plane) = (g.p(), g.cin * g.h * g.w, g.h * g.w);
    let mut v = Vec::with_capacity(g.groups * g.k() * nb * p);
    for gr in 0..g.groups {
        for c in 0..g.cin_g {
            for i in 0..g.kh {
                for j in 0..g.kw {
                    for n in 0..nb {
                        let src = &x[n * img_in + (gr * g.cin_g + c) * plane..][..plane];
                        emit_row(g, src, i, j, &mut v);
                    }
                }
            }
        }
    }
    v
}

/// Appends im2col row (i, j) of one input plane: the P values it contributes to the columns.
fn emit_row(g: &Geom, plane: &[f32], i: usize, j: usize, v: &mut Vec<f32>) {
    let off = (j * g.dw) as isize - g.pl as isize;
    let zeros = |v: &mut Vec<f32>, n: usize| v.resize(v.len() + n, 0.0);
    for oy in 0..g.oh {
        let iy = (oy * g.sh + i * g.dh) as isize - g.pt as isize;
        if iy < 0 || iy >= g.h as isize {
            zeros(v, g.ow);
            continue;
        }
        let src = &plane[iy as usize * g.w..(iy as usize + 1) * g.w];
        if g.sw == 1 {
            let lo = (-off).clamp(0, g.ow as isize) as usize;
            let hi = (g.w as isize - off).clamp(lo as isize, g.ow as isize) as usize;
            zeros(v, lo);
            let s = (lo as isize + off) as usize;
            v.extend_from_slice(&src[s..s + hi - lo]);
            zeros(v, g.ow - hi);
        } else {
            v.extend((0..g.ow).map(|ox| {
                let ix = (ox * g.sw) as isize + off;
                if ix >= 0 && ix < g.w as isize {
                    src[ix as usize]
                } else {
                    0.0
                }
            }));
        }
    }
}
