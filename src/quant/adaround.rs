//! Learned rounding for post-training quantization (AdaRound, Nagel et al. 2020) with bias
//! correction.
//!
//! Rounding every weight to its nearest grid point is not what minimises a layer's output
//! error; at 4 bits the difference is large. For each quantized Conv2d/Linear layer in
//! topological order, [`adaround`] collects, on calibration batches, the layer's input patches
//! in the float model (`x`) and in the fake-quant model with the layers before it already
//! rounded (`x̂`), and learns per weight whether to round down or up:
//!
//! ```text
//! W̃ = s · (clamp(floor(W / s) + h(V), qmin, qmax) − z),  h(V) = clamp(σ(V)·1.2 − 0.1, 0, 1)
//! min_V  ‖W̃ x̂ − W x‖² / ‖W̃₀ x̂ − W x‖²  +  λ · mean(1 − |2h(V) − 1|^β)
//! ```
//!
//! (`W̃₀`: nearest rounding). The squared error is computed from the patches' second moments
//! `H = x̂ x̂ᵀ` and `C = x x̂ᵀ` (one K×K matrix per group), so an iteration costs `cout·K²`
//! whatever the number of patches; Adam, `β` annealed from 20 to 2 after a warm-up without the
//! regulariser, then `h ≥ ½` rounds up. A group keeps nearest rounding if the learned one is not
//! better on the calibration patches. Bias correction then adds `W·E[x] − W̃·E[x̂]` to the bias
//! (the shift of the output's mean). The result is written into the fake-quant model's weights
//! as grid values (`W̃` itself), so the model's own quantizers, the integer runtime and the QDQ
//! export all see the learned rounding. Depends on `graph`, `ops`.

use super::error::QuantError;
use crate::graph::{Graph, Source, ValueId};
use crate::ops::{FakeQuantAttrs, Mode, OpKind, QuantGrid};
use crate::tensor::{Tensor, from_vec, slice};
use ndarray::{Array2, Axis};
use rand::{Rng, SeedableRng};
use rayon::prelude::*;
use serde::{Deserialize, Serialize};
use std::sync::atomic::{AtomicBool, Ordering};

/// Settings of [`adaround`].
#[derive(Clone, Debug, PartialEq)]
pub struct AdaRoundOptions {
    /// Adam iterations per layer.
    pub iterations: usize,
    /// Patches (columns) sampled per layer from the calibration batches.
    pub max_columns: usize,
    /// Weight of the rounding regulariser.
    pub lambda: f32,
    /// Adam learning rate on V.
    pub lr: f32,
    /// Also correct each layer's bias for the shift of its output mean.
    pub bias_correction: bool,
}

impl Default for AdaRoundOptions {
    fn default() -> Self {
        AdaRoundOptions {
            iterations: 1500,
            max_columns: 20_000,
            lambda: 0.05,
            lr: 0.05,
            bias_correction: true,
        }
    }
}

/// What learned rounding did to one layer.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LayerRounding {
    pub layer: String,
    pub weights: usize,
    /// Weights rounded the other way than to nearest.
    pub flipped: usize,
    /// Output squared error on the sampled patches after learned rounding, relative to nearest
    /// rounding (1 = no gain).
    pub relative_error: f64,
    /// Patches the statistics came from.
    pub columns: usize,
    /// Mean absolute change of the bias (0 without bias correction or without a bias).
    pub bias_shift: f64,
}

/// One quantized layer of the fake-quant model.
struct Target {
    /// Node index in the fake-quant model and in the float model.
    node: usize,
    float_node: usize,
    weight_param: usize,
    scale: Vec<f32>,
    zero_point: Vec<f32>,
    qmin: f32,
    qmax: f32,
}

