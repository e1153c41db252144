//! The frozen result of calibrating one quantization point: the chosen range and the grid
//! parameters (scale and zero point, per channel for weights) it was turned into. Stored in
//! plan files, so everything is validated. Depends on `quant::{error, scheme}`.

use super::error::{QuantError, invalid};
use super::scheme::{QDtype, Scheme};
use serde::{Deserialize, Serialize};

/// The frozen range and grid parameters of one quantization point.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PointRange {
    /// The fake-quant node's name.
    pub point: String,
    /// The float value it quantizes (a value name of the folded model).
    pub value: String,
    pub dtype: QDtype,
    pub scheme: Scheme,
    /// Chosen range per channel (one entry per tensor for activations).
    pub min: Vec<f32>,
    pub max: Vec<f32>,
    pub scale: Vec<f32>,
    pub zero_point: Vec<i32>,
}

impl PointRange {
    /// This per-tensor range moved to `[min, max]`, with scale and zero point recomputed by
    /// the one formula ([`qparams`](super::scheme::qparams)); a per-channel range or an empty
    /// range is refused.
    pub fn with_range(&self, min: f32, max: f32) -> Result<PointRange, QuantError> {
        if self.scale.len() != 1 {
            return Err(invalid(
                format!("range '{}'", self.point),
                "a per-tensor range (one scale) to set by hand",
                format!("{} per-channel scales", self.scale.len()),
            ));
        }
        if !(min.is_finite() && max.is_finite() && min < max) {
            return Err(invalid(
                format!("range '{}'", self.point),
                "finite bounds with min < max",
                format!("[{min}, {max}]"),
            ));
        }
        let spec = super::scheme::QSpec {
            dtype: self.dtype,
            scheme: self.scheme,
        };
        let (s, z) = super::scheme::qparams(min, max, spec);
        let r = PointRange {
            min: vec![min],
            max: vec![max],
            scale: vec![s],
            zero_point: vec![z],
            ..self.clone()
        };
        r.validate()?;
        Ok(r)
    }

    /// Checks lengths, finiteness, positive scales and zero points inside the grid.
    pub fn validate(&self) -> Result<(), QuantError> {
        let what = |f: &str| format!("range '{}' {f}", self.point);
        let n = self.scale.len();
        if n == 0 || [self.min.len(), self.max.len(), self.zero_point.len()] != [n; 3] {
            return Err(invalid(
                what("lengths"),
                "equal, non-empty min/max/scale/zero_point lists",
                format!(
                    "{}/{}/{}/{}",
                    self.min.len(),
                    self.max.len(),
                    n,
                    self.zero_point.len()
                ),
            ));
        }
        let (qmin, qmax) = self.dtype.range();
        for i in 0..n {
            let (lo, hi, s, z) = (self.min[i], self.max[i], self.scale[i], self.zero_point[i]);
            if !lo.is_finite() || !hi.is_finite() || lo > hi {
                return Err(invalid(
                    what("min/max"),
                    "finite with min <= max",
                    format!("[{lo}, {hi}]"),
                ));
            }
            if !s.is_finite() || s <= 0.0 {
                return Err(invalid(what("scale"), "finite and > 0", s));
            }
            if z < qmin || z > qmax {
                return Err(invalid(what("zero_point"), format!("{qmin}..={qmax}"), z));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn u8_range() -> PointRange {
        PointRange {
            point: "relu1.fq".into(),
            value: "relu1".into(),
            dtype: QDtype::U8,
            scheme: Scheme::Affine,
            min: vec![0.0],
            max: vec![2.55],
            scale: vec![0.01],
            zero_point: vec![0],
        }
    }

    #[test]
    fn with_range_recomputes_scale_and_zero_point() {
        let r = u8_range().with_range(-1.0, 1.55).unwrap();
        assert_eq!((r.min[0], r.max[0]), (-1.0, 1.55));
        // scale = 2.55 / 255, zero point = round(1 / 0.01) = 100.
        assert_eq!(r.scale[0], 2.55 / 255.0);
        assert_eq!(r.zero_point[0], 100);
        assert_eq!(r.point, "relu1.fq");
    }

    #[test]
    fn with_range_refuses_empty_and_per_channel_ranges() {
        assert!(u8_range().with_range(1.0, 1.0).is_err());
        assert!(u8_range().with_range(f32::NAN, 1.0).is_err());
        let mut pc = u8_range();
        pc.scale.push(0.02);
        pc.min.push(0.0);
        pc.max.push(5.1);
        pc.zero_point.push(0);
        let e = pc.with_range(0.0, 1.0).unwrap_err().to_string();
        assert!(e.contains("per-channel"), "{e}");
    }
}
