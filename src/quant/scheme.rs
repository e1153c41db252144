//! Quantization grids and their parameters: integer types, symmetric/affine schemes, the scale
//! and zero point computed from a range exactly as PyTorch's `ObserverBase._calculate_qparams`,
//! and scalar quantize/dequantize with the crate's one rounding mode (round half to even, the
//! formula lives in `ops::fake_quant` so the op and these functions cannot disagree).
//!
//! Depends on `ops::fake_quant` only.

use crate::ops::fake_quant::{fake_quant_value, qparams_for_range, quantize_unclamped};
use serde::{Deserialize, Serialize};

/// An integer storage type and its range.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum QDtype {
    /// -128..=127
    S8,
    /// 0..=255
    U8,
    /// -8..=7
    S4,
    /// 0..=15
    U4,
}

impl QDtype {
    /// `(qmin, qmax)`.
    pub fn range(self) -> (i32, i32) {
        match self {
            QDtype::S8 => (-128, 127),
            QDtype::U8 => (0, 255),
            QDtype::S4 => (-8, 7),
            QDtype::U4 => (0, 15),
        }
    }

    /// Number of bits.
    pub fn bits(self) -> u32 {
        match self {
            QDtype::S8 | QDtype::U8 => 8,
            QDtype::S4 | QDtype::U4 => 4,
        }
    }

    /// Whether the type is signed.
    pub fn signed(self) -> bool {
        matches!(self, QDtype::S8 | QDtype::S4)
    }

    /// Short name ("s8", "u4", ...).
    pub fn name(self) -> &'static str {
        match self {
            QDtype::S8 => "s8",
            QDtype::U8 => "u8",
            QDtype::S4 => "s4",
            QDtype::U4 => "u4",
        }
    }
}

/// How the range maps onto the grid.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Scheme {
    /// Range symmetric around zero: `scale = max(|min|, |max|) / ((qmax - qmin) / 2)`, zero point
    /// 0 for signed types (128 for u8, the rounded-down midpoint for u4).
    Symmetric,
    /// The range `[min(min, 0), max(max, 0)]` spread over the whole grid with a zero point.
    Affine,
}

/// A complete integer quantizer: type plus scheme.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct QSpec {
    pub dtype: QDtype,
    pub scheme: Scheme,
}

impl QSpec {
    /// `(qmin, qmax)` of the type.
    pub fn range(&self) -> (i32, i32) {
        self.dtype.range()
    }

    /// The fixed zero point of a symmetric grid (`None` when affine): 0 for signed types, the
    /// middle of the range for unsigned ones (128 for u8), as PyTorch.
    pub fn symmetric_zero_point(&self) -> Option<i32> {
        match self.scheme {
            Scheme::Affine => None,
            Scheme::Symmetric => Some(match self.dtype {
                QDtype::U8 => 128,
                QDtype::U4 => {
                    let (lo, hi) = self.range();
                    (lo + hi) / 2
                }
                QDtype::S8 | QDtype::S4 => 0,
            }),
        }
    }
}

/// What a quantization point snaps values to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum PointGrid {
    /// An integer grid with a scale and zero point.
    Int(QSpec),
    /// IEEE half precision.
    Fp16,
}

impl PointGrid {
    /// Short name ("u8 affine", "s4 symmetric", "fp16").
    pub fn describe(&self) -> String {
        match self {
            PointGrid::Int(s) => format!(
                "{} {}",
                s.dtype.name(),
                match s.scheme {
                    Scheme::Symmetric => "symmetric",
                    Scheme::Affine => "affine",
                }
            ),
            PointGrid::Fp16 => "fp16".into(),
        }
    }
}

pub use crate::ops::fake_quant::SCALE_EPS;

/// Scale and zero point for an observed range, computed in f32 exactly like PyTorch's
/// `_calculate_qparams` (`torch.round` is half to even). The range is first widened to include 0
/// so that zero is exactly representable.
///
/// ```
/// use qatlas::quant::scheme::{qparams, QDtype, QSpec, Scheme};
/// let u8a = QSpec { dtype: QDtype::U8, scheme: Scheme::Affine };
/// assert_eq!(qparams(-1.0, 3.0, u8a), (4.0 / 255.0, 64));
/// ```
pub fn qparams(min: f32, max: f32, spec: QSpec) -> (f32, i32) {
    let (qmin, qmax) = spec.range();
    qparams_for_range(min, max, qmin, qmax, spec.symmetric_zero_point())
}

/// The integer a value quantizes to: `clamp(round_half_even(x · (1/scale)) + zp, qmin, qmax)`.
pub fn quantize(x: f32, scale: f32, zp: i32, spec: QSpec) -> i32 {
    let (qmin, qmax) = spec.range();
    let q = quantize_unclamped(x, 1.0 / scale, zp as f32);
    q.clamp(qmin as f32, qmax as f32) as i32
}

/// The value an integer stands for: `(q - zp) · scale`.
pub fn dequantize(q: i32, scale: f32, zp: i32) -> f32 {
    (q - zp) as f32 * scale
}

/// Quantize then dequantize (the fake-quant op's arithmetic, for one value).
pub fn fake_quantize(x: f32, scale: f32, zp: i32, spec: QSpec) -> f32 {
    let (qmin, qmax) = spec.range();
    fake_quant_value(x, scale, 1.0 / scale, zp as f32, qmin as f32, qmax as f32)
}

