//! Observers: streaming statistics that choose a quantization range. All keep bounded memory:
//! min-max, moving-average min-max (PyTorch's `averaging_constant`), and a fixed-bin histogram
//! (see [`Histogram`]) from which the range is picked by percentile, MSE or entropy.
//!
//! [`Observer`] is the serializable choice (plans, the command line); [`ObserverState`] the live
//! statistics. Depends on `quant::{histogram, range_search, scheme}` and `tensor`.

use super::error::{QuantError, invalid};
use super::histogram::Histogram;
use super::range_search::{entropy_range, mse_range, percentile_range};
use super::scheme::QSpec;
use crate::tensor::{Tensor, slice};
use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

/// Default histogram size (PyTorch's HistogramObserver uses 2048 bins too).
pub const DEFAULT_BINS: usize = 2048;

/// How a histogram observer picks its range.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub enum RangeMethod {
    /// Clip to the `(100 - p)`-th and `p`-th percentiles, e.g. `Percentile(99.99)`.
    Percentile(f64),
    /// Minimise the expected squared quantization error (PyTorch's HistogramObserver criterion).
    Mse,
    /// Minimise the KL divergence between the float and quantized distributions (TensorRT).
    Entropy,
}

/// Which statistics choose a range.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub enum Observer {
    /// Running minimum and maximum.
    MinMax,
    /// Exponential moving average of each batch's min and max.
    MovingAverage { momentum: f32 },
    /// A fixed-bin histogram and a range method.
    Histogram { bins: usize, method: RangeMethod },
}

impl Observer {
    /// The default for activations: histogram, MSE-optimal range (as PyTorch's x86 qconfig).
    pub fn default_activation() -> Self {
        Observer::Histogram {
            bins: DEFAULT_BINS,
            method: RangeMethod::Mse,
        }
    }

    /// The default for weights: min-max (per channel), as PyTorch's x86 qconfig.
    pub fn default_weight() -> Self {
        Observer::MinMax
    }

    /// Checks bins, momentum and percentile.
    pub fn validate(&self) -> Result<(), QuantError> {
        match *self {
            Observer::MinMax => Ok(()),
            Observer::MovingAverage { momentum } => {
                if momentum > 0.0 && momentum <= 1.0 {
                    Ok(())
                } else {
                    Err(invalid(
                        "moving-average momentum",
                        "a value in (0, 1]",
                        momentum,
                    ))
                }
            }
            Observer::Histogram { bins, method } => {
                if !(16..=1 << 16).contains(&bins) {
                    return Err(invalid("histogram bins", "16..=65536", bins));
                }
                if let RangeMethod::Percentile(p) = method
                    && !(p > 0.0 && p <= 100.0)
                {
                    return Err(invalid("percentile", "a value in (0, 100]", p));
                }
                Ok(())
            }
        }
    }
}

impl fmt::Display for Observer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Observer::MinMax => write!(f, "minmax"),
            Observer::MovingAverage { momentum } => write!(f, "moving-average:{momentum}"),
            Observer::Histogram { bins, method } => match method {
                RangeMethod::Percentile(p) => write!(f, "percentile:{p}:{bins}"),
                RangeMethod::Mse => write!(f, "mse:{bins}"),
                RangeMethod::Entropy => write!(f, "entropy:{bins}"),
            },
        }
    }
}

/// Parses `minmax`, `moving-average[:momentum]`, `mse[:bins]` (also `histogram`),
/// `percentile:P[:bins]`, `entropy[:bins]` (also `kl`).
impl FromStr for Observer {
    type Err = QuantError;

