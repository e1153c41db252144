//! PTQ calibration: runs float batches through the (folded) float graph, feeds every activation
//! point's observer, then freezes the chosen ranges into scales and zero points.
//!
//! Observers are keyed by (value, observer choice), so the points of several plans on the same
//! graph (the ablation variants of a sensitivity sweep) can share one calibration pass. Memory
//! is bounded by the observers (histograms have fixed bins), never by the number of images.
//! Depends on `graph`, `quant::{exec, observer, points, plan, scheme}`.

use super::error::QuantError;
use super::exec::run_tapped;
use super::observer::{Observer, ObserverState, channel_ranges, tensor_range};
use super::plan::PointRange;
use super::points::{Point, PointKind, QuantPoints};
use super::scheme::{PointGrid, qparams};
use crate::graph::{Graph, ValueId};
use crate::tensor::{Tensor, slice};
use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};

/// Activation ranges already chosen, by (value, observer, grid): the MSE and entropy searches are
/// the expensive part of freezing, and sweeps freeze the same points many times.
#[derive(Debug, Default)]
struct RangeMemo(Mutex<HashMap<String, Vec<(f32, f32)>>>);

impl Clone for RangeMemo {
    fn clone(&self) -> Self {
        RangeMemo(Mutex::new(
            self.0.lock().map(|m| m.clone()).unwrap_or_default(),
        ))
    }
}

impl RangeMemo {
    fn get_or(
        &self,
        key: String,
        f: impl FnOnce() -> Option<Vec<(f32, f32)>>,
    ) -> Option<Vec<(f32, f32)>> {
        if let Some(v) = self.0.lock().ok().and_then(|m| m.get(&key).cloned()) {
            return Some(v);
        }
        let v = f()?;
        if let Ok(mut m) = self.0.lock() {
            m.insert(key, v.clone());
        }
        Some(v)
    }

    fn clear(&self) {
        if let Ok(mut m) = self.0.lock() {
            m.clear();
        }
    }
}

/// Observers of a graph's activation values.
#[derive(Clone, Debug)]
pub struct Calibrator {
    observers: HashMap<ValueId, Vec<(Observer, ObserverState)>>,
    images: usize,
    memo: RangeMemo,
}

impl Calibrator {
    /// Observers for the activation points of every plan in `plans` (on the same graph).
    pub fn new(plans: &[&QuantPoints]) -> Self {
        let mut observers: HashMap<ValueId, Vec<(Observer, ObserverState)>> = HashMap::new();
        for p in plans.iter().flat_map(|q| &q.points) {
            if !p.is_activation() || p.grid == PointGrid::Fp16 {
                continue;
            }
            let list = observers.entry(p.value).or_default();
            if !list.iter().any(|(o, _)| *o == p.observer) {
                list.push((p.observer, ObserverState::new(&p.observer)));
            }
        }
        Calibrator {
            observers,
            images: 0,
            memo: RangeMemo::default(),
        }
    }

    /// Runs one batch through `g` (the graph the points were planned on) and observes it.
    pub fn observe(&mut self, g: &Graph, x: &Tensor) -> Result<(), QuantError> {
        let obs = &mut self.observers;
        run_tapped(g, x, &mut |v, t| {
            if let Some(list) = obs.get_mut(&v) {
                for (_, st) in list.iter_mut() {
                    st.observe(slice(t));
                }
            }
        })?;
        self.images += x.shape()[0];
        self.memo.clear();
        Ok(())
    }

    /// Images observed so far.
    pub fn images(&self) -> usize {
        self.images
    }

    /// The statistics behind a point (for histograms in the studio).
    pub fn state(&self, p: &Point) -> Option<&ObserverState> {
        self.observers
            .get(&p.value)?
            .iter()
            .find(|(o, _)| *o == p.observer)
            .map(|(_, s)| s)
    }

    /// Bytes held by all observers (independent of the number of images).
    pub fn memory_bytes(&self) -> usize {
        self.observers
            .values()
            .flatten()
            .map(|(_, s)| s.memory_bytes())
            .sum()
    }

    /// Frozen ranges of every integer point of `qp`: activations from the observers, weights
    /// from the parameters of `g`.
    pub fn ranges(&self, g: &Graph, qp: &QuantPoints) -> Result<Vec<PointRange>, QuantError> {
        qp.points
            .iter()
            .filter_map(|p| match p.grid {
                PointGrid::Int(_) => Some(self.point_range(g, p)),
                PointGrid::Fp16 => None,
            })
            .collect()
    }

