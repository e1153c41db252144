//! Fake quantization (quantize then dequantize, in float) for quantization-aware simulation.
//!
//! Integer grid, inputs `[x, scale, zero_point]` (per tensor: one value each; per channel: one per
//! index of `axis`). The arithmetic is PyTorch's `fake_quantize_per_{tensor,channel}_affine`:
//!
//! ```text
//! inv = 1 / scale                                   (f32)
//! q   = round_half_even(x · inv) + zero_point       (the one rounding mode of qatlas)
//! y   = (clamp(q, qmin, qmax) − zero_point) · scale
//! ```
//!
//! Round-half-to-even is what PyTorch's `std::nearbyint` does in the default floating-point
//! environment; the integer runtime must quantize with exactly this formula (`x · (1/scale)`, not
//! `x / scale`: the two differ in the last bit) to match the simulation bit for bit. The zero
//! point is rounded (half to even) and clamped to the grid, the scale taken as
//! `max(|scale|, f32::EPSILON)`, so learned parameters can never leave the valid domain.
//!
//! Half-precision grid, input `[x]`: `y = f32(f16(x))`, round to nearest even.
//!
//! Observing quantizer (quantization-aware training, PyTorch's `FusedMovingAvgObsFakeQuantize`):
//! with an [`FqObserver`] the inputs are `[x, scale, zero_point, running_min, running_max]`. In
//! training mode, unless frozen, it first moves the running range towards the batch's
//! (per-channel) min/max, `run += c·(batch − run)` (the first batch, or a non-finite running
//! value, sets it), recomputes scale and zero point with [`qparams_for_range`] (PyTorch's
//! `_calculate_qparams`, the formula `quant::scheme` uses too), quantizes with those and reports
//! all four as updates, as BatchNorm reports its running statistics. In eval mode, or frozen, it
//! uses the stored scale and zero point.
//!
//! Backward is the straight-through estimator: `dx = dy` where the unclamped `q` lies inside
//! `[qmin, qmax]` (for fp16: where the value does not overflow), else 0. When the scale or the
//! zero point are trainable (LSQ, issue 5) their gradients follow PyTorch's
//! `_fake_quantize_learnable_per_*_affine` with LSQ's gradient scaling
//! `g = 1 / sqrt(numel(x) · qmax)`: for the scale, `(y − x) / scale` inside the range,
//! `qmin − zp` below, `qmax − zp` above; for the zero point, `−scale` outside, 0 inside.
//! Depends on `tensor` only.

mod backward;
pub use backward::backward;

use super::par::PAR_MIN;
use super::{Forward, Mode, OpError, Saved, error::invalid};
use crate::tensor::{Tensor, from_vec, slice};
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

/// The grid values are snapped to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum QuantGrid {
    /// Integers `qmin..=qmax` with a scale and zero point (inputs `[x, scale, zero_point]`).
    Int { qmin: i32, qmax: i32 },
    /// IEEE 754 half precision (input `[x]`).
    Fp16,
}

/// Attributes of a fake quantizer.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct FakeQuantAttrs {
    pub grid: QuantGrid,
    /// Axis of per-channel scales and zero points; `None` for one scale for the whole tensor.
    pub axis: Option<usize>,
    /// Range observer updating scale and zero point while training (integer grids only).
    #[serde(default)]
    pub observer: Option<FqObserver>,
    /// Oscillation damping of a weight quantizer in training (Nagel et al. 2022): backward adds
    /// `2·damping·(x − y)` inside the grid, the gradient of `damping·Σ(y − clip(x))²` with `y`
    /// held constant, pulling latent weights towards the centre of their bin. 0: off.
    #[serde(default)]
    pub damping: f32,
}

/// A moving-average min/max observer inside a fake quantizer.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct FqObserver {
    /// Weight of the batch's min/max in the running range (PyTorch's `averaging_constant`,
    /// 0.01; 1 follows the current tensor).
    pub averaging: f32,
    /// Zero point of a symmetric grid (0 for s8, 128 for u8); `None` for an affine grid.
    pub symmetric_zero_point: Option<i32>,
    /// Keep the stored scale and zero point (observer frozen).
    pub frozen: bool,
}

