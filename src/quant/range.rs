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