    fn from_str(s: &str) -> Result<Self, QuantError> {
        let parts: Vec<&str> = s.trim().split(':').collect();
        let num = |i: usize, what: &str| -> Result<Option<f64>, QuantError> {
            parts
                .get(i)
                .map(|v| {
                    v.parse::<f64>()
                        .map_err(|_| invalid(format!("observer '{s}'"), what, v))
                })
                .transpose()
        };
        let bins = |i: usize| -> Result<usize, QuantError> {
            Ok(num(i, "a bin count")?.map_or(DEFAULT_BINS, |b| b as usize))
        };
        let hist = |method, i| -> Result<Observer, QuantError> {
            Ok(Observer::Histogram {
                bins: bins(i)?,
                method,
            })
        };
        let o = match parts[0].to_ascii_lowercase().as_str() {
            "minmax" | "min-max" => Observer::MinMax,
            "moving-average" | "ema" => Observer::MovingAverage {
                momentum: num(1, "a momentum")?.unwrap_or(0.01) as f32,
            },
            "mse" | "histogram" => hist(RangeMethod::Mse, 1)?,
            "entropy" | "kl" => hist(RangeMethod::Entropy, 1)?,
            "percentile" => {
                let p = num(1, "a percentile")?.ok_or_else(|| {
                    invalid(
                        format!("observer '{s}'"),
                        "percentile:P, e.g. percentile:99.99",
                        s,
                    )
                })?;
                hist(RangeMethod::Percentile(p), 2)?
            }
            _ => {
                return Err(invalid(
                    "observer",
                    "minmax, moving-average[:m], mse[:bins], percentile:P[:bins], entropy[:bins]",
                    format!("'{s}'"),
                ));
            }
        };
        o.validate()?;
        Ok(o)
    }
}

/// Live statistics of one observer.
#[derive(Clone, Debug)]
pub enum ObserverState {
    MinMax {
        min: f32,
        max: f32,
    },
    MovingAverage {
        min: f32,
        max: f32,
        momentum: f32,
    },
    Histogram {
        hist: Histogram,
        method: RangeMethod,
    },
}

fn finite_min_max(xs: &[f32]) -> Option<(f32, f32)> {
    let (mn, mx) = xs
        .iter()
        .filter(|x| x.is_finite())
        .fold((f32::INFINITY, f32::NEG_INFINITY), |(a, b), &x| {
            (a.min(x), b.max(x))
        });
    (mn <= mx).then_some((mn, mx))
}

impl ObserverState {
    /// Empty statistics for an observer choice.
    pub fn new(o: &Observer) -> Self {
        match *o {
            Observer::MinMax => ObserverState::MinMax {
                min: f32::INFINITY,
                max: f32::NEG_INFINITY,
            },
            Observer::MovingAverage { momentum } => ObserverState::MovingAverage {
                min: f32::INFINITY,
                max: f32::NEG_INFINITY,
                momentum,
            },
            Observer::Histogram { bins, method } => ObserverState::Histogram {
                hist: Histogram::new(bins),
                method,
            },
        }
    }

    /// Adds one batch of values (non-finite values are ignored).
    pub fn observe(&mut self, xs: &[f32]) {
        match self {
            ObserverState::MinMax { min, max } => {
                if let Some((a, b)) = finite_min_max(xs) {
                    *min = min.min(a);
                    *max = max.max(b);
                }
            }
            ObserverState::MovingAverage { min, max, momentum } => {
                if let Some((a, b)) = finite_min_max(xs) {
                    if min.is_finite() {
                        *min += *momentum * (a - *min);
                        *max += *momentum * (b - *max);
                    } else {
                        (*min, *max) = (a, b);
                    }
                }
            }
            ObserverState::Histogram { hist, .. } => hist.observe(xs),
        }
    }

    /// The chosen range for a grid, or `None` before any finite value was seen.
    pub fn range(&self, spec: QSpec) -> Option<(f32, f32)> {
        match self {
            ObserverState::MinMax { min, max } | ObserverState::MovingAverage { min, max, .. } => {
                (min <= max).then_some((*min, *max))
            }
            ObserverState::Histogram { hist, method } => match method {
                RangeMethod::Percentile(p) => percentile_range(hist, *p),
                RangeMethod::Mse => mse_range(hist, spec),
                RangeMethod::Entropy => entropy_range(hist, spec),
            },
        }
    }

    /// The histogram, for histogram observers.
    pub fn histogram(&self) -> Option<&Histogram> {
        match self {
            ObserverState::Histogram { hist, .. } => Some(hist),
            _ => None,
        }
    }

    /// Bytes held (constant for a given observer choice).
    pub fn memory_bytes(&self) -> usize {
        std::mem::size_of::<Self>() + self.histogram().map_or(0, |h| h.memory_bytes())
    }
}

/// Per-channel ranges of a weight tensor along `axis`, each chosen by a fresh observer.
pub fn channel_ranges(w: &Tensor, axis: usize, o: &Observer, spec: QSpec) -> Vec<(f32, f32)> {
    let shape = w.shape();
    let (outer, c, inner): (usize, usize, usize) = (
        shape[..axis].iter().product(),
        shape[axis],
        shape[axis + 1..].iter().product(),
    );
    let xs = slice(w);
    (0..c)
        .map(|ch| {
            let vals: Vec<f32> = (0..outer)
                .flat_map(|o| xs[(o * c + ch) * inner..][..inner].iter().copied())
                .collect();
            let mut st = ObserverState::new(o);
            st.observe(&vals);
            st.range(spec).unwrap_or((0.0, 0.0))
        })
        .collect()
}