impl FakeQuantAttrs {
    /// Number of inputs the op takes.
    pub fn num_inputs(&self) -> usize {
        match (self.grid, &self.observer) {
            (QuantGrid::Int { .. }, None) => 3,
            (QuantGrid::Int { .. }, Some(_)) => 5,
            (QuantGrid::Fp16, _) => 1,
        }
    }
}

/// PyTorch's `torch.finfo(torch.float32).eps`, the smallest scale qparams produce.
pub const SCALE_EPS: f32 = f32::EPSILON;

/// Scale and zero point for a range, in f32 exactly like PyTorch's `_calculate_qparams`: the
/// range is widened to include 0; symmetric grids use `symmetric_zero_point`.
pub fn qparams_for_range(
    min: f32,
    max: f32,
    qmin: i32,
    qmax: i32,
    symmetric_zero_point: Option<i32>,
) -> (f32, i32) {
    let min_neg = min.min(0.0);
    let max_pos = max.max(0.0);
    match symmetric_zero_point {
        Some(zp) => {
            let m = (-min_neg).max(max_pos);
            ((m / ((qmax - qmin) as f32 / 2.0)).max(SCALE_EPS), zp)
        }
        None => {
            let scale = ((max_pos - min_neg) / (qmax - qmin) as f32).max(SCALE_EPS);
            let zp = qmin - (min_neg / scale).round_ties_even() as i32;
            (scale, zp.clamp(qmin, qmax))
        }
    }
}

/// The scale actually used for a stored scale parameter.
pub fn effective_scale(s: f32) -> f32 {
    s.abs().max(f32::EPSILON)
}

/// The zero point actually used for a stored (float) zero-point parameter.
pub fn effective_zero_point(z: f32, qmin: i32, qmax: i32) -> f32 {
    z.round_ties_even().clamp(qmin as f32, qmax as f32)
}

/// The rounding rule (defined in `kernels::round`, shared with the integer kernels).
pub use crate::kernels::round::round_half_even;

/// The unclamped quantized value `round_half_even(x · inv_scale) + zp`, as an exact f32 integer.
#[inline]
pub fn quantize_unclamped(x: f32, inv_scale: f32, zp: f32) -> f32 {
    round_half_even(x * inv_scale) + zp
}

/// One fake-quantized value (see the module doc for the formula).
#[inline]
pub fn fake_quant_value(x: f32, scale: f32, inv_scale: f32, zp: f32, qmin: f32, qmax: f32) -> f32 {
    (clamp_keep_nan(quantize_unclamped(x, inv_scale, zp), qmin, qmax) - zp) * scale
}

/// `v` clamped to `[lo, hi]`, NaN kept, written as two selects so that loops over it
/// vectorize (`f32::clamp` checks its bounds, which keeps the loop scalar when they are not
/// constants).
#[inline]
fn clamp_keep_nan(v: f32, lo: f32, hi: f32) -> f32 {
    let v = if v < lo { lo } else { v };
    if v > hi { hi } else { v }
}

/// `f32(f16(x))`, round to nearest even.
#[inline]
pub fn fp16_value(x: f32) -> f32 {
    half::f16::from_f32(x).to_f32()
}

/// Shape rule.
pub fn output_shape(a: &FakeQuantAttrs, inputs: &[&[usize]]) -> Result<Vec<usize>, OpError> {
    let x = inputs[0];
    if inputs.len() != a.num_inputs() {
        return Err(OpError::Arity {
            op: "FakeQuant".into(),
            expected: a.num_inputs(),
            found: inputs.len(),
        });
    }
    if let QuantGrid::Int { qmin, qmax } = a.grid {
        if qmin >= qmax {
            return Err(invalid("FakeQuant", format!("empty grid {qmin}..={qmax}")));
        }
        let c = match a.axis {
            Some(ax) if ax >= x.len() => {
                return Err(invalid(
                    "FakeQuant",
                    format!("channel axis {ax} out of range for shape {x:?}"),
                ));
            }
            Some(ax) => x[ax],
            None => 1,
        };
        let named = [
            (1, "scale"),
            (2, "zero point"),
            (3, "running min"),
            (4, "running max"),
        ];
        for &(i, what) in &named[..inputs.len() - 1] {
            let n: usize = inputs[i].iter().product();
            if n != c || inputs[i].len() > 1 {
                return Err(OpError::Shape {
                    op: "FakeQuant".into(),
                    what: what.into(),
                    expected: vec![c],
                    found: inputs[i].to_vec(),
                });
            }
        }
    }
    Ok(x.to_vec())
}

