//! Tests of [`super::PlanSession`]: the cached path gives exactly what `quant::ptq` + `compare`
//! give from scratch, and recalibrates only what a plan change needs.

use super::*;
use crate::data::Pixels;
use crate::quant::plan::Precision;
use crate::quant::scheme::{QDtype, QSpec, Scheme, qparams};
use crate::quant::{Observer, ptq};
use crate::zoo::Arch;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

fn random_dataset(n: usize, seed: u64) -> Dataset {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let pixels = (0..n * 784).map(|_| rng.random::<u8>()).collect();
    let labels = (0..n).map(|_| rng.random_range(0..10u32)).collect();
    let names = (0..10).map(|i| i.to_string()).collect();
    Dataset::new("random", Pixels::U8(pixels), labels, [1, 28, 28], names).unwrap()
}

struct Fixture {
    g: Graph,
    calib: Dataset,
    eval: Dataset,
    norm: Normalization,
    stop: AtomicBool,
}

impl Fixture {
    fn new() -> Self {
        Fixture {
            g: Arch::SeedCnn.build([1, 28, 28], 10, 0).unwrap(),
            calib: random_dataset(40, 1),
            eval: random_dataset(30, 2),
            norm: Normalization::mnist(),
            stop: AtomicBool::new(false),
        }
    }

    /// Calibrates on the first 32 calibration images, batches of 8.
    fn calibrate(&self, s: &mut PlanSession, plan: &QuantPlan) -> usize {
        let (c, n) = (&self.calib, &self.norm);
        s.calibrate(plan, c, n, 32, 8, &self.stop, &mut |_, _| {})
            .unwrap()
    }

    /// `quant::ptq` on the same 32 images + `compare` on the first 20 evaluation images.
    fn direct(&self, plan: &QuantPlan) -> (PtqResult, Comparison) {
        let calib = self.calib.clone().limit(32);
        let batches = Loader::new(&calib, &self.norm, 8, None, false).map(|(x, _)| x);
        let res = ptq(&self.g, plan, batches, &self.stop, &mut |_| {}).unwrap();
        let eval = self.eval.clone().limit(20);
        let c = compare(
            &res.folded,
            &res.points,
            &res.prepared,
            &eval,
            &self.norm,
            8,
            &self.stop,
        )
        .unwrap();
        (res, c)
    }

    fn evaluate(&self, s: &PlanSession, plan: &QuantPlan) -> PlanEval {
        s.evaluate(plan, &self.eval, &self.norm, 20, 8, &self.stop)
            .unwrap()
    }
}

/// The session's evaluation equals PTQ + compare run from scratch, for the first plan and for
/// plans answered from the cache (one layer to int4, int4 activations, another observer).
#[test]
fn session_evaluate_equals_ptq_and_compare_from_scratch() {
    let f = Fixture::new();
    let mut s = PlanSession::new(&f.g).unwrap();
    let int8 = QuantPlan::default_for(&f.g, Precision::Int8);
    let mut progress = Vec::new();
    let newly = s
        .calibrate(&int8, &f.calib, &f.norm, 32, 8, &f.stop, &mut |d, t| {
            progress.push((d, t))
        })
        .unwrap();
    assert_eq!(newly, 4); // input, relu1, relu2, fc
    assert_eq!(progress, [(8, 32), (16, 32), (24, 32), (32, 32)]);
    let mut w4 = int8.clone();
    w4.layers[1].precision = Precision::Int4;
    let mut a4 = w4.clone();
    a4.layers[2].activations = Precision::Int4;
    let mut pct = int8.clone();
    pct.layers[1].activation_observer = "percentile:99.9".parse().unwrap();
    // Int4 weights keep every activation grid: nothing to observe. Int4 activations on fc keep
    // its output observer but un-share its input from relu2's u8 point: one new observer (of
    // `flatten`). Another observer on conv2's output: one new observer (of `relu2`).
    for (name, plan, new_observers) in [("int8", &int8, 0), ("conv2 int4", &w4, 0)]
        .into_iter()
        .chain([("fc a4", &a4, 1), ("percentile", &pct, 1)])
    {
        assert_eq!(f.calibrate(&mut s, plan), new_observers, "{name}");
        let ev = f.evaluate(&s, plan);
        let (res, want) = f.direct(plan);
        assert_eq!(ev.comparison, want, "{name}");
        assert_eq!(ev.ptq.plan.ranges, res.plan.ranges, "{name}");
        assert_eq!(ev.comparison.images, 20);
        assert_eq!(ev.size, plan_size(&res.folded, plan));
        assert!(ev.seconds > 0.0);
    }
    // The int4 layer is smaller: 4608 weights at half a byte instead of one.
    let (s8, s4) = (f.evaluate(&s, &int8).size, f.evaluate(&s, &w4).size);
    assert_eq!(s8.bytes - s4.bytes, 4608 / 2);
}

