//! A streaming histogram with a fixed number of bins that grows its range by merging bins, so
//! observing any amount of data takes the same memory and never stores the data itself.
//!
//! The bins are equal-width over `[lo, lo + bins·width)`. When new data falls outside, the width
//! doubles (as often as needed) and the start moves left by a whole number of old bins, so every
//! old bin lies inside exactly one new bin: counts move without interpolation and are preserved
//! exactly. Non-finite values are counted apart and never binned. Depends on nothing in the crate.

use rayon::prelude::*;

/// Below this many values a batch is binned on the calling thread.
const PAR_MIN: usize = 1 << 16;
/// Largest range growth done by exact bin merging (a factor of 2^40).
const MAX_DOUBLINGS: u32 = 40;

/// A fixed-bin histogram over a growing range.
#[derive(Clone, Debug, PartialEq)]
pub struct Histogram {
    lo: f64,
    width: f64,
    counts: Vec<u64>,
    /// Smallest and largest finite values seen.
    min: f32,
    max: f32,
    total: u64,
    non_finite: u64,
}

impl Histogram {
    /// An empty histogram with `bins` bins (at least 1).
    pub fn new(bins: usize) -> Self {
        Histogram {
            lo: 0.0,
            width: 0.0,
            counts: vec![0; bins.max(1)],
            min: f32::INFINITY,
            max: f32::NEG_INFINITY,
            total: 0,
            non_finite: 0,
        }
    }

    /// Number of bins.
    pub fn bins(&self) -> usize {
        self.counts.len()
    }

    /// Count per bin.
    pub fn counts(&self) -> &[u64] {
        &self.counts
    }

    /// Start of the first bin.
    pub fn lo(&self) -> f64 {
        self.lo
    }

    /// Width of one bin.
    pub fn width(&self) -> f64 {
        self.width
    }

    /// End of the last bin.
    pub fn hi(&self) -> f64 {
        self.lo + self.width * self.counts.len() as f64
    }

    /// Finite values binned so far.
    pub fn total(&self) -> u64 {
        self.total
    }

    /// NaN and infinite values seen (not binned).
    pub fn non_finite(&self) -> u64 {
        self.non_finite
    }

    /// Smallest and largest finite value seen, if any.
    pub fn min_max(&self) -> Option<(f32, f32)> {
        (self.total > 0).then_some((self.min, self.max))
    }

    /// Bytes held, which depends on the bin count only.
    pub fn memory_bytes(&self) -> usize {
        std::mem::size_of::<Self>() + self.counts.capacity() * std::mem::size_of::<u64>()
    }

    /// Adds values (in parallel for large slices; the counts do not depend on the split).
    pub fn observe(&mut self, xs: &[f32]) {
        let (mn, mx, bad) = if xs.len() >= PAR_MIN {
            xs.par_chunks(PAR_MIN)
                .map(min_max_bad)
                .reduce(|| (f32::INFINITY, f32::NEG_INFINITY, 0), merge_mm)
        } else {
            min_max_bad(xs)
        };
        self.non_finite += bad;
        if mn > mx {
            return;
        }
        self.cover(mn, mx);
        self.min = self.min.min(mn);
        self.max = self.max.max(mx);
        let (lo, inv, n) = (self.lo, 1.0 / self.width, self.counts.len());
        let bin = move |x: f32| (((x as f64 - lo) * inv) as usize).min(n - 1);
        let count = move |c: &[f32], h: &mut [u64]| {
            if bad == 0 {
                c.iter().for_each(|&x| h[bin(x)] += 1);
            } else {
                c.iter()
                    .filter(|x| x.is_finite())
                    .for_each(|&x| h[bin(x)] += 1);
            }
        };
        if xs.len() >= PAR_MIN {
            let part = xs
                .par_chunks(PAR_MIN)
                .map(|c| {
                    let mut h = vec![0u64; n];
                    count(c, &mut h);
                    h
                })
                .reduce(
                    || vec![0u64; n],
                    |mut a, b| {
                        a.iter_mut().zip(b).for_each(|(x, y)| *x += y);
                        a
                    },
                );
            self.counts.iter_mut().zip(part).for_each(|(x, y)| *x += y);
        } else {
            count(xs, &mut self.counts);
        }
        self.total += xs.len() as u64 - bad;
    }

