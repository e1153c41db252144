//! Choosing a quantization range from a [`Histogram`]: percentile clipping, the range that
//! minimises the expected squared quantization error (MSE), and entropy (KL-divergence)
//! calibration in the style of TensorRT.
//!
//! The MSE of a candidate is computed on the actual grid that [`qparams`] produces for it
//! (zero point rounding and zero inclusion included), treating the values in each bin as
//! uniformly spread: rounding error inside the grid is integrated exactly per bin, clipping
//! error outside it too. Depends on `quant::histogram` and `quant::scheme`.

use super::histogram::Histogram;
use super::scheme::{QSpec, Scheme, qparams};

/// Candidate thresholds tried per side by the MSE search.
const MSE_CANDIDATES: usize = 200;

/// The range between the `(100 - p)`-th and `p`-th percentiles (linear inside a bin), within
/// the observed data range. `p` in (0, 100].
pub fn percentile_range(h: &Histogram, p: f64) -> Option<(f32, f32)> {
    let (dmin, dmax) = h.min_max()?;
    if p >= 100.0 {
        return Some((dmin, dmax));
    }
    let q = |frac: f64| -> f64 {
        let target = frac * h.total() as f64;
        let mut acc = 0.0;
        for (i, &c) in h.counts().iter().enumerate() {
            let c = c as f64;
            if c > 0.0 && acc + c >= target {
                let within = ((target - acc) / c).clamp(0.0, 1.0);
                return h.lo() + (i as f64 + within) * h.width();
            }
            acc += c;
        }
        h.hi()
    };
    let lo = (q(1.0 - p / 100.0) as f32).clamp(dmin, dmax);
    let hi = (q(p / 100.0) as f32).clamp(dmin, dmax);
    Some((lo.min(hi), hi.max(lo)))
}

/// `∫_{-1/2}^{t} (u - round(u))² du`, the rounding error of a unit grid accumulated up to `t`.
fn unit_rounding_integral(t: f64) -> f64 {
    let k = (t + 0.5).floor();
    let f = t - k;
    k / 12.0 + (f * f * f + 0.125) / 3.0
}

/// Expected squared error (summed over all observed values) of quantizing the histogram's data
/// with `(scale, zp)` on `spec`'s grid.
pub fn expected_error(h: &Histogram, scale: f32, zp: i32, spec: QSpec) -> f64 {
    let (qmin, qmax) = spec.range();
    let s = scale as f64;
    let lq = (qmin - zp) as f64 * s;
    let hq = (qmax - zp) as f64 * s;
    let w = h.width();
    if w <= 0.0 {
        return 0.0;
    }
    let cube = |x: f64| x * x * x;
    let mut err = 0.0;
    for (i, &c) in h.counts().iter().enumerate() {
        if c == 0 {
            continue;
        }
        let a = h.lo() + i as f64 * w;
        let b = a + w;
        let mut e = 0.0;
        if a < lq {
            e += (cube(b.min(lq) - lq) - cube(a - lq)) / 3.0;
        }
        if b > hq {
            e += (cube(b - hq) - cube(a.max(hq) - hq)) / 3.0;
        }
        let (ma, mb) = (a.max(lq), b.min(hq));
        if mb > ma {
            let t = |x: f64| unit_rounding_integral((x - lq) / s);
            e += s * s * s * (t(mb) - t(ma));
        }
        err += c as f64 * e / w;
    }
    err
}

/// The range minimising [`expected_error`]: a search over the clipping threshold (symmetric
/// schemes) or alternating searches over the upper and lower ends (affine).
pub fn mse_range(h: &Histogram, spec: QSpec) -> Option<(f32, f32)> {
    let (dmin, dmax) = h.min_max()?;
    let cost = |mn: f32, mx: f32| {
        let (s, z) = qparams(mn, mx, spec);
        expected_error(h, s, z, spec)
    };
    let fractions = |end: f32| -> Vec<f32> {
        (1..=MSE_CANDIDATES)
            .map(|k| end * k as f32 / MSE_CANDIDATES as f32)
            .collect()
    };
    match spec.scheme {
        Scheme::Symmetric => {
            let amax = dmin.abs().max(dmax.abs());
            let best = fractions(amax)
                .into_iter()
                .map(|t| (cost(-t, t), t))
                .min_by(|a, b| a.0.total_cmp(&b.0))?;
            Some(((-best.1).max(dmin), best.1.min(dmax)))
        }
        Scheme::Affine => {
            let (mut mn, mut mx) = (dmin.min(0.0), dmax.max(0.0));
            for round in 0..3 {
                if round % 2 == 0 && mx > 0.0 {
                    mx = fractions(dmax)
                        .into_iter()
                        .map(|t| (cost(mn, t), t))
                        .min_by(|a, b| a.0.total_cmp(&b.0))?
                        .1;
                } else if round % 2 == 1 && mn < 0.0 {
                    mn = fractions(dmin)
                        .into_iter()
                        .map(|t| (cost(t, mx), t))
                        .min_by(|a, b| a.0.total_cmp(&b.0))?
                        .1;
                }
            }
            Some((mn.max(dmin).min(mx), mx.min(dmax).max(mn)))
        }
    }
}

