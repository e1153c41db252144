//! Backward pass of fake quantization: the straight-through estimator for `x` (with the
//! optional oscillation damping pull of weight quantizers), and LSQ's gradients for a trainable
//! scale and zero point (see the parent module for the formulas).

use super::{
    CHUNK, channel_params, fake_quant_value, for_channels, fp16_value, layout, quantize_unclamped,
};
use super::{FakeQuantAttrs, QuantGrid};
use crate::ops::Saved;
use crate::tensor::{Tensor, from_vec, slice};
use rayon::prelude::*;

/// Backward pass: STE for x; LSQ gradients for scale and zero point where requested.
pub fn backward(
    a: &FakeQuantAttrs,
    inputs: &[&Tensor],
    saved: &Saved,
    dy: &Tensor,
    need: &[bool],
) -> Vec<Option<Tensor>> {
    let x = inputs[0];
    let (qmin, qmax) = match a.grid {
        QuantGrid::Fp16 => {
            let max = half::f16::MAX.to_f32();
            let dx = ndarray::Zip::from(x)
                .and(dy)
                .map_collect(|&v, &g| if fp16_value(v).abs() <= max { g } else { 0.0 });
            return vec![Some(dx)];
        }
        QuantGrid::Int { qmin, qmax } => (qmin, qmax),
    };
    let p = match saved {
        Saved::FakeQuant(sz) => sz.iter().map(|&(s, z)| (s, 1.0 / s, z)).collect(),
        _ => channel_params(inputs, qmin, qmax),
    };
    let (lo, hi) = (qmin as f32, qmax as f32);
    let dx = need[0].then(|| {
        let mut d = vec![0.0f32; x.len()];
        for_channels(
            slice(x),
            slice(dy),
            &mut d,
            x.shape(),
            a.axis,
            |ch, xc, gc, dc| {
                let (s, inv, z) = p[ch];
                for ((o, &v), &g) in dc.iter_mut().zip(xc).zip(gc) {
                    let q = quantize_unclamped(v, inv, z);
                    // `&` (not `&&`): no branch, so the loop vectorizes.
                    *o = if (q >= lo) & (q <= hi) { g } else { 0.0 };
                }
                if a.damping != 0.0 {
                    let damp = 2.0 * a.damping;
                    for (o, &v) in dc.iter_mut().zip(xc) {
                        let q = quantize_unclamped(v, inv, z);
                        if (q >= lo) & (q <= hi) {
                            *o += damp * (v - fake_quant_value(v, s, inv, z, lo, hi));
                        }
                    }
                }
            },
        );
        from_vec(x.shape(), d)
    });
    let (want_s, want_z) = (need.get(1) == Some(&true), need.get(2) == Some(&true));
    let (mut ds, mut dz) = (None, None);
    if want_s || want_z {
        let (_, c, inner) = layout(x.shape(), a.axis);
        let inner = inner.max(1);
        let g = 1.0 / ((x.len() as f64) * f64::from(qmax.max(1))).sqrt();
        // Per piece (inside one channel) partial sums, in parallel, then added in piece order:
        // the result does not depend on the number of threads.
        let piece = if c == 1 { CHUNK } else { inner };
        let partial: Vec<(f64, f64)> = slice(x)
            .par_chunks(piece)
            .zip(slice(dy).par_chunks(piece))
            .enumerate()
            .map(|(i, (xc, dc))| {
                let (s, inv, z) = p[if c == 1 { 0 } else { i % c }];
                let (mut sum_s, mut sum_z) = (0.0f64, 0.0f64);
                for (&v, &d) in xc.iter().zip(dc) {
                    let q = quantize_unclamped(v, inv, z);
                    let (below, above) = (q < lo, q > hi);
                    let inside = (fake_quant_value(v, s, inv, z, lo, hi) - v) * inv;
                    let dsv = if below {
                        lo - z
                    } else if above {
                        hi - z
                    } else {
                        inside
                    };
                    let dzv = if below | above { -s } else { 0.0 };
                    sum_s += f64::from(d * dsv);
                    sum_z += f64::from(d * dzv);
                }
                (sum_s, sum_z)
            })
            .collect();
        let (mut gs, mut gz) = (vec![0.0f64; c], vec![0.0f64; c]);
        for (i, (a, b)) in partial.into_iter().enumerate() {
            let ch = if c == 1 { 0 } else { i % c };
            gs[ch] += a;
            gz[ch] += b;
        }
        let shape = |t: &Tensor| t.shape().to_vec();
        let pack = |v: Vec<f64>, like: &Tensor| {
            from_vec(
                &shape(like),
                v.into_iter().map(|e| (e * g) as f32).collect(),
            )
        };
        ds = want_s.then(|| pack(gs, inputs[1]));
        dz = want_z.then(|| pack(gz, inputs[2]));
    }
    let mut out = vec![dx, ds, dz];
    out.resize(inputs.len(), None);
    out
}