    /// Grows the range (merging bins) until `[mn, mx]` fits.
    fn cover(&mut self, mn: f32, mx: f32) {
        let (mn, mx) = (mn as f64, mx as f64);
        let n = self.counts.len() as f64;
        if self.width == 0.0 {
            let span = mx - mn;
            let span = if span > 0.0 {
                span
            } else {
                (mn.abs() * 1e-6).max(1e-12)
            };
            self.lo = mn;
            // Slightly wider than the span so that the maximum falls inside the last bin.
            self.width = span / n * (1.0 + 1e-9);
            return;
        }
        if mn >= self.lo && mx < self.hi() {
            return;
        }
        let w = self.width;
        for k in 1..=MAX_DOUBLINGS {
            let factor = (1u64 << k) as f64;
            // Old bins to add on the left: just enough to reach mn.
            let j = if mn < self.lo {
                ((self.lo - mn) / w).ceil()
            } else {
                0.0
            };
            let new_lo = self.lo - j * w;
            if j <= n * (factor - 1.0) && new_lo + n * factor * w > mx {
                self.rebin(j as u64, k, new_lo, factor * w);
                return;
            }
        }
        // A jump of more than 2^40 in range (e.g. a first batch of zeros): re-bin by centres.
        let old = std::mem::replace(self, Histogram::new(self.counts.len()));
        let (lo, hi) = (mn.min(old.lo), mx.max(old.hi()));
        self.lo = lo;
        self.width = (hi - lo) / n * (1.0 + 1e-9);
        self.merge(&old);
    }

    /// Moves old bin `i` to new bin `(i + shift) >> k`.
    fn rebin(&mut self, shift: u64, k: u32, new_lo: f64, new_width: f64) {
        let n = self.counts.len();
        let mut out = vec![0u64; n];
        for (i, &c) in self.counts.iter().enumerate() {
            let t = ((i as u64 + shift) >> k) as usize;
            out[t.min(n - 1)] += c;
        }
        self.counts = out;
        self.lo = new_lo;
        self.width = new_width;
    }

    /// Adds another histogram's data (re-binning it by bin centres into this range).
    pub fn merge(&mut self, other: &Histogram) {
        let Some((mn, mx)) = other.min_max() else {
            return;
        };
        self.cover(mn, mx);
        self.min = self.min.min(mn);
        self.max = self.max.max(mx);
        let n = self.counts.len();
        for (i, &c) in other.counts.iter().enumerate() {
            let centre = other.lo + (i as f64 + 0.5) * other.width;
            let b = (((centre - self.lo) / self.width).max(0.0) as usize).min(n - 1);
            self.counts[b] += c;
        }
        self.total += other.total;
        self.non_finite += other.non_finite;
    }

    /// The same data in `bins` bins over the same range (for drawing); counts are summed.
    pub fn downsample(&self, bins: usize) -> (f64, f64, Vec<u64>) {
        let bins = bins.clamp(1, self.counts.len());
        let mut out = vec![0u64; bins];
        let n = self.counts.len();
        for (i, &c) in self.counts.iter().enumerate() {
            out[i * bins / n] += c;
        }
        (self.lo, self.hi(), out)
    }
}