/// Entropy calibration: the clipping threshold whose quantized distribution is closest (in KL
/// divergence) to the observed one, in the style of TensorRT. Symmetric schemes search a
/// threshold `t` for `[-t, t]` on a histogram of absolute values with half the grid's levels;
/// affine schemes keep the observed minimum and search the upper end with all the levels.
pub fn entropy_range(h: &Histogram, spec: QSpec) -> Option<(f32, f32)> {
    let (dmin, dmax) = h.min_max()?;
    let n = h.bins();
    let (qmin, qmax) = spec.range();
    let full = (qmax - qmin + 1) as usize;
    match spec.scheme {
        Scheme::Affine => {
            let counts: Vec<f64> = h.counts().iter().map(|&c| c as f64).collect();
            let bins = kl_threshold_bins(&counts, full.max(2));
            let t = (h.lo() + bins as f64 * h.width()) as f32;
            Some((dmin, t.clamp(dmin, dmax)))
        }
        Scheme::Symmetric => {
            let amax = (dmin.abs().max(dmax.abs())) as f64;
            if amax == 0.0 {
                return Some((dmin, dmax));
            }
            let mut abs = vec![0.0f64; n];
            for (i, &c) in h.counts().iter().enumerate() {
                let centre = (h.lo() + (i as f64 + 0.5) * h.width()).abs();
                abs[((centre / amax * n as f64) as usize).min(n - 1)] += c as f64;
            }
            let bins = kl_threshold_bins(&abs, (full / 2).max(2));
            let t = (bins as f64 / n as f64 * amax) as f32;
            Some(((-t).max(dmin), t.min(dmax)))
        }
    }
}