fn targets(float: &Graph, fq: &Graph) -> Vec<Target> {
    let mut out = Vec::new();
    for (ni, n) in fq.nodes.iter().enumerate() {
        if !matches!(n.op, OpKind::Conv2d(_) | OpKind::Linear) {
            continue;
        }
        let Some(fi) = float.nodes.iter().position(|f| f.name == n.name) else {
            continue;
        };
        let Source::Node(q) = fq.values[n.inputs[1]].source else {
            continue;
        };
        let OpKind::FakeQuant(FakeQuantAttrs {
            grid: QuantGrid::Int { qmin, qmax },
            axis,
            ..
        }) = fq.nodes[q].op
        else {
            continue;
        };
        let qn = &fq.nodes[q];
        let (Some(wp), Some(sp), Some(zp)) = (
            fq.param_of(qn.inputs[0]),
            fq.param_of(qn.inputs[1]),
            fq.param_of(qn.inputs[2]),
        ) else {
            continue;
        };
        let cout = fq.params[wp].tensor.shape()[0];
        let per = |p: usize| -> Option<Vec<f32>> {
            let v = slice(&fq.params[p].tensor).to_vec();
            match (axis, v.len()) {
                (None, 1) => Some(vec![v[0]; cout]),
                (Some(0), n) if n == cout => Some(v),
                _ => None,
            }
        };
        let (Some(scale), Some(zero_point)) = (per(sp), per(zp)) else {
            continue;
        };
        out.push(Target {
            node: ni,
            float_node: fi,
            weight_param: wp,
            scale: scale
                .iter()
                .map(|&s| crate::ops::fake_quant::effective_scale(s))
                .collect(),
            zero_point: zero_point
                .iter()
                .map(|&z| crate::ops::fake_quant::effective_zero_point(z, qmin, qmax))
                .collect(),
            qmin: qmin as f32,
            qmax: qmax as f32,
        });
    }
    out
}

/// The value `v` of `g` on batch `x` (the forward stops being useful after it, but runs on).
fn tap_value(g: &Graph, v: ValueId, x: &Tensor) -> Result<Tensor, QuantError> {
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(0);
    let mut got = None;
    g.forward_tapped(
        std::slice::from_ref(x),
        Mode::Eval,
        false,
        &mut rng,
        &mut |id, t| {
            if id == v && got.is_none() {
                got = Some(t.clone());
            }
        },
    )?;
    got.ok_or_else(|| QuantError::Structure(format!("'{}' was not computed", g.values[v].name)))
}

/// Patch geometry of a layer: groups, K per group, and a function writing the patch of column
/// `col` of group `grp` of input `x` into `out`.
struct Patches {
    groups: usize,
    k: usize,
    columns_per_image: usize,
    conv: Option<(crate::ops::Conv2dAttrs, [usize; 2], [usize; 2])>,
}

impl Patches {
    fn new(op: &OpKind, x: &[usize], w: &[usize]) -> Self {
        match op {
            OpKind::Conv2d(a) => {
                let (kh, kw) = (w[2], w[3]);
                // The layer ran on this input, so its shape rule holds.
                let o = crate::ops::conv::output_shape(a, &[x, w]).unwrap_or_else(|_| vec![0; 4]);
                let (oh, ow) = (o[2], o[3]);
                Patches {
                    groups: a.groups,
                    k: w[1] * kh * kw,
                    columns_per_image: oh * ow,
                    conv: Some((a.clone(), [kh, kw], [oh, ow])),
                }
            }
            _ => Patches {
                groups: 1,
                k: x[1..].iter().product(),
                columns_per_image: 1,
                conv: None,
            },
        }
    }

    /// Writes the patch of image `n`, position `pos`, group `grp` of `x` (NCHW or N×K).
    fn patch(&self, x: &Tensor, n: usize, pos: usize, grp: usize, out: &mut [f32]) {
        let xs = slice(x);
        let Some((a, [kh, kw], [_, ow])) = &self.conv else {
            let k = self.k;
            out.copy_from_slice(&xs[n * k..(n + 1) * k]);
            return;
        };
        let s = x.shape();
        let (c, h, w) = (s[1], s[2], s[3]);
        let cin_g = c / self.groups;
        let (oy, ox) = (pos / ow, pos % ow);
        let mut i = 0;
        for ci in grp * cin_g..(grp + 1) * cin_g {
            let plane = &xs[(n * c + ci) * h * w..][..h * w];
            for ky in 0..*kh {
                let iy = (oy * a.stride[0] + ky * a.dilation[0]) as isize - a.pads[0] as isize;
                for kx in 0..*kw {
                    let ix = (ox * a.stride[1] + kx * a.dilation[1]) as isize - a.pads[1] as isize;
                    out[i] = if iy >= 0 && ix >= 0 && (iy as usize) < h && (ix as usize) < w {
                        plane[iy as usize * w + ix as usize]
                    } else {
                        0.0
                    };
                    i += 1;
                }
            }
        }
    }
}

/// One group's patch statistics: the sampled patches themselves when there are fewer of them
/// than the patch length (a Linear layer on a few hundred images), else their second moments
/// `H = x̂x̂ᵀ`, `C = x x̂ᵀ`, `F = x xᵀ` (divided by the count); and the patch means.
struct GroupStats {
    form: Form,
    mean_f: Vec<f32>,
    mean_q: Vec<f32>,
}