/// `(outer, channels, inner)` of x for the per-channel axis.
fn layout(shape: &[usize], axis: Option<usize>) -> (usize, usize, usize) {
    match axis {
        Some(ax) => (
            shape[..ax].iter().product(),
            shape[ax],
            shape[ax + 1..].iter().product(),
        ),
        None => (1, 1, shape.iter().product()),
    }
}

/// Per-channel `(scale, 1/scale, zero point)` from the op's inputs.
fn channel_params(inputs: &[&Tensor], qmin: i32, qmax: i32) -> Vec<(f32, f32, f32)> {
    slice(inputs[1])
        .iter()
        .zip(slice(inputs[2]))
        .map(|(&s, &z)| {
            let s = effective_scale(s);
            (s, 1.0 / s, effective_zero_point(z, qmin, qmax))
        })
        .collect()
}

/// Elements per parallel task of a per-tensor map.
const CHUNK: usize = 1 << 14;

/// Calls `f(channel, a_part, b_part, out_part)` over two same-shaped inputs and the output,
/// split into pieces that each lie in one channel; in parallel for large tensors. Elementwise
/// work only, so the split does not change any result.
fn for_channels(
    a: &[f32],
    b: &[f32],
    out: &mut [f32],
    shape: &[usize],
    axis: Option<usize>,
    f: impl Fn(usize, &[f32], &[f32], &mut [f32]) + Sync + Send,
) {
    let (_, c, inner) = layout(shape, axis);
    let piece = if c == 1 { CHUNK } else { inner.max(1) };
    let ch = |i: usize| if c == 1 { 0 } else { i % c };
    if a.len() >= PAR_MIN {
        out.par_chunks_mut(piece)
            .zip(a.par_chunks(piece).zip(b.par_chunks(piece)))
            .enumerate()
            .with_min_len((CHUNK / piece).max(1))
            .for_each(|(i, (oc, (ac, bc)))| f(ch(i), ac, bc, oc));
    } else {
        out.chunks_mut(piece)
            .zip(a.chunks(piece).zip(b.chunks(piece)))
            .enumerate()
            .for_each(|(i, (oc, (ac, bc)))| f(ch(i), ac, bc, oc));
    }
}

/// Per-channel `(min, max)` of x (NaNs ignored; an empty channel gives `(inf, -inf)`).
fn channel_min_max(x: &Tensor, axis: Option<usize>) -> Vec<(f32, f32)> {
    let (_, c, inner) = layout(x.shape(), axis);
    let inner = inner.max(1);
    let mut mm = vec![(f32::INFINITY, f32::NEG_INFINITY); c];
    let fold = |acc: (f32, f32), part: &[f32]| {
        part.iter().fold(acc, |(lo, hi), &v| (lo.min(v), hi.max(v)))
    };
    if c == 1 {
        let chunks = slice(x).par_chunks(CHUNK);
        mm[0] = chunks
            .map(|p| fold((f32::INFINITY, f32::NEG_INFINITY), p))
            .reduce(
                || (f32::INFINITY, f32::NEG_INFINITY),
                |a, b| (a.0.min(b.0), a.1.max(b.1)),
            );
    } else {
        for (k, part) in slice(x).chunks(inner).enumerate() {
            mm[k % c] = fold(mm[k % c], part);
        }
    }
    mm
}