    /// Frozen ranges of the integer weight points of `qp` only (no calibration data needed).
    pub fn ranges_of_weights(
        &self,
        g: &Graph,
        qp: &QuantPoints,
    ) -> Result<Vec<PointRange>, QuantError> {
        qp.points
            .iter()
            .filter(|p| !p.is_activation() && matches!(p.grid, PointGrid::Int(_)))
            .map(|p| self.point_range(g, p))
            .collect()
    }

    fn point_range(&self, g: &Graph, p: &Point) -> Result<PointRange, QuantError> {
        let PointGrid::Int(spec) = p.grid else {
            unreachable!("only integer points have ranges")
        };
        let no_data = || QuantError::NoData {
            point: p.name.clone(),
        };
        let ranges = match p.kind {
            // Weights are cheap and may change between calls (QAT): never memoized.
            PointKind::Weight { axis, .. } => {
                let w = &g.params[g.param_of(p.value).ok_or_else(no_data)?].tensor;
                match axis {
                    Some(a) => channel_ranges(w, a, &p.observer, spec),
                    None => vec![tensor_range(w, &p.observer, spec)],
                }
            }
            _ => {
                let key = format!("{}|{:?}|{:?}", p.value, p.observer, spec);
                self.memo
                    .get_or(key, || {
                        self.state(p).and_then(|s| s.range(spec)).map(|r| vec![r])
                    })
                    .ok_or_else(no_data)?
            }
        };
        let (scale, zero_point) = ranges.iter().map(|&(a, b)| qparams(a, b, spec)).unzip();
        let r = PointRange {
            point: p.name.clone(),
            value: g.values[p.value].name.clone(),
            dtype: spec.dtype,
            scheme: spec.scheme,
            min: ranges.iter().map(|r| r.0).collect(),
            max: ranges.iter().map(|r| r.1).collect(),
            scale,
            zero_point,
        };
        r.validate()?;
        Ok(r)
    }
}

/// Calibrates the activation points of `plans` on batches, honouring `stop` between batches;
/// `on_batch(images_so_far)` reports progress.
pub fn calibrate(
    g: &Graph,
    plans: &[&QuantPoints],
    batches: impl IntoIterator<Item = Tensor>,
    stop: &AtomicBool,
    on_batch: &mut dyn FnMut(usize),
) -> Result<Calibrator, QuantError> {
    let mut c = Calibrator::new(plans);
    for x in batches {
        if stop.load(Ordering::Relaxed) {
            return Err(QuantError::Cancelled);
        }
        c.observe(g, &x)?;
        on_batch(c.images());
    }
    Ok(c)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::quant::plan::{Precision, QuantPlan};
    use crate::quant::points::plan_points;
    use crate::tensor::from_vec;
    use crate::zoo::Arch;

    /// Min-max calibration of the input point equals the batch's min and max.
    #[test]
    fn input_range_is_the_observed_min_max() {
        let g = Arch::SeedCnn.build([1, 4, 4], 3, 0).unwrap();
        let mut plan = QuantPlan::default_for(&g, Precision::Int8);
        for l in &mut plan.layers {
            l.activation_observer = Observer::MinMax;
        }
        let qp = plan_points(&g, &plan).unwrap();
        let xs: Vec<f32> = (0..32).map(|i| i as f32 / 8.0 - 1.0).collect(); // -1 ..= 2.875
        let x = from_vec(&[2, 1, 4, 4], xs);
        let c = calibrate(&g, &[&qp], [x], &AtomicBool::new(false), &mut |_| {}).unwrap();
        let r = c.ranges(&g, &qp).unwrap();
        let input = r.iter().find(|r| r.point == "input.fq").unwrap();
        assert_eq!((input.min[0], input.max[0]), (-1.0, 2.875));
        assert_eq!(input.scale[0], 3.875 / 255.0);
        assert_eq!(input.zero_point[0], 66); // round(1 / (3.875/255)) = round(65.8)
        // Weights: one range per output channel.
        let w = r.iter().find(|r| r.point == "conv1.weight.fq").unwrap();
        assert_eq!(w.scale.len(), 16);
        assert!(w.zero_point.iter().all(|&z| z == 0));
    }

    #[test]
    fn stop_flag_cancels() {
        let g = Arch::SeedCnn.build([1, 4, 4], 3, 0).unwrap();
        let qp = plan_points(&g, &QuantPlan::default_for(&g, Precision::Int8)).unwrap();
        let x = from_vec(&[1, 1, 4, 4], vec![0.0; 16]);
        let r = calibrate(&g, &[&qp], [x], &AtomicBool::new(true), &mut |_| {});
        assert!(matches!(r, Err(QuantError::Cancelled)));
    }
}