enum Form {
    Gram {
        h: Array2<f32>,
        c: Array2<f32>,
        f: Array2<f32>,
    },
    /// Patches as rows (m × K).
    Direct { xq: Array2<f32>, xf: Array2<f32> },
}

/// A layer's statistics, per group.
struct Moments {
    groups: Vec<GroupStats>,
    columns: usize,
}

fn moments(
    float: &Graph,
    fq: &Graph,
    t: &Target,
    batches: &[Tensor],
    max_columns: usize,
) -> Result<Moments, QuantError> {
    let node = &fq.nodes[t.node];
    let (vf, vq) = (float.nodes[t.float_node].inputs[0], node.inputs[0]);
    let wshape = fq.params[t.weight_param].tensor.shape().to_vec();
    let images: usize = batches.iter().map(|b| b.shape()[0]).sum();
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(0x0ada_0417);
    let (mut xf_cols, mut xq_cols): (Vec<Vec<f32>>, Vec<Vec<f32>>) = (Vec::new(), Vec::new());
    let mut geom = None;
    let mut columns = 0usize;
    for b in batches {
        let xf = tap_value(float, vf, b)?;
        let xq = tap_value(fq, vq, b)?;
        let p = Patches::new(&node.op, xq.shape(), &wshape);
        let total = images * p.columns_per_image;
        let n = b.shape()[0];
        let here = n * p.columns_per_image;
        // Each batch contributes its share of the sample.
        let take = ((max_columns as f64 * here as f64 / total as f64).ceil() as usize).min(here);
        if xf_cols.is_empty() {
            xf_cols = vec![Vec::new(); p.groups];
            xq_cols = vec![Vec::new(); p.groups];
        }
        let mut buf = vec![0.0f32; p.k];
        for j in 0..take {
            let col = if take == here {
                j
            } else {
                rng.random_range(0..here)
            };
            let (img, pos) = (col / p.columns_per_image, col % p.columns_per_image);
            for grp in 0..p.groups {
                p.patch(&xf, img, pos, grp, &mut buf);
                xf_cols[grp].extend_from_slice(&buf);
                p.patch(&xq, img, pos, grp, &mut buf);
                xq_cols[grp].extend_from_slice(&buf);
            }
            columns += 1;
        }
        geom = Some((p.groups, p.k));
    }
    let Some((groups, k)) = geom else {
        return Err(QuantError::NoData {
            point: node.name.clone(),
        });
    };
    let m = columns.max(1) as f32;
    let mut out = Moments {
        groups: Vec::new(),
        columns,
    };
    for grp in 0..groups {
        let to = |v: Vec<f32>| Array2::from_shape_vec((columns, k), v).expect("columns x K");
        let xf = to(std::mem::take(&mut xf_cols[grp]));
        let xq = to(std::mem::take(&mut xq_cols[grp]));
        let mean_f = xf.mean_axis(Axis(0)).expect("columns").to_vec();
        let mean_q = xq.mean_axis(Axis(0)).expect("columns").to_vec();
        let form = if 2 * columns < k {
            Form::Direct { xq, xf }
        } else {
            Form::Gram {
                h: xq.t().dot(&xq) / m,
                c: xf.t().dot(&xq) / m,
                f: xf.t().dot(&xf) / m,
            }
        };
        out.groups.push(GroupStats {
            form,
            mean_f,
            mean_q,
        });
    }
    Ok(out)
}

/// Rectified sigmoid `h(V)` and its derivative.
fn rect_sigmoid(v: f32) -> (f32, f32) {
    const ZETA: f32 = 1.1;
    const GAMMA: f32 = -0.1;
    let s = 1.0 / (1.0 + (-v).exp());
    let h = s * (ZETA - GAMMA) + GAMMA;
    if h <= 0.0 {
        (0.0, 0.0)
    } else if h >= 1.0 {
        (1.0, 0.0)
    } else {
        (h, (ZETA - GAMMA) * s * (1.0 - s))
    }
}

/// `V` with `h(V) = frac`.
fn inverse_rect_sigmoid(frac: f32) -> f32 {
    let s = ((frac + 0.1) / 1.2).clamp(1e-4, 1.0 - 1e-4);
    (s / (1.0 - s)).ln()
}

/// The output squared error per patch of rounded weights `W̃` against the float output
/// `W x`, and its gradient, for one group with float weights `w`.
enum Objective<'a> {
    Gram {
        h: &'a Array2<f32>,
        /// `W C`.
        wc: Array2<f32>,
        /// `tr(W F Wᵀ)`.
        base: f64,
    },
    Direct {
        xq: &'a Array2<f32>,
        /// `x Wᵀ` (m × rows).
        target: Array2<f32>,
    },
}