/// The observer step: new running range and `(scale, zero point)` per channel.
fn observe(
    o: &FqObserver,
    inputs: &[&Tensor],
    axis: Option<usize>,
    qmin: i32,
    qmax: i32,
) -> (Vec<(f32, f32)>, Vec<(f32, f32)>) {
    let batch = channel_min_max(inputs[0], axis);
    let (rmin, rmax) = (slice(inputs[3]), slice(inputs[4]));
    let c = o.averaging;
    let ranges: Vec<(f32, f32)> = batch
        .iter()
        .enumerate()
        .map(|(ch, &(bl, bh))| {
            let (l, h) = (rmin[ch], rmax[ch]);
            if !bl.is_finite() || !bh.is_finite() {
                (l, h)
            } else if !l.is_finite() || !h.is_finite() {
                (bl, bh)
            } else {
                (l + c * (bl - l), h + c * (bh - h))
            }
        })
        .collect();
    let params = ranges
        .iter()
        .map(|&(l, h)| {
            let (s, z) = qparams_for_range(l, h, qmin, qmax, o.symmetric_zero_point);
            (s, z as f32)
        })
        .collect();
    (ranges, params)
}

/// Integer grid values (clamped) of `inputs[0]` under an integer quantizer with its stored
/// scale and zero point (`inputs[1..3]`); empty for the fp16 grid. Every grid of qatlas fits i8.
pub fn grid_values(a: &FakeQuantAttrs, inputs: &[&Tensor]) -> Vec<i8> {
    let QuantGrid::Int { qmin, qmax } = a.grid else {
        return Vec::new();
    };
    let x = inputs[0];
    let p = channel_params(inputs, qmin, qmax);
    let (lo, hi) = (qmin as f32, qmax as f32);
    let mut q = vec![0.0f32; x.len()];
    for_channels(
        slice(x),
        slice(x),
        &mut q,
        x.shape(),
        a.axis,
        |ch, xc, _, qc| {
            let (_, inv, z) = p[ch];
            for (o, &v) in qc.iter_mut().zip(xc) {
                *o = quantize_unclamped(v, inv, z).clamp(lo, hi);
            }
        },
    );
    q.into_iter().map(|v| v as i8).collect()
}

