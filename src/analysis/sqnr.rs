//! Signal-to-quantization-noise ratio and clipped-fraction accumulators, fed batch by batch.
//! Depends on `quant::scheme` only.

use crate::quant::scheme::{QSpec, is_clipped};

/// Accumulates `Σ f²` and `Σ (f − q)²` over pairs of float and quantized values.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Sqnr {
    pub signal: f64,
    pub noise: f64,
}

impl Sqnr {
    /// Adds one tensor pair (same length).
    pub fn add(&mut self, float: &[f32], quant: &[f32]) {
        for (&f, &q) in float.iter().zip(quant) {
            let (f, q) = (f64::from(f), f64::from(q));
            self.signal += f * f;
            self.noise += (f - q) * (f - q);
        }
    }

    /// `10·log10(signal / noise)` in dB; infinite when there is no noise, `None` when there was
    /// neither signal nor noise.
    pub fn db(&self) -> Option<f64> {
        match (self.signal > 0.0, self.noise > 0.0) {
            (_, true) => Some(10.0 * (self.signal / self.noise).log10()),
            (true, false) => Some(f64::INFINITY),
            (false, false) => None,
        }
    }
}

/// Counts values a grid clips.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Clipped {
    pub clipped: u64,
    pub total: u64,
}

impl Clipped {
    /// Counts the values of `xs` outside the grid of channel `scale`/`zp` (per tensor).
    pub fn add(&mut self, xs: &[f32], scale: f32, zp: i32, spec: QSpec) {
        self.clipped += xs
            .iter()
            .filter(|&&x| is_clipped(x, scale, zp, spec))
            .count() as u64;
        self.total += xs.len() as u64;
    }

    /// Fraction clipped, `None` before any value.
    pub fn fraction(&self) -> Option<f64> {
        (self.total > 0).then(|| self.clipped as f64 / self.total as f64)
    }
}

/// JSON-friendly dB: infinities become `None` (JSON has no infinity).
pub fn finite_db(db: Option<f64>) -> Option<f64> {
    db.filter(|d| d.is_finite())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::quant::scheme::{QDtype, Scheme};

    #[test]
    fn sqnr_by_hand() {
        let mut s = Sqnr::default();
        // signal 3² + 4² = 25, noise 0.5² = 0.25: 10·log10(100) = 20 dB.
        s.add(&[3.0, 4.0], &[3.0, 4.5]);
        assert!((s.db().unwrap() - 20.0).abs() < 1e-12);
        let mut z = Sqnr::default();
        z.add(&[1.0], &[1.0]);
        assert_eq!(z.db(), Some(f64::INFINITY));
        assert_eq!(Sqnr::default().db(), None);
    }

    #[test]
    fn clipped_fraction_by_hand() {
        let spec = QSpec {
            dtype: QDtype::U4,
            scheme: Scheme::Affine,
        };
        let mut c = Clipped::default();
        // Scale 1, zp 0: grid 0..15; -0.6 rounds to -1 (clipped), -0.4 to 0, 15.6 to 16.
        c.add(&[-0.6, -0.4, 3.0, 15.6], 1.0, 0, spec);
        assert_eq!(c.fraction(), Some(0.5));
    }
}