/// Exactly the observers a plan adds are calibrated; new data starts afresh; a cancelled pass
/// leaves the cache as it was.
#[test]
fn only_missing_observers_are_calibrated() {
    let f = Fixture::new();
    let mut s = PlanSession::new(&f.g).unwrap();
    let plan = QuantPlan::default_for(&f.g, Precision::Int8);
    assert!(matches!(s.ptq(&plan), Err(QuantError::NoData { .. })));
    assert_eq!(f.calibrate(&mut s, &plan), 4);
    // conv1's observer also governs its input point: two new observers (input, relu1).
    let mut mm = plan.clone();
    mm.layers[0].activation_observer = Observer::MinMax;
    let stop = AtomicBool::new(true);
    let cancelled = s.calibrate(&mm, &f.calib, &f.norm, 32, 8, &stop, &mut |_, _| {});
    assert!(matches!(cancelled, Err(QuantError::Cancelled)));
    assert!(matches!(s.ptq(&mm), Err(QuantError::NoData { .. })));
    assert_eq!(f.calibrate(&mut s, &mm), 2);
    assert_eq!(f.calibrate(&mut s, &mm), 0);
    assert_eq!(s.calibrator().observer_count(), 6);
    // Nothing to observe: the stop flag is never consulted.
    let none = s.calibrate(&plan, &f.calib, &f.norm, 32, 8, &stop, &mut |_, _| {});
    assert_eq!(none.unwrap(), 0);
    // Other data (fewer images) or another batch size: everything again, old observers gone.
    let again = s.calibrate(&plan, &f.calib, &f.norm, 24, 8, &f.stop, &mut |_, _| {});
    assert_eq!(again.unwrap(), 4);
    assert!(matches!(s.ptq(&mm), Err(QuantError::NoData { .. })));
    let rebatched = s.calibrate(&plan, &f.calib, &f.norm, 24, 6, &f.stop, &mut |_, _| {});
    assert_eq!(rebatched.unwrap(), 4);
    assert_eq!(s.calibrator().images(), 24);
    let zero = s.calibrate(&plan, &f.calib, &f.norm, 0, 8, &f.stop, &mut |_, _| {});
    assert!(matches!(zero, Err(QuantError::InvalidValue { .. })));
}

/// A pinned range is used as given; a stale one (another grid) is ignored.
#[test]
fn pinned_ranges_override_the_calibration() {
    let f = Fixture::new();
    let mut s = PlanSession::new(&f.g).unwrap();
    let mut plan = QuantPlan::default_for(&f.g, Precision::Int8);
    f.calibrate(&mut s, &plan);
    let free = s.ptq(&plan).unwrap();
    let u8a = QSpec {
        dtype: QDtype::U8,
        scheme: Scheme::Affine,
    };
    let (scale, zp) = qparams(0.0, 2.0, u8a);
    let pin = PointRange {
        point: "relu1.fq".into(),
        value: "relu1".into(),
        dtype: QDtype::U8,
        scheme: Scheme::Affine,
        min: vec![0.0],
        max: vec![2.0],
        scale: vec![scale],
        zero_point: vec![zp],
    };
    let stale = PointRange {
        point: "relu2.fq".into(),
        dtype: QDtype::S8,
        scheme: Scheme::Symmetric,
        zero_point: vec![0],
        ..pin.clone()
    };
    plan.ranges = vec![pin.clone(), stale];
    let res = s.ptq(&plan).unwrap();
    let find = |r: &PtqResult, name: &str| r.plan.ranges.iter().find(|x| x.point == name).cloned();
    assert_eq!(find(&res, "relu1.fq"), Some(pin.clone()));
    assert_ne!(find(&free, "relu1.fq"), Some(pin.clone()));
    assert_eq!(find(&res, "relu2.fq"), find(&free, "relu2.fq"));
    assert_eq!(res.plan.ranges.len(), free.plan.ranges.len());
    let g = &res.prepared.graph;
    let sp = g
        .params
        .iter()
        .find(|p| p.name == "relu1.fq.scale")
        .unwrap();
    assert_eq!(
        sp.tensor.iter().copied().collect::<Vec<f32>>(),
        [2.0 / 255.0]
    );
    // Pinned activation points need no calibration: a fresh session prepares the plan as long
    // as every other point is pinned too.
    let fresh = PlanSession::new(&f.g).unwrap();
    let mut all = plan.clone();
    all.ranges = free.plan.ranges.clone();
    assert_eq!(fresh.ptq(&all).unwrap().plan.ranges, free.plan.ranges);
}

#[test]
fn session_is_send_and_refuses_quantized_models() {
    fn send<T: Send>() {}
    send::<PlanSession>();
    let f = Fixture::new();
    let (res, _) = f.direct(&QuantPlan::default_for(&f.g, Precision::Int8));
    match PlanSession::new(&res.prepared.graph) {
        Err(QuantError::Structure(m)) => assert!(m.contains("already quantized"), "{m}"),
        other => panic!("expected a refusal, got {:?}", other.map(|_| ())),
    }
}