/// Forward pass (`mode` matters only for an observing quantizer).
pub fn forward(a: &FakeQuantAttrs, inputs: &[&Tensor], mode: Mode) -> Forward {
    let x = inputs[0];
    let xs = slice(x);
    let mut y = vec![0.0f32; xs.len()];
    let (qmin, qmax) = match a.grid {
        QuantGrid::Fp16 => {
            for_channels(xs, xs, &mut y, x.shape(), None, |_, xc, _, yc| {
                yc.iter_mut().zip(xc).for_each(|(o, &v)| *o = fp16_value(v));
            });
            return Forward::plain(from_vec(x.shape(), y));
        }
        QuantGrid::Int { qmin, qmax } => (qmin, qmax),
    };
    let mut updates = Vec::new();
    let mut saved = Saved::None;
    let p = match &a.observer {
        Some(o) if mode == Mode::Train && !o.frozen => {
            let (ranges, sz) = observe(o, inputs, a.axis, qmin, qmax);
            let c = sz.len();
            let col = |f: &dyn Fn(usize) -> f32| from_vec(&[c], (0..c).map(f).collect());
            updates.push((1, col(&|i| sz[i].0)));
            updates.push((2, col(&|i| sz[i].1)));
            updates.push((3, col(&|i| ranges[i].0)));
            updates.push((4, col(&|i| ranges[i].1)));
            saved = Saved::FakeQuant(sz.clone());
            sz.iter().map(|&(s, z)| (s, 1.0 / s, z)).collect()
        }
        _ => channel_params(inputs, qmin, qmax),
    };
    let (lo, hi) = (qmin as f32, qmax as f32);
    for_channels(xs, xs, &mut y, x.shape(), a.axis, |ch, xc, _, yc| {
        let (s, inv, z) = p[ch];
        for (o, &v) in yc.iter_mut().zip(xc) {
            *o = fake_quant_value(v, s, inv, z, lo, hi);
        }
    });
    Forward {
        output: from_vec(x.shape(), y),
        saved,
        updates,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::{FwdCtx, Mode, OpKind, Saved};
    use rand::SeedableRng;

    fn int(qmin: i32, qmax: i32, axis: Option<usize>) -> FakeQuantAttrs {
        FakeQuantAttrs {
            grid: QuantGrid::Int { qmin, qmax },
            axis,
            observer: None,
            damping: 0.0,
        }
    }

    fn t(shape: &[usize], v: &[f32]) -> Tensor {
        from_vec(shape, v.to_vec())
    }

    fn run(a: &FakeQuantAttrs, ins: &[Tensor]) -> Tensor {
        let refs: Vec<&Tensor> = ins.iter().collect();
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(0);
        let mut ctx = FwdCtx {
            mode: Mode::Eval,
            need_backward: false,
            rng: &mut rng,
        };
        OpKind::FakeQuant(a.clone())
            .forward(&refs, &mut ctx)
            .unwrap()
            .output
    }

    /// Scale 0.5, zero point 3 on u4 (0..15): hand-computed values incl. ties to even and clamps.
    #[test]
    fn int_grid_rounds_half_to_even_and_clamps() {
        let x = t(&[8], &[0.25, 0.75, -1.25, 1.0, -2.0, 6.1, 100.0, -0.26]);
        let y = run(&int(0, 15, None), &[x, t(&[1], &[0.5]), t(&[1], &[3.0])]);
        // x/s: 0.5 -> 0 (even), 1.5 -> 2, -2.5 -> -2, 2, -4 -> q=-1 clamps to 0 => -1.5,
        // 12.2 -> 12 => q 15 => 6.0, 200 clamps => 6.0, -0.52 -> -1.
        assert_eq!(
            y.as_slice().unwrap(),
            &[0.0, 1.0, -1.0, 1.0, -1.5, 6.0, 6.0, -0.5]
        );
    }

    #[test]
    fn per_channel_uses_each_channels_scale() {
        // [2 channels (axis 1), 2 elements each], symmetric int4 -8..7.
        let x = t(&[1, 2, 2], &[1.0, -9.0, 1.0, 0.3]);
        let y = run(
            &int(-8, 7, Some(1)),
            &[x, t(&[2], &[1.0, 0.25]), t(&[2], &[0.0, 0.0])],
        );
        // ch0: 1 -> 1, -9 -> -8; ch1: 1/0.25 = 4 -> 1.0, 0.3/0.25 = 1.2 -> 1 => 0.25.
        assert_eq!(y.as_slice().unwrap(), &[1.0, -8.0, 1.0, 0.25]);
    }

    #[test]
    fn fp16_rounds_through_half() {
        let x = t(&[3], &[1.0 + 1.0 / 4096.0, 65520.0, 0.1]);
        let y = run(
            &FakeQuantAttrs {
                grid: QuantGrid::Fp16,
                axis: None,
                observer: None,
                damping: 0.0,
            },
            &[x],
        );
        // 1 + 2^-12 is a tie between 1 and 1 + 2^-10: even mantissa -> 1.0; 65520 overflows.
        assert_eq!(y[0], 1.0);
        assert!(y[1].is_infinite());
        assert_eq!(y[2], half::f16::from_f32(0.1).to_f32());
    }

    /// STE: gradient passes exactly where the rounded value lies on the grid.
    #[test]
    fn ste_mask_and_lsq_gradients() {
        let a = int(0, 15, None);
        let x = t(&[4], &[1.0, -1.8, 7.6, 7.74]);
        let (s, z) = (t(&[1], &[0.5]), t(&[1], &[3.0]));
        let dy = t(&[4], &[1.0, 2.0, 3.0, 4.0]);
        let g = OpKind::FakeQuant(a.clone())
            .backward(&[&x, &s, &z], &x, &Saved::None, &dy, &[true, true, true])
            .unwrap();
        // q = round(2x) + 3: 5 (inside), -4 + 3 = -1 (below), 15 + 3 = 18 twice (above).
        assert_eq!(
            g[0].as_ref().unwrap().as_slice().unwrap(),
            &[1.0, 0.0, 0.0, 0.0]
        );
        // dscale: in: (1.0 - 1.0)/0.5 = 0; below: 0-3 = -3 (x2); above: 15-3 = 12 (x3, x4).
        let gf = 1.0 / (4.0f64 * 15.0).sqrt();
        let want_s = ((-3.0 * 2.0 + 12.0 * 3.0 + 12.0 * 4.0) * gf) as f32;
        assert!((g[1].as_ref().unwrap()[0] - want_s).abs() < 1e-6);
        // dzp: -scale outside: -(2+3+4)*0.5.
        let want_z = (-(2.0 + 3.0 + 4.0) * 0.5 * gf) as f32;
        assert!((g[2].as_ref().unwrap()[0] - want_z).abs() < 1e-6);
    }

    #[test]
    fn grid_values_round_per_channel_and_clamp() {
        let a = FakeQuantAttrs {
            grid: QuantGrid::Int { qmin: -8, qmax: 7 },
            axis: Some(0),
            observer: None,
            damping: 0.0,
        };
        let x = t(&[2, 3], &[0.24, 0.26, -9.0, 1.0, 2.5, 100.0]);
        let s = t(&[2], &[0.1, 1.0]);
        let z = t(&[2], &[0.0, 0.0]);
        // 2.4 -> 2, 2.6 -> 3, -90 -> -8; 1, 2.5 -> 2 (half to even), 100 -> 7.
        assert_eq!(grid_values(&a, &[&x, &s, &z]), vec![2, 3, -8, 1, 2, 7]);
    }

    /// Damping adds 2·damping·(x − fq(x)) inside the grid and nothing outside it.
    #[test]
    fn damping_pulls_inside_weights_towards_their_grid_point() {
        let a = FakeQuantAttrs {
            damping: 0.25,
            ..int(-8, 7, None)
        };
        // s = 0.5: 1.1 -> 1.0 (pull +0.05), -0.9 -> -1.0 (pull -0.05·... sign), 9 clipped.
        let x = t(&[3], &[1.1, -0.9, 9.0]);
        let (s, z) = (t(&[1], &[0.5]), t(&[1], &[0.0]));
        let dy = t(&[3], &[1.0, 1.0, 1.0]);
        let g = OpKind::FakeQuant(a)
            .backward(&[&x, &s, &z], &x, &Saved::None, &dy, &[true, false, false])
            .unwrap();
        let d = g[0].as_ref().unwrap();
        let want = [1.0 + 0.5 * (1.1 - 1.0), 1.0 + 0.5 * (-0.9 + 1.0), 0.0];
        for (got, w) in d.iter().zip(want) {
            assert!((got - w).abs() < 1e-6, "{got} vs {w}");
        }
    }

    /// Inside the range the LSQ scale gradient is round(x/s) - x/s (times the gradient scale).
    #[test]
    fn lsq_scale_gradient_inside_range() {
        let a = int(-8, 7, None);
        let x = t(&[1], &[1.3]);
        let (s, z) = (t(&[1], &[1.0]), t(&[1], &[0.0]));
        let g = backward(
            &a,
            &[&x, &s, &z],
            &Saved::None,
            &t(&[1], &[1.0]),
            &[false, true, false],
        );
        let want = (1.0 - 1.3) / (7.0f32).sqrt();
        assert!((g[1].as_ref().unwrap()[0] - want).abs() < 1e-6);
        assert!(g[0].is_none() && g[2].is_none());
    }

    #[test]
    fn large_tensors_match_the_serial_path() {
        let n = PAR_MIN * 2 + 7;
        let xs: Vec<f32> = (0..n)
            .map(|i| ((i * 37) % 1000) as f32 / 100.0 - 5.0)
            .collect();
        let a = int(0, 255, Some(1));
        let x = t(&[1, 7, n / 7], &xs[..n / 7 * 7]);
        let sc = t(&[7], &[0.01, 0.02, 0.03, 0.04, 0.05, 0.06, 0.07]);
        let zp = t(&[7], &[0.0, 10.0, 20.0, 128.0, 100.0, 3.0, 255.0]);
        let y = run(&a, &[x.clone(), sc.clone(), zp.clone()]);
        let inner = n / 7;
        for (k, (&v, &yv)) in x.iter().zip(y.iter()).enumerate() {
            let ch = k / inner;
            let (s, z) = (sc[ch], zp[ch]);
            assert_eq!(yv, fake_quant_value(v, s, 1.0 / s, z, 0.0, 255.0));
        }
    }

    #[test]
    fn fast_rounding_equals_round_ties_even() {
        let mut v = vec![
            0.5f32, 1.5, 2.5, -0.5, -1.5, -2.5, 4194303.5, -4194303.5, 1e-8, 0.49999997,
        ];
        v.extend((0..100_000).map(|i| (i as f32 - 50_000.0) * 0.25 + (i % 7) as f32 * 1e-3));
        for x in v {
            assert_eq!(round_half_even(x), x.round_ties_even() + 0.0, "{x}");
        }
        assert_eq!(round_half_even(1e30), 4194304.0);
        assert!(round_half_even(f32::NAN).is_nan());
    }

    #[test]
    fn shape_rule_rejects_wrong_parameter_shapes() {
        let a = int(-128, 127, Some(0));
        assert!(output_shape(&a, &[&[4, 3], &[4], &[4]]).is_ok());
        assert!(output_shape(&a, &[&[4, 3], &[3], &[3]]).is_err());
        assert!(output_shape(&int(5, 5, None), &[&[4], &[1], &[1]]).is_err());
    }

    #[test]
    fn observer_moves_the_range_then_quantizes_with_it() {
        let mut a = int(0, 255, None);
        a.observer = Some(FqObserver {
            averaging: 0.5,
            symmetric_zero_point: None,
            frozen: false,
        });
        let x = t(&[4], &[-1.0, 0.0, 1.0, 3.0]);
        // Running range [0, 1] moves half-way to the batch's [-1, 3]: [-0.5, 2].
        let ins = [
            x.clone(),
            t(&[1], &[1.0]),
            t(&[1], &[0.0]),
            t(&[1], &[0.0]),
            t(&[1], &[1.0]),
        ];
        let refs: Vec<&Tensor> = ins.iter().collect();
        let f = forward(&a, &refs, Mode::Train);
        let (s, z) = qparams_for_range(-0.5, 2.0, 0, 255, None);
        assert_eq!((s, z), (2.5 / 255.0, 51));
        let got: Vec<(usize, f32)> = f.updates.iter().map(|(i, v)| (*i, v[0])).collect();
        assert_eq!(got, vec![(1, s), (2, 51.0), (3, -0.5), (4, 2.0)]);
        // -1 is below the new range: clamps to q = 0, i.e. -51 · s.
        assert_eq!(f.output[0], -51.0 * s);
        assert_eq!(f.output[3], (255.0 - 51.0) * s);
        // The STE mask uses the parameters of the forward pass, not the stale inputs.
        let dy = t(&[4], &[1.0; 4]);
        let g = backward(
            &a,
            &refs,
            &f.saved,
            &dy,
            &[true, false, false, false, false],
        );
        assert_eq!(g.len(), 5);
        assert_eq!(
            g[0].as_ref().unwrap().as_slice().unwrap(),
            &[0.0, 1.0, 1.0, 0.0]
        );
        // Eval mode and a frozen observer use the stored scale 1, zero point 0.
        let e = forward(&a, &refs, Mode::Eval);
        assert!(e.updates.is_empty());
        assert_eq!(e.output.as_slice().unwrap(), &[0.0, 0.0, 1.0, 3.0]);
        a.observer.as_mut().unwrap().frozen = true;
        let fz = forward(&a, &refs, Mode::Train);
        assert!(fz.updates.is_empty());
        assert_eq!(fz.output, e.output);
        // Non-finite running values (never observed) take the batch range.
        a.observer.as_mut().unwrap().frozen = false;
        let ins2 = [
            x,
            t(&[1], &[1.0]),
            t(&[1], &[0.0]),
            t(&[1], &[f32::INFINITY]),
            t(&[1], &[f32::NEG_INFINITY]),
        ];
        let refs2: Vec<&Tensor> = ins2.iter().collect();
        let f2 = forward(&a, &refs2, Mode::Train);
        assert_eq!(f2.updates[2].1[0], -1.0);
        assert_eq!(f2.updates[3].1[0], 3.0);
    }
}