/// Number of leading bins to keep (the threshold) minimising KL(P || Q). The first bin's count
/// is replaced by the second's, as NVIDIA's pytorch-quantization does: a spike there (ReLU
/// zeros, an image background) would otherwise dominate the divergence and favour the smallest
/// threshold.
fn kl_threshold_bins(hist: &[f64], levels: usize) -> usize {
    let n = hist.len();
    if n <= levels {
        return n;
    }
    let mut hist = hist.to_vec();
    hist[0] = hist[1];
    let mut suffix = vec![0.0f64; n + 1];
    for i in (0..n).rev() {
        suffix[i] = suffix[i + 1] + hist[i];
    }
    let (mut best, mut best_i) = (f64::INFINITY, n);
    let mut p = vec![0.0f64; n];
    let mut q = vec![0.0f64; n];
    for i in levels..=n {
        p[..i].copy_from_slice(&hist[..i]);
        p[i - 1] += suffix[i];
        for j in 0..levels {
            let (a, b) = (j * i / levels, (j + 1) * i / levels);
            let sum: f64 = hist[a..b].iter().sum();
            let nonzero = p[a..b].iter().filter(|&&v| v > 0.0).count();
            for k in a..b {
                q[k] = if p[k] > 0.0 && nonzero > 0 {
                    sum / nonzero as f64
                } else {
                    0.0
                };
            }
        }
        let (ps, qs): (f64, f64) = (p[..i].iter().sum(), q[..i].iter().sum());
        if ps <= 0.0 || qs <= 0.0 {
            continue;
        }
        let mut kl = 0.0;
        for k in 0..i {
            if p[k] > 0.0 {
                let pk = p[k] / ps;
                let qk = (q[k] / qs).max(1e-12);
                kl += pk * (pk / qk).ln();
            }
        }
        if kl < best {
            best = kl;
            best_i = i;
        }
    }
    best_i
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::quant::scheme::QDtype;

    const U8A: QSpec = QSpec {
        dtype: QDtype::U8,
        scheme: Scheme::Affine,
    };

    fn uniform(n: usize, lo: f32, hi: f32) -> Histogram {
        let mut h = Histogram::new(1000);
        let xs: Vec<f32> = (0..n)
            .map(|i| lo + (hi - lo) * (i as f32 + 0.5) / n as f32)
            .collect();
        h.observe(&xs);
        h
    }

    #[test]
    fn percentiles_of_a_uniform_distribution() {
        let h = uniform(100_000, 0.0, 10.0);
        let (lo, hi) = percentile_range(&h, 99.0).unwrap();
        assert!((hi - 9.9).abs() < 0.02, "{hi}");
        assert!((lo - 0.1).abs() < 0.02, "{lo}");
        assert_eq!(percentile_range(&h, 100.0).unwrap(), h.min_max().unwrap());
    }

    /// Uniform data on [0, 2.55] with scale 0.01: the rounding error is s²/12 per value.
    #[test]
    fn expected_error_of_uniform_rounding_is_s2_over_12() {
        let h = uniform(1_000_000, 0.0, 2.55);
        let e = expected_error(&h, 0.01, 0, U8A) / h.total() as f64;
        assert!((e / (1e-4 / 12.0) - 1.0).abs() < 0.02, "{e}");
        // Clipping at 1.275 (scale 0.005): half the values clipped, mean error of a linear
        // ramp from 0 to 1.275 squared: 1.275² / 3 / 2 (half the mass), plus rounding.
        let e = expected_error(&h, 0.005, 0, U8A) / h.total() as f64;
        let want = 1.275f64.powi(2) / 3.0 / 2.0 + 0.5 * 0.005f64.powi(2) / 12.0;
        assert!((e / want - 1.0).abs() < 0.02, "{e} vs {want}");
    }

    /// Uniform data keeps (nearly) its whole range. With one outlier at 100 above N values in
    /// [0, 1], the total error (100 - t)² + N·(t/255)²/12 is smallest near
    /// t = 100 / (1 + N / (255²·12)): 43.8 for N = 10⁶. The chosen range must do at least as
    /// well as that, measured exactly on the data itself.
    #[test]
    fn mse_range_balances_clipping_against_rounding() {
        let h = uniform(100_000, 0.0, 1.0);
        let (_, hi) = mse_range(&h, U8A).unwrap();
        assert!(hi > 0.98, "{hi}");
        let n = 1_000_000;
        let mut data: Vec<f32> = (0..n).map(|i| (i as f32 + 0.5) / n as f32).collect();
        data.push(100.0);
        let mut h = Histogram::new(1000);
        h.observe(&data);
        let exact = |t: f32| -> f64 {
            let (s, z) = qparams(0.0, t, U8A);
            data.iter()
                .map(|&x| {
                    (f64::from(x) - f64::from(crate::quant::scheme::fake_quantize(x, s, z, U8A)))
                        .powi(2)
                })
                .sum()
        };
        let (lo, hi) = mse_range(&h, U8A).unwrap();
        assert!(lo < 1e-6, "{lo}");
        let t_star = 100.0 / (1.0 + n as f32 / (255.0f32 * 255.0 * 12.0));
        assert!(
            exact(hi) <= exact(t_star) * 1.01,
            "{hi}: {} vs {t_star}: {}",
            exact(hi),
            exact(t_star)
        );
        assert!(hi > 30.0 && hi < 60.0, "{hi}");
    }

    /// The histogram's error estimate agrees with the exact error of the data.
    #[test]
    fn expected_error_matches_exact_error() {
        let data: Vec<f32> = (0..200_000)
            .map(|i| ((i as f32) * 0.618).fract() * 3.0 - 1.0)
            .collect();
        let mut h = Histogram::new(2048);
        h.observe(&data);
        for (lo, hi) in [(-1.0, 2.0), (-0.5, 1.0), (0.0, 0.3)] {
            let (s, z) = qparams(lo, hi, U8A);
            let exact: f64 = data
                .iter()
                .map(|&x| {
                    (f64::from(x) - f64::from(crate::quant::scheme::fake_quantize(x, s, z, U8A)))
                        .powi(2)
                })
                .sum();
            let est = expected_error(&h, s, z, U8A);
            assert!(
                (est / exact - 1.0).abs() < 0.03,
                "[{lo}, {hi}]: {est} vs {exact}"
            );
        }
    }

    #[test]
    fn entropy_range_clips_a_long_tail() {
        let mut h = Histogram::new(2048);
        // Exponential-ish data: most mass near 0, a long thin tail to 50.
        let xs: Vec<f32> = (1..200_000)
            .map(|i| -(1.0 - i as f32 / 200_000.0).ln())
            .collect();
        h.observe(&xs);
        h.observe(&[50.0]);
        let (lo, hi) = entropy_range(&h, U8A).unwrap();
        assert!(lo >= 0.0);
        assert!(hi > 2.0 && hi < 50.0, "{hi}");
    }
}
