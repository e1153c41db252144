//! Range what-if on a histogram: what a quantization range does to the observed data while the
//! user drags its clip bounds in the studio (grid, clipped fraction, SQNR), and the range each
//! observer kind would pick from the same histogram, to draw as markers.
//!
//! Everything is computed from the histogram alone, treating the values in each bin as spread
//! uniformly (the assumption `range_search::expected_error` integrates exactly): no data pass,
//! cheap enough for every frame of a drag. Depends on `quant::{histogram, range_search, scheme}`
//! and `analysis::sqnr`.

use super::sqnr::{Sqnr, finite_db};
use crate::quant::histogram::Histogram;
use crate::quant::range_search::{entropy_range, expected_error, mse_range, percentile_range};
use crate::quant::scheme::{QSpec, grid_range, qparams};
use serde::Serialize;

/// The percentile the percentile marker uses (the studio's default percentile observer).
pub const MARKER_PERCENTILE: f64 = 99.99;

/// What a range does to a histogram's data.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct RangeStats {
    /// The range asked for (ordered; non-finite bounds replaced by the data's).
    pub min: f32,
    pub max: f32,
    /// Grid parameters for it (`quant::scheme::qparams`: the range is widened to include 0).
    pub scale: f32,
    pub zero_point: i32,
    /// What the grid covers, `[dequant(qmin), dequant(qmax)]`.
    pub grid: (f32, f32),
    /// Fraction of the observed values the grid clips (their rounded integer falls outside it).
    pub clipped_fraction: f64,
    /// Signal power over expected squared quantization error, in dB (`None` without data or
    /// noise).
    pub sqnr_db: Option<f64>,
}

/// Mass of bin `[a, a + w)` (count `c`, spread uniformly) below `t`.
fn mass_below(a: f64, w: f64, c: f64, t: f64) -> f64 {
    c * ((t - a) / w).clamp(0.0, 1.0)
}

/// The grid of `[min, max]` on `spec` laid over `h`: scale and zero point, the fraction of values
/// it clips and the SQNR it leaves, from the histogram alone.
///
/// ```
/// use qatlas::analysis::clip::range_stats;
/// use qatlas::quant::histogram::Histogram;
/// use qatlas::quant::scheme::{QDtype, QSpec, Scheme};
/// let mut h = Histogram::new(100);
/// h.observe(&(0..1000).map(|i| i as f32 / 100.0).collect::<Vec<_>>()); // 0 ..= 9.99
/// let u8a = QSpec { dtype: QDtype::U8, scheme: Scheme::Affine };
/// let r = range_stats(&h, 0.0, 5.0, u8a);
/// assert!((r.clipped_fraction - 0.5).abs() < 0.01);
/// ```
pub fn range_stats(h: &Histogram, min: f32, max: f32, spec: QSpec) -> RangeStats {
    let data = h.min_max().unwrap_or((0.0, 0.0));
    let (min, max) = (
        if min.is_finite() { min } else { data.0 },
        if max.is_finite() { max } else { data.1 },
    );
    let (min, max) = (min.min(max), max.max(min));
    let (scale, zero_point) = qparams(min, max, spec);
    let (qmin, qmax) = spec.range();
    let s = f64::from(scale);
    // A value is clipped when x/s + zp rounds outside [qmin, qmax].
    let lo_t = (f64::from(qmin - zero_point) - 0.5) * s;
    let hi_t = (f64::from(qmax - zero_point) + 0.5) * s;
    let w = h.width();
    let (mut clipped, mut signal) = (0.0f64, 0.0f64);
    if w > 0.0 {
        for (i, &c) in h.counts().iter().enumerate() {
            if c == 0 {
                continue;
            }
            let (a, c) = (h.lo() + i as f64 * w, c as f64);
            clipped += mass_below(a, w, c, lo_t) + (c - mass_below(a, w, c, hi_t));
            // Mean of x² over the bin: centre² + w²/12.
            let centre = a + w / 2.0;
            signal += c * (centre * centre + w * w / 12.0);
        }
    }
    let total = h.total() as f64;
    let sq = Sqnr {
        signal,
        noise: expected_error(h, scale, zero_point, spec),
    };
    RangeStats {
        min,
        max,
        scale,
        zero_point,
        grid: grid_range(scale, zero_point, spec),
        clipped_fraction: if total > 0.0 { clipped / total } else { 0.0 },
        sqnr_db: if total > 0.0 {
            finite_db(sq.db())
        } else {
            None
        },
    }
}

