//! PTQ calibration: runs float batches through the (folded) float graph, feeds every activation
//! point's observer, then freezes the chosen ranges into scales and zero points.
//!
//! Observers are keyed by (value, observer choice), so the points of several plans on the same
//! graph (the ablation variants of a sensitivity sweep) can share one calibration pass, and a
//! calibration can be completed later with only the observers a new plan adds
//! (`missing` → observe the same batches → `merge`, as the studio's what-if does). Memory
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

    /// Forgets the ranges memoized for observer `o` of value `v`.
    fn forget(&self, v: ValueId, o: &Observer) {
        let prefix = format!("{v}|{o:?}|");
        if let Ok(mut m) = self.0.lock() {
            m.retain(|k, _| !k.starts_with(&prefix));
        }
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

    fn has(&self, v: ValueId, o: &Observer) -> bool {
        self.observers
            .get(&v)
            .is_some_and(|l| l.iter().any(|(x, _)| x == o))
    }

    /// A new, empty calibrator holding only the (value, observer) observers that the activation
    /// points of `plans` need and this one lacks (no observers if it has them all). Observe the
    /// same batches with it, then [`merge`](Self::merge) it in.
    pub fn missing(&self, plans: &[&QuantPoints]) -> Calibrator {
        let mut c = Calibrator::new(plans);
        c.observers.retain(|v, list| {
            list.retain(|(o, _)| !self.has(*v, o));
            !list.is_empty()
        });
        c
    }

    /// Whether there are no observers at all.
    pub fn is_empty(&self) -> bool {
        self.observer_count() == 0
    }

    /// Number of (value, observer) observers.
    pub fn observer_count(&self) -> usize {
        self.observers.values().map(Vec::len).sum()
    }

    /// Adds `other`'s observers (an observer this one already has is kept, `other`'s copy
    /// dropped). The image count stays this calibrator's unless it had no observers: the merged
    /// observers are meant to have seen the same images. Memoized ranges of the observers kept
    /// stay (merging leaves them unchanged); any of an added one are dropped.
    pub fn merge(&mut self, other: Calibrator) {
        if self.is_empty() {
            self.images = other.images;
        }
        for (v, list) in other.observers {
            for (o, st) in list {
                if !self.has(v, &o) {
                    self.memo.forget(v, &o);
                    self.observers.entry(v).or_default().push((o, st));
                }
            }
        }
    }

    /// A copy holding only the observers the activation points of `plans` use (with their
    /// memoized ranges), e.g. to hand one plan's statistics to a viewer.
    pub fn subset(&self, plans: &[&QuantPoints]) -> Calibrator {
        let want = Calibrator::new(plans);
        let mut observers = HashMap::new();
        for (v, list) in &want.observers {
            let kept: Vec<(Observer, ObserverState)> = self
                .observers
                .get(v)
                .into_iter()
                .flatten()
                .filter(|(o, _)| list.iter().any(|(w, _)| w == o))
                .cloned()
                .collect();
            if !kept.is_empty() {
                observers.insert(*v, kept);
            }
        }
        Calibrator {
            observers,
            images: self.images,
            memo: self.memo.clone(),
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
                // The observer must be here even when its range is memoized (a `subset`
                // copies the memo of observers it leaves out).
                let st = self.state(p).ok_or_else(no_data)?;
                let key = format!("{}|{:?}|{:?}", p.value, p.observer, spec);
                self.memo
                    .get_or(key, || st.range(spec).map(|r| vec![r]))
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

    /// Bit patterns of everything a frozen range holds.
    fn bits(r: &[PointRange]) -> Vec<(String, Vec<u32>, Vec<i32>)> {
        r.iter()
            .map(|r| {
                let f = r.min.iter().chain(&r.max).chain(&r.scale);
                (
                    r.point.clone(),
                    f.map(|v| v.to_bits()).collect(),
                    r.zero_point.clone(),
                )
            })
            .collect()
    }

    /// Calibrating plan A, then only what plan B adds, gives B exactly the ranges of a fresh
    /// calibration of B.
    #[test]
    fn missing_observers_complete_a_calibration_bit_for_bit() {
        let g = Arch::SeedCnn.build([1, 8, 8], 3, 0).unwrap();
        let a = QuantPlan::default_for(&g, Precision::Int8);
        let mut b = a.clone();
        b.layers[1].activation_observer = "percentile:99.9".parse().unwrap();
        let (qa, qb) = (plan_points(&g, &a).unwrap(), plan_points(&g, &b).unwrap());
        let batches: Vec<Tensor> = (0..3)
            .map(|s| crate::ops::gradcheck::rand_tensor(&[4, 1, 8, 8], s))
            .collect();
        let stop = AtomicBool::new(false);
        let mut ca = calibrate(&g, &[&qa], batches.clone(), &stop, &mut |_| {}).unwrap();
        assert_eq!(ca.observer_count(), 4); // input, relu1, relu2, fc (all MSE)
        assert!(ca.missing(&[&qa]).is_empty());
        let mut miss = ca.missing(&[&qb]);
        // Only relu2 (conv2's output, shared by fc's input) gets a new observer.
        assert_eq!(miss.observer_count(), 1);
        let p = |qp: &QuantPoints, name: &str| qp.points.iter().find(|p| p.name == name).cloned();
        let relu2 = p(&qb, "relu2.fq").unwrap();
        assert!(miss.state(&relu2).is_some());
        assert!(miss.state(&p(&qb, "input.fq").unwrap()).is_none());
        assert!(
            matches!(ca.ranges(&g, &qb), Err(QuantError::NoData { point }) if point == "relu2.fq")
        );
        let before = bits(&ca.ranges(&g, &qa).unwrap());
        for x in &batches {
            miss.observe(&g, x).unwrap();
        }
        ca.merge(miss);
        assert_eq!(bits(&ca.ranges(&g, &qa).unwrap()), before);
        assert_eq!(ca.observer_count(), 5);
        assert_eq!(ca.images(), 12);
        let fresh = calibrate(&g, &[&qb], batches.clone(), &stop, &mut |_| {}).unwrap();
        let (merged, want) = (ca.ranges(&g, &qb).unwrap(), fresh.ranges(&g, &qb).unwrap());
        assert_eq!(bits(&merged), bits(&want));
        // A subset keeps only B's observers.
        let sub = ca.subset(&[&qb]);
        assert_eq!(sub.observer_count(), 4);
        assert_eq!(bits(&sub.ranges(&g, &qb).unwrap()), bits(&want));
        assert!(sub.ranges(&g, &qa).is_err());
        // The subset still memoizes `ca`'s relu2 MSE range; merging a relu2 MSE observer that
        // saw other data must use the new observer, not the memo.
        let mut sub = sub;
        let mut other = sub.missing(&[&qa]);
        assert_eq!(other.observer_count(), 1);
        other.observe(&g, &batches[0]).unwrap();
        sub.merge(other);
        let one = calibrate(&g, &[&qa], [batches[0].clone()], &stop, &mut |_| {}).unwrap();
        let relu2 = |c: &Calibrator| {
            let r = c.ranges(&g, &qa).unwrap();
            r.into_iter().find(|r| r.point == "relu2.fq").unwrap()
        };
        assert_eq!(relu2(&sub), relu2(&one));
        assert_ne!(relu2(&sub), relu2(&ca));
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