/// The range of a whole tensor chosen by one observer.
pub fn tensor_range(w: &Tensor, o: &Observer, spec: QSpec) -> (f32, f32) {
    let mut st = ObserverState::new(o);
    st.observe(slice(w));
    st.range(spec).unwrap_or((0.0, 0.0))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::quant::scheme::{QDtype, Scheme};
    use crate::tensor::from_vec;

    const U8A: QSpec = QSpec {
        dtype: QDtype::U8,
        scheme: Scheme::Affine,
    };

    #[test]
    fn min_max_and_moving_average_by_hand() {
        let mut mm = ObserverState::new(&Observer::MinMax);
        mm.observe(&[1.0, -2.0, f32::NAN]);
        mm.observe(&[3.0, 0.0]);
        assert_eq!(mm.range(U8A), Some((-2.0, 3.0)));
        let mut ma = ObserverState::new(&Observer::MovingAverage { momentum: 0.5 });
        ma.observe(&[0.0, 4.0]); // first batch taken as is: [0, 4]
        ma.observe(&[-2.0, 8.0]); // [0 + 0.5(-2 - 0), 4 + 0.5(8 - 4)] = [-1, 6]
        ma.observe(&[1.0, 2.0]); // [-1 + 0.5·2, 6 + 0.5·(-4)] = [0, 4]
        assert_eq!(ma.range(U8A), Some((0.0, 4.0)));
        assert_eq!(ObserverState::new(&Observer::MinMax).range(U8A), None);
    }

    #[test]
    fn histogram_percentile_on_known_data() {
        let o: Observer = "percentile:90:100".parse().unwrap();
        let mut st = ObserverState::new(&o);
        let xs: Vec<f32> = (0..1000).map(|i| i as f32 / 10.0).collect(); // 0..99.9
        st.observe(&xs);
        let (lo, hi) = st.range(U8A).unwrap();
        assert!((hi - 89.9).abs() < 1.1, "{hi}");
        assert!((lo - 10.0).abs() < 1.1, "{lo}");
    }

    #[test]
    fn per_channel_ranges_by_hand() {
        // [3 out channels, 2 inputs]
        let w = from_vec(&[3, 2], vec![1.0, -2.0, 0.5, 0.25, -3.0, 4.0]);
        let r = channel_ranges(&w, 0, &Observer::MinMax, U8A);
        assert_eq!(r, vec![(-2.0, 1.0), (0.25, 0.5), (-3.0, 4.0)]);
        // Along axis 1 (MatMul weights [K, N]).
        let r = channel_ranges(&w, 1, &Observer::MinMax, U8A);
        assert_eq!(r, vec![(-3.0, 1.0), (-2.0, 4.0)]);
    }

    #[test]
    fn parsing_and_validation() {
        assert_eq!("minmax".parse::<Observer>().unwrap(), Observer::MinMax);
        assert_eq!(
            "percentile:99.99".parse::<Observer>().unwrap(),
            Observer::Histogram {
                bins: DEFAULT_BINS,
                method: RangeMethod::Percentile(99.99)
            }
        );
        assert!("percentile:101".parse::<Observer>().is_err());
        assert!("moving-average:0".parse::<Observer>().is_err());
        assert!("mse:4".parse::<Observer>().is_err());
        assert!("median".parse::<Observer>().is_err());
        for o in [
            "minmax",
            "moving-average:0.01",
            "mse:2048",
            "entropy:512",
            "percentile:99.9:2048",
        ] {
            let p: Observer = o.parse().unwrap();
            assert_eq!(p.to_string(), o);
        }
    }

    #[test]
    fn histogram_observer_memory_is_bounded() {
        let mut st = ObserverState::new(&Observer::default_activation());
        st.observe(&[0.0]);
        let m0 = st.memory_bytes();
        let batch: Vec<f32> = (0..100_000).map(|i| (i % 977) as f32 * 0.01).collect();
        for k in 0..50 {
            st.observe(&batch);
            st.observe(&[k as f32 * 10.0]);
        }
        assert_eq!(st.memory_bytes(), m0);
        assert_eq!(st.histogram().unwrap().total(), 1 + 50 * 100_001);
    }
}