/// Minimum, maximum and number of non-finite values; written as selects so that it vectorizes
/// (comparisons with NaN are false, so NaN is never selected).
fn min_max_bad(xs: &[f32]) -> (f32, f32, u64) {
    let (mut mn, mut mx, mut bad) = (f32::INFINITY, f32::NEG_INFINITY, 0u64);
    for &x in xs {
        bad += u64::from(!x.is_finite());
        mn = if x < mn { x } else { mn };
        mx = if x > mx { x } else { mx };
    }
    if bad > 0 {
        // Infinities may have been selected; recompute over the finite values only.
        (mn, mx) = xs
            .iter()
            .filter(|x| x.is_finite())
            .fold((f32::INFINITY, f32::NEG_INFINITY), |(a, b), &x| {
                (a.min(x), b.max(x))
            });
    }
    (mn, mx, bad)
}

fn merge_mm(a: (f32, f32, u64), b: (f32, f32, u64)) -> (f32, f32, u64) {
    (a.0.min(b.0), a.1.max(b.1), a.2 + b.2)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn growth_preserves_counts_and_covers_the_data() {
        let mut h = Histogram::new(16);
        h.observe(&[0.0, 1.0, 2.0, 3.0]);
        assert_eq!(h.total(), 4);
        assert_eq!(h.counts()[0], 1);
        assert_eq!(h.counts()[15], 1);
        let before: Vec<u64> = h.counts().to_vec();
        h.observe(&[-5.0, 10.0, f32::NAN]);
        assert_eq!(h.total(), 6);
        assert_eq!(h.non_finite(), 1);
        assert_eq!(h.counts().iter().sum::<u64>(), 6);
        assert!(h.lo() <= -5.0 && h.hi() > 10.0, "{} {}", h.lo(), h.hi());
        // The old data (in [0, 3]) is still counted in the bins that now cover [0, 3].
        let in_old: u64 = h
            .counts()
            .iter()
            .enumerate()
            .filter(|(i, _)| {
                let a = h.lo() + *i as f64 * h.width();
                a + h.width() > 0.0 && a <= 3.0
            })
            .map(|(_, c)| c)
            .sum();
        assert_eq!(in_old, before.iter().sum::<u64>());
        assert_eq!(h.min_max(), Some((-5.0, 10.0)));
    }

    #[test]
    fn each_value_lands_in_the_bin_that_contains_it() {
        let mut h = Histogram::new(64);
        h.observe(&[0.0, 64.0]);
        for round in 1..5 {
            let xs: Vec<f32> = (0..1000)
                .map(|i| (i as f32) * 0.37 * round as f32 - 100.0)
                .collect();
            h.observe(&xs);
        }
        let mut check = Histogram::new(64);
        check.lo = h.lo;
        check.width = h.width;
        check.min = h.min;
        check.max = h.max;
        let mut all = vec![0.0f32, 64.0];
        for round in 1..5 {
            all.extend((0..1000).map(|i| (i as f32) * 0.37 * round as f32 - 100.0));
        }
        check.observe(&all);
        assert_eq!(h.counts(), check.counts());
    }

    #[test]
    fn memory_does_not_grow_with_data() {
        let mut h = Histogram::new(2048);
        h.observe(&[1.0]);
        let m0 = h.memory_bytes();
        let xs: Vec<f32> = (0..200_000).map(|i| (i as f32).sin() * i as f32).collect();
        for _ in 0..20 {
            h.observe(&xs);
        }
        assert_eq!(h.memory_bytes(), m0);
        assert_eq!(h.total(), 1 + 20 * 200_000);
        assert_eq!(h.counts().iter().sum::<u64>(), h.total());
    }

    #[test]
    fn parallel_and_serial_binning_agree() {
        let xs: Vec<f32> = (0..(PAR_MIN * 3 + 11))
            .map(|i| ((i * 7919) % 10007) as f32)
            .collect();
        let mut a = Histogram::new(100);
        a.observe(&xs);
        let mut b = Histogram::new(100);
        b.cover(0.0, 10006.0);
        for c in xs.chunks(1000) {
            b.observe(c);
        }
        assert_eq!(a.counts(), b.counts());
    }
}