impl<'a> Objective<'a> {
    fn new(st: &'a GroupStats, w: &Array2<f32>) -> Self {
        match &st.form {
            Form::Gram { h, c, f } => Objective::Gram {
                h,
                wc: w.dot(c),
                base: (w.dot(f) * w).sum() as f64,
            },
            Form::Direct { xq, xf } => Objective::Direct {
                xq,
                target: xf.dot(&w.t()),
            },
        }
    }

    /// The error of `wt`, and its gradient when asked.
    fn eval(&self, wt: &Array2<f32>, grad: bool) -> (f64, Option<Array2<f32>>) {
        match self {
            Objective::Gram { h, wc, base } => {
                let wh = wt.dot(*h);
                let e = ((&wh * wt).sum() - 2.0 * (wc * wt).sum()) as f64 + base;
                (e, grad.then(|| (wh - wc) * 2.0))
            }
            Objective::Direct { xq, target } => {
                let m = xq.nrows().max(1) as f32;
                let r = xq.dot(&wt.t()) - target;
                let e = (r.mapv(|v| v * v).sum() / m) as f64;
                (e, grad.then(|| r.t().dot(*xq) * (2.0 / m)))
            }
        }
    }
}

/// Learns the rounding of one group's weights `w` (rows: output channels of the group).
/// Returns the rounded weights and the error relative to nearest rounding.
fn learn_group(
    w: &Array2<f32>,
    scale: &[f32],
    zero: &[f32],
    (qmin, qmax): (f32, f32),
    st: &GroupStats,
    opts: &AdaRoundOptions,
) -> (Array2<f32>, f64) {
    let (rows, k) = w.dim();
    let floor = Array2::from_shape_fn((rows, k), |(o, i)| (w[[o, i]] / scale[o]).floor());
    let grid = |o: usize, q: f32| (q.clamp(qmin - zero[o], qmax - zero[o])) * scale[o];
    let nearest = Array2::from_shape_fn((rows, k), |(o, i)| {
        grid(
            o,
            crate::ops::fake_quant::quantize_unclamped(w[[o, i]], 1.0 / scale[o], 0.0),
        )
    });
    let obj = Objective::new(st, w);
    let e_near = obj.eval(&nearest, false).0;
    let mut v = Array2::from_shape_fn((rows, k), |(o, i)| {
        inverse_rect_sigmoid(w[[o, i]] / scale[o] - floor[[o, i]])
    });
    let (mut adam_m, mut adam_v) = (
        Array2::<f32>::zeros((rows, k)),
        Array2::<f32>::zeros((rows, k)),
    );
    let warm = opts.iterations / 5;
    let norm = 1.0 / e_near.abs().max(1e-30) as f32;
    let n = (rows * k) as f32;
    let mut wt = nearest.clone();
    let mut dh = Array2::<f32>::zeros((rows, k));
    for it in 0..opts.iterations {
        let mut hv = Array2::<f32>::zeros((rows, k));
        for ((o, i), x) in hv.indexed_iter_mut() {
            let (h, d) = rect_sigmoid(v[[o, i]]);
            *x = h;
            let q = floor[[o, i]] + h;
            let inside = q >= qmin - zero[o] && q <= qmax - zero[o];
            dh[[o, i]] = if inside { d * scale[o] } else { 0.0 };
            wt[[o, i]] = grid(o, q);
        }
        let g = obj.eval(&wt, true).1.expect("gradient asked") * norm;
        let beta = if it < warm {
            None
        } else {
            let p = (it - warm) as f32 / (opts.iterations - warm).max(1) as f32;
            Some(20.0 + (2.0 - 20.0) * p)
        };
        let step = (it + 1) as i32;
        for ((o, i), gv) in g.indexed_iter() {
            let mut d = gv * dh[[o, i]];
            if let Some(b) = beta {
                let (_, ds) = rect_sigmoid(v[[o, i]]);
                let u = 2.0 * hv[[o, i]] - 1.0;
                // d/dh of 1 − |u|^β = −β|u|^(β−1)·sign(u)·2.
                let dreg = -b * u.abs().powf(b - 1.0) * u.signum() * 2.0;
                d += opts.lambda / n * dreg * ds;
            }
            let mm = &mut adam_m[[o, i]];
            let vv = &mut adam_v[[o, i]];
            *mm = 0.9 * *mm + 0.1 * d;
            *vv = 0.999 * *vv + 0.001 * d * d;
            let mh = *mm / (1.0 - 0.9f32.powi(step));
            let vh = *vv / (1.0 - 0.999f32.powi(step));
            v[[o, i]] -= opts.lr * mh / (vh.sqrt() + 1e-8);
        }
    }
    let hard = Array2::from_shape_fn((rows, k), |(o, i)| {
        let up = rect_sigmoid(v[[o, i]]).0 >= 0.5;
        grid(o, floor[[o, i]] + if up { 1.0 } else { 0.0 })
    });
    let e_hard = obj.eval(&hard, false).0;
    if e_hard < e_near {
        (hard, e_hard / e_near.max(1e-30))
    } else {
        (nearest, 1.0)
    }
}