/// The range each observer kind would pick from this histogram: `("min-max", ..)`,
/// `("percentile 99.99", ..)`, `("MSE", ..)`, `("entropy", ..)` (none for an empty histogram).
/// Moving-average min-max has no histogram counterpart and is not listed.
pub fn observer_ranges(h: &Histogram, spec: QSpec) -> Vec<(String, (f32, f32))> {
    [
        ("min-max".to_string(), h.min_max()),
        (
            format!("percentile {MARKER_PERCENTILE}"),
            percentile_range(h, MARKER_PERCENTILE),
        ),
        ("MSE".to_string(), mse_range(h, spec)),
        ("entropy".to_string(), entropy_range(h, spec)),
    ]
    .into_iter()
    .filter_map(|(name, r)| r.map(|r| (name, r)))
    .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::quant::scheme::{QDtype, Scheme, fake_quantize, is_clipped};
    use rand::{Rng, SeedableRng};
    use rand_chacha::ChaCha8Rng;

    const U8A: QSpec = QSpec {
        dtype: QDtype::U8,
        scheme: Scheme::Affine,
    };
    const S4S: QSpec = QSpec {
        dtype: QDtype::S4,
        scheme: Scheme::Symmetric,
    };

    /// Skewed data: a normal(0.5, 1) body (Box-Muller) and a few outliers up to 12.
    fn data() -> Vec<f32> {
        let mut rng = ChaCha8Rng::seed_from_u64(5);
        let mut xs: Vec<f32> = (0..200_000)
            .map(|_| {
                let (u, v): (f64, f64) = (rng.random_range(1e-12..1.0), rng.random());
                ((-2.0 * u.ln()).sqrt() * (std::f64::consts::TAU * v).cos() + 0.5) as f32
            })
            .collect();
        xs.extend((0..20).map(|i| 6.0 + i as f32 * 0.3));
        xs
    }

    /// Exact clipped fraction and SQNR of the raw values under the grid `r` chose.
    fn exact(xs: &[f32], r: &RangeStats, spec: QSpec) -> (f64, f64) {
        let (s, z) = (r.scale, r.zero_point);
        let clipped = xs.iter().filter(|&&x| is_clipped(x, s, z, spec)).count();
        let mut sq = Sqnr::default();
        let q: Vec<f32> = xs.iter().map(|&x| fake_quantize(x, s, z, spec)).collect();
        sq.add(xs, &q);
        (clipped as f64 / xs.len() as f64, sq.db().unwrap())
    }

    /// Against the raw data: the clipped fraction within one bin's share of the data, the SQNR
    /// within 0.5 dB, for loose and tight ranges on int8 and int4 grids.
    #[test]
    fn histogram_estimates_match_the_raw_data() {
        let xs = data();
        let mut h = Histogram::new(2048);
        h.observe(&xs);
        let bin_share = *h.counts().iter().max().unwrap() as f64 / h.total() as f64;
        for (lo, hi, spec) in [
            (-4.0, 12.0, U8A),
            (-1.5, 2.0, U8A),
            (0.0, 0.7, U8A),
            (-3.0, 3.0, S4S),
            (-1.0, 1.0, S4S),
        ] {
            let r = range_stats(&h, lo, hi, spec);
            assert_eq!((r.scale, r.zero_point), qparams(lo, hi, spec));
            let (clip, db) = exact(&xs, &r, spec);
            assert!(
                (r.clipped_fraction - clip).abs() <= bin_share,
                "[{lo}, {hi}] {spec:?}: clipped {} vs {clip}",
                r.clipped_fraction
            );
            let est = r.sqnr_db.unwrap();
            assert!(
                (est - db).abs() < 0.5,
                "[{lo}, {hi}] {spec:?}: {est} dB vs {db} dB"
            );
        }
        // The tight int8 range clips about a third of a normal(0.5, 1) below 0 and a third above
        // 0.7 (Φ(-0.5) = 0.309, 1 - Φ(0.2) = 0.421).
        let r = range_stats(&h, 0.0, 0.7, U8A);
        assert!(
            (r.clipped_fraction - 0.73).abs() < 0.01,
            "{}",
            r.clipped_fraction
        );
        // Bounds are ordered; non-finite ones fall back to the data's.
        let swapped = range_stats(&h, 2.0, -1.5, U8A);
        assert_eq!((swapped.min, swapped.max), (-1.5, 2.0));
        let open = range_stats(&h, f32::NEG_INFINITY, f32::NAN, U8A);
        assert_eq!((open.min, open.max), h.min_max().unwrap());
        assert!(open.clipped_fraction < 1e-6);
        let empty = range_stats(&Histogram::new(16), 0.0, 1.0, U8A);
        assert_eq!((empty.clipped_fraction, empty.sqnr_db), (0.0, None));
    }

    /// The markers are the observers' own choices.
    #[test]
    fn observer_markers_are_the_observers_ranges() {
        let xs = data();
        let mut h = Histogram::new(2048);
        h.observe(&xs);
        let m = observer_ranges(&h, U8A);
        let names: Vec<&str> = m.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(names, ["min-max", "percentile 99.99", "MSE", "entropy"]);
        let (mn, mx) = xs
            .iter()
            .fold((f32::INFINITY, f32::NEG_INFINITY), |(a, b), &x| {
                (a.min(x), b.max(x))
            });
        assert_eq!(m[0].1, (mn, mx));
        assert_eq!(m[1].1, percentile_range(&h, 99.99).unwrap());
        assert_eq!(m[2].1, mse_range(&h, U8A).unwrap());
        assert_eq!(m[3].1, entropy_range(&h, U8A).unwrap());
        // MSE minimises the very error range_stats reports, over candidates that include the
        // min-max range: it can only do better.
        let db = |r: (f32, f32)| range_stats(&h, r.0, r.1, U8A).sqnr_db.unwrap();
        assert!(db(m[2].1) >= db(m[0].1), "{} vs {}", db(m[2].1), db(m[0].1));
        assert!(observer_ranges(&Histogram::new(16), U8A).is_empty());
    }
}