/// The float range a grid covers: `[dequant(qmin), dequant(qmax)]`.
pub fn grid_range(scale: f32, zp: i32, spec: QSpec) -> (f32, f32) {
    let (qmin, qmax) = spec.range();
    (dequantize(qmin, scale, zp), dequantize(qmax, scale, zp))
}

/// Whether a value is clipped by the grid (its unclamped rounded integer lies outside).
pub fn is_clipped(x: f32, scale: f32, zp: i32, spec: QSpec) -> bool {
    let (qmin, qmax) = spec.range();
    let q = quantize_unclamped(x, 1.0 / scale, zp as f32);
    q < qmin as f32 || q > qmax as f32
}

#[cfg(test)]
mod tests {
    use super::*;

    const U8A: QSpec = QSpec {
        dtype: QDtype::U8,
        scheme: Scheme::Affine,
    };
    const S8S: QSpec = QSpec {
        dtype: QDtype::S8,
        scheme: Scheme::Symmetric,
    };
    const S4S: QSpec = QSpec {
        dtype: QDtype::S4,
        scheme: Scheme::Symmetric,
    };
    const U4A: QSpec = QSpec {
        dtype: QDtype::U4,
        scheme: Scheme::Affine,
    };

    /// Values from PyTorch's formulas worked by hand.
    #[test]
    fn qparams_match_pytorch() {
        // Affine u8 on [-1, 3]: scale 4/255, zp = 0 - round(-1 / (4/255)) = round(63.75) = 64.
        assert_eq!(qparams(-1.0, 3.0, U8A), (4.0 / 255.0, 64));
        // A range not containing 0 is widened to it: [2, 5] -> [0, 5].
        assert_eq!(qparams(2.0, 5.0, U8A), (5.0 / 255.0, 0));
        // Symmetric s8: max(|-2|, 1) / 127.5.
        assert_eq!(qparams(-2.0, 1.0, S8S), (2.0 / 127.5, 0));
        // Symmetric s4: 3 / 7.5 = 0.4.
        assert_eq!(qparams(-1.0, 3.0, S4S), (3.0 / 7.5, 0));
        // Affine u4 on [-1.5, 6]: scale 0.5, zp = 0 - round(-3) = 3.
        assert_eq!(qparams(-1.5, 6.0, U4A), (0.5, 3));
        // Symmetric u8 uses zero point 128.
        let u8s = QSpec {
            dtype: QDtype::U8,
            scheme: Scheme::Symmetric,
        };
        assert_eq!(qparams(-1.0, 1.0, u8s).1, 128);
        // Degenerate range: scale clamps to eps.
        assert_eq!(qparams(0.0, 0.0, U8A), (f32::EPSILON, 0));
        // Zero-point tie: min -0.5 with scale 1 (range [-0.5, 254.5]): round(-0.5) = -0 -> zp 0.
        assert_eq!(qparams(-0.5, 254.5, U8A), (1.0, 0));
        // And -1.5 -> -2 (half to even): range [-1.5, 253.5].
        assert_eq!(qparams(-1.5, 253.5, U8A), (1.0, 2));
    }

    #[test]
    fn quantize_dequantize_round_trips() {
        let (s, z) = (0.5, 3);
        // Ties to even: 0.25/0.5 = 0.5 -> 0; 0.75 -> 1.5 -> 2; -0.25 -> -0.5 -> 0.
        assert_eq!(quantize(0.25, s, z, U4A), 3);
        assert_eq!(quantize(0.75, s, z, U4A), 5);
        assert_eq!(quantize(-0.25, s, z, U4A), 3);
        // Clamping at both ends of 0..15.
        assert_eq!(quantize(-10.0, s, z, U4A), 0);
        assert_eq!(quantize(10.0, s, z, U4A), 15);
        assert_eq!(dequantize(15, s, z), 6.0);
        assert_eq!(fake_quantize(10.0, s, z, U4A), 6.0);
        assert_eq!(grid_range(s, z, U4A), (-1.5, 6.0));
        // int4 symmetric: -8..7 with scale 0.4.
        let s4 = 0.4;
        assert_eq!(quantize(-3.2, s4, 0, S4S), -8);
        assert_eq!(quantize(-3.5, s4, 0, S4S), -8);
        assert_eq!(quantize(3.0, s4, 0, S4S), 7); // 7.5 -> 8 (even) -> clamps to 7
        assert_eq!(quantize(3.25, 0.5, 0, S4S), 6); // 6.5 -> 6 (even)
        assert_eq!(quantize(2.75, 0.5, 0, S4S), 6); // 5.5 -> 6 (even)
        assert_eq!(quantize(-3.75, 0.5, 0, S4S), -8); // -7.5 -> -8
        assert!(is_clipped(3.0, s4, 0, S4S));
        assert!(!is_clipped(2.6, s4, 0, S4S));
        // Every grid point survives a round trip.
        for q in 0..=255 {
            let x = dequantize(q, 4.0 / 255.0, 64);
            assert_eq!(quantize(x, 4.0 / 255.0, 64, U8A), q);
        }
    }
}