/// Learned rounding (and bias correction) of every integer-quantized Conv2d/Linear weight of
/// the fake-quant model `fq` (prepared from the BatchNorm-folded float model `float`), in place,
/// from calibration `batches`. `on_layer(done, total)` reports progress; `stop` ends it between
/// layers (the layers done so far stay rounded).
pub fn adaround(
    float: &Graph,
    fq: &mut Graph,
    batches: &[Tensor],
    opts: &AdaRoundOptions,
    stop: &AtomicBool,
    on_layer: &mut dyn FnMut(usize, usize),
) -> Result<Vec<LayerRounding>, QuantError> {
    let ts = targets(float, fq);
    let mut report = Vec::new();
    for (li, t) in ts.iter().enumerate() {
        if stop.load(Ordering::Relaxed) {
            break;
        }
        on_layer(li, ts.len());
        let m = moments(float, fq, t, batches, opts.max_columns)?;
        let wt = fq.params[t.weight_param].tensor.clone();
        let shape = wt.shape().to_vec();
        let cout = shape[0];
        let groups = m.groups.len();
        let k = shape.iter().product::<usize>() / cout;
        let rows = cout / groups;
        let wflat = slice(&wt).to_vec();
        let wflat = &wflat;
        // Groups are independent: learned in parallel, results in group order.
        let learned: Vec<(Array2<f32>, Array2<f32>, f64)> = m
            .groups
            .par_iter()
            .enumerate()
            .map(|(grp, st)| {
                let o0 = grp * rows;
                let w = Array2::from_shape_fn((rows, k), |(o, i)| wflat[(o0 + o) * k + i]);
                let sc = &t.scale[o0..o0 + rows];
                let zp = &t.zero_point[o0..o0 + rows];
                let (q, rel) = learn_group(&w, sc, zp, (t.qmin, t.qmax), st, opts);
                (w, q, rel)
            })
            .collect();
        let mut new_w = wflat.clone();
        let mut flipped = 0usize;
        let mut bias_delta = vec![0.0f32; cout];
        for (grp, (w, q, _)) in learned.iter().enumerate() {
            let o0 = grp * rows;
            let sc = &t.scale[o0..o0 + rows];
            let zp = &t.zero_point[o0..o0 + rows];
            let st = &m.groups[grp];
            for ((o, i), &v) in q.indexed_iter() {
                let nearest =
                    crate::ops::fake_quant::quantize_unclamped(w[[o, i]], 1.0 / sc[o], 0.0)
                        .clamp(t.qmin - zp[o], t.qmax - zp[o])
                        * sc[o];
                flipped += usize::from((v - nearest).abs() > sc[o] * 0.5);
                new_w[(o0 + o) * k + i] = v;
            }
            if opts.bias_correction {
                for o in 0..rows {
                    let (mut a, mut b) = (0.0f64, 0.0f64);
                    for i in 0..k {
                        a += f64::from(w[[o, i]] * st.mean_f[i]);
                        b += f64::from(q[[o, i]] * st.mean_q[i]);
                    }
                    bias_delta[o0 + o] = (a - b) as f32;
                }
            }
        }
        let rel_error = learned.iter().map(|l| l.2).sum::<f64>() / groups.max(1) as f64;
        fq.params[t.weight_param].tensor = from_vec(&shape, new_w);
        let mut bias_shift = 0.0;
        if opts.bias_correction
            && let Some(&bv) = fq.nodes[t.node].inputs.get(2)
            && let Some(bp) = fq.param_of(bv)
        {
            let b = &mut fq.params[bp].tensor;
            for (x, d) in b.iter_mut().zip(&bias_delta) {
                *x += d;
            }
            bias_shift = bias_delta.iter().map(|d| f64::from(d.abs())).sum::<f64>() / cout as f64;
        }
        report.push(LayerRounding {
            layer: fq.nodes[t.node].name.clone(),
            weights: wflat.len(),
            flipped,
            relative_error: rel_error,
            columns: m.columns,
            bias_shift,
        });
    }
    on_layer(report.len(), ts.len());
    Ok(report)
}
