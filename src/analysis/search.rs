//! Automatic mixed precision: a search over per-layer weight precision (fp32, fp16, int8,
//! int4) that keeps the Pareto front of (accuracy, weight bytes, latency) and picks the plan
//! that best meets `max_drop` for the objective (size or latency).
//!
//! Cheap estimates guide it, measurements decide. Each layer's latency at each precision comes
//! from `bench::latency` runs of uniform plans on this machine's integer kernels (per-layer
//! rows add up to the total, so a plan's latency is estimated as the sum of its layers' rows);
//! each layer's accuracy sensitivity is measured with everything else at int8. Then, from
//! all-int8, moves that save the most bytes (or microseconds) per point of expected accuracy
//! are applied one at a time and every candidate is evaluated for real on the evaluation images
//! (one shared calibration, `whatif::PlanSession`, so a precision change calibrates nothing).
//! Moves that break the constraint are undone. Anytime: every evaluated plan is reported,
//! the front and the best plan so far are always at hand, a time budget or the stop flag ends
//! it, and the report says whether the constraint was met. The chosen plan's latency is then
//! measured, beside all-int8 and float, in the same run.

use crate::analysis::whatif::PlanSession;
use crate::bench::latency::{LatencyConfig, PlanLatency, plan_latency};
use crate::data::{Dataset, Normalization};
use crate::graph::Graph;
use crate::quant::{Precision, QuantError, QuantPlan};
use serde::Serialize;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// What the search optimises once the accuracy constraint holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, serde::Deserialize, clap::ValueEnum)]
pub enum Objective {
    /// Fewest weight bytes.
    Size,
    /// Lowest latency per image (estimated from measured per-layer rows, the choice measured).
    Latency,
}

/// How to search.
#[derive(Clone, Debug)]
pub struct SearchConfig {
    /// Largest accuracy drop accepted against float, percentage points.
    pub max_drop_pp: f64,
    pub objective: Objective,
    /// Wall-time budget (the search stops at the next plan after it).
    pub budget: Duration,
    pub calib_samples: usize,
    pub eval_samples: usize,
    /// Layers whose weight precision the search must not change.
    pub pinned: BTreeMap<String, Precision>,
    /// Weight precisions a layer may take.
    pub candidates: Vec<Precision>,
    /// Latency measurement of the uniform plans and the chosen one.
    pub latency: LatencyConfig,
}

impl Default for SearchConfig {
    fn default() -> Self {
        SearchConfig {
            max_drop_pp: 0.3,
            objective: Objective::Size,
            budget: Duration::from_secs(60),
            calib_samples: 1000,
            eval_samples: 1000,
            pinned: BTreeMap::new(),
            candidates: vec![
                Precision::Fp32,
                Precision::Fp16,
                Precision::Int8,
                Precision::Int4,
            ],
            latency: LatencyConfig {
                batch: 1,
                repeats: 10,
                min_seconds: 0.05,
            },
        }
    }
}

/// One evaluated plan.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Candidate {
    /// Weight precision per layer, in plan order.
    pub layers: Vec<(String, Precision)>,
    pub accuracy: f64,
    /// Float accuracy minus this plan's, percentage points.
    pub drop_pp: f64,
    pub weight_bytes: usize,
    /// Sum of the measured per-layer rows for these precisions, microseconds per image.
    pub latency_est_us: f64,
    /// Measured on the integer runtime (the latency objective measures its finalists).
    pub latency_us: Option<f64>,
    /// On the front when the search ended.
    pub on_front: bool,
}

/// What the search reports as it goes.
#[derive(Clone, Debug)]
pub enum SearchEvent {
    /// The reference points: float and all-int8.
    Baseline {
        float_accuracy: f64,
        int8: Candidate,
    },
    /// Another plan was evaluated (`index` into the tried list).
    Tried { index: usize, candidate: Candidate },
}

/// The search's result.
#[derive(Clone, Debug, Serialize)]
pub struct SearchReport {
    pub float_accuracy: f64,
    pub float_bytes: usize,
    pub int8: Candidate,
    /// Every plan evaluated, in order; `on_front` marks the Pareto front.
    pub tried: Vec<Candidate>,
    /// The chosen plan (index into `tried`) and whether it meets `max_drop_pp`.
    pub chosen: usize,
    /// The chosen plan with its calibrated ranges (`qatlas convert --plan` takes it).
    #[serde(skip)]
    pub chosen_plan: QuantPlan,
    pub constraint_met: bool,
    /// The chosen plan, all-int8 and float measured in the same latency run.
    pub chosen_latency: Option<PlanLatency>,
    pub int8_latency: Option<PlanLatency>,
    pub seconds: f64,
    pub stopped_early: bool,
    pub eval_images: usize,
}

impl SearchReport {
    /// The chosen candidate.
    pub fn best(&self) -> &Candidate {
        &self.tried[self.chosen]
    }
}

/// Per-layer latency rows (µs per image) of each precision, from uniform plans.
struct LatencyTable {
    rows: BTreeMap<(String, Precision), f64>,
    other_us: f64,
}

impl LatencyTable {
    fn estimate(&self, layers: &[(String, Precision)]) -> f64 {
        self.other_us
            + layers
                .iter()
                .map(|k| self.rows.get(k).copied().unwrap_or(0.0))
                .sum::<f64>()
    }
}

/// The pinned layers: the configuration's, and the base plan's excluded layers at fp32.
fn pinned_layers(cfg: &SearchConfig, base: &QuantPlan) -> BTreeMap<String, Precision> {
    let mut m = cfg.pinned.clone();
    for l in base.layers.iter().filter(|l| l.excluded) {
        m.entry(l.layer.clone()).or_insert(Precision::Fp32);
    }
    m
}

/// `base` with each layer's weights at the given precision (activations int8, nothing
/// excluded, no fixed ranges): a search candidate as a plan.
pub fn with_precisions(base: &QuantPlan, layers: &[(String, Precision)]) -> QuantPlan {
    let mut p = base.clone();
    p.ranges.clear();
    for (name, prec) in layers {
        if let Some(l) = p.layer_mut(name) {
            l.precision = *prec;
            l.excluded = false;
            l.activations = Precision::Int8;
        }
    }
    p
}

/// Whether `a` is at least as good as `b` in all three and better in one.
fn dominates(a: &Candidate, b: &Candidate) -> bool {
    let ge = a.accuracy >= b.accuracy
        && a.weight_bytes <= b.weight_bytes
        && a.latency_est_us <= b.latency_est_us;
    let gt = a.accuracy > b.accuracy
        || a.weight_bytes < b.weight_bytes
        || a.latency_est_us < b.latency_est_us;
    ge && gt
}

/// Marks the non-dominated candidates.
pub fn mark_front(tried: &mut [Candidate]) {
    let flags: Vec<bool> = tried
        .iter()
        .map(|c| !tried.iter().any(|o| dominates(o, c)))
        .collect();
    for (c, f) in tried.iter_mut().zip(flags) {
        c.on_front = f;
    }
}

/// Plans the latency objective measures before it chooses.
const FINALISTS: usize = 6;

fn objective_value(c: &Candidate, o: Objective) -> f64 {
    match o {
        Objective::Size => c.weight_bytes as f64,
        // A measured plan is compared by its measurement; unmeasured ones come after.
        Objective::Latency => c.latency_us.unwrap_or(1e12 + c.latency_est_us),
    }
}

/// The chosen plan: the best objective among plans within the drop, else the most accurate.
fn choose(tried: &[Candidate], cfg: &SearchConfig) -> (usize, bool) {
    let ok = tried
        .iter()
        .enumerate()
        .filter(|(_, c)| c.drop_pp <= cfg.max_drop_pp + 1e-9)
        .min_by(|a, b| {
            objective_value(a.1, cfg.objective)
                .total_cmp(&objective_value(b.1, cfg.objective))
                .then(b.1.accuracy.total_cmp(&a.1.accuracy))
        });
    match ok {
        Some((i, _)) => (i, true),
        None => {
            let i = tried
                .iter()
                .enumerate()
                .max_by(|a, b| a.1.accuracy.total_cmp(&b.1.accuracy))
                .map_or(0, |(i, _)| i);
            (i, false)
        }
    }
}

/// The search's inputs.
pub struct SearchData<'a> {
    /// The float model.
    pub model: &'a Graph,
    /// The plan whose settings (observers, granularity) the candidates keep.
    pub base: &'a QuantPlan,
    pub calib: &'a Dataset,
    pub eval: &'a Dataset,
    pub norm: &'a Normalization,
}

/// Runs the search (see the module doc). `on_event` hears every evaluated plan.
pub fn search(
    d: &SearchData<'_>,
    cfg: &SearchConfig,
    stop: &AtomicBool,
    on_event: &mut dyn FnMut(SearchEvent),
) -> Result<SearchReport, QuantError> {
    let start = Instant::now();
    let deadline = start + cfg.budget;
    let over = || stop.load(Ordering::Relaxed) || Instant::now() >= deadline;
    let mut session = PlanSession::new(d.model)?;
    let names: Vec<String> = d.base.layers.iter().map(|l| l.layer.clone()).collect();
    let pinned = pinned_layers(cfg, d.base);
    if let Some(n) = pinned.keys().find(|n| !names.contains(n)) {
        return Err(QuantError::UnknownLayer {
            layer: n.clone(),
            available: names.join(", "),
        });
    }
    let uniform = |p: Precision| -> Vec<(String, Precision)> {
        names
            .iter()
            .map(|n| (n.clone(), pinned.get(n).copied().unwrap_or(p)))
            .collect()
    };
    // Latency rows per precision, from uniform plans (fp32 rows are the float model's).
    let mut table = LatencyTable {
        rows: BTreeMap::new(),
        other_us: 0.0,
    };
    let mut float_rows = Vec::new();
    for &p in cfg.candidates.iter().filter(|p| **p != Precision::Fp32) {
        let plan = with_precisions(d.base, &uniform(p));
        let n = cfg.calib_samples.min(d.calib.len()).max(1);
        session.calibrate(&plan, d.calib, d.norm, n, 256, stop, &mut |_, _| {})?;
        let ptq = session.ptq(&plan)?;
        let l = plan_latency(&ptq.folded, &ptq.prepared.graph, &cfg.latency, stop)
            .map_err(|e| QuantError::Structure(format!("measuring the latency: {e}")))?;
        for r in &l.layers {
            table.rows.insert((r.layer.clone(), p), r.int_us);
        }
        if p == Precision::Int8 {
            table.other_us = l.other_int_us;
            float_rows = l
                .layers
                .iter()
                .map(|r| (r.layer.clone(), r.float_us))
                .collect();
        }
    }
    for (layer, us) in float_rows {
        table.rows.insert((layer, Precision::Fp32), us);
    }

    let calib_n = cfg.calib_samples.min(d.calib.len()).max(1);
    let eval_n = cfg.eval_samples.min(d.eval.len()).max(1);
    let mut eval_images = 0;
    let mut evaluate = |session: &mut PlanSession,
                        layers: &[(String, Precision)]|
     -> Result<(Candidate, f64), QuantError> {
        let plan = with_precisions(d.base, layers);
        session.calibrate(&plan, d.calib, d.norm, calib_n, 256, stop, &mut |_, _| {})?;
        let ev = session.evaluate(&plan, d.eval, d.norm, eval_n, 250, stop)?;
        let c = &ev.comparison;
        eval_images = c.images;
        Ok((
            Candidate {
                layers: layers.to_vec(),
                accuracy: c.quantized_accuracy,
                drop_pp: (c.float_accuracy - c.quantized_accuracy) * 100.0,
                weight_bytes: ev.size.bytes,
                latency_est_us: table.estimate(layers),
                latency_us: None,
                on_front: false,
            },
            c.float_accuracy,
        ))
    };

    let int8_layers = uniform(Precision::Int8);
    let (int8, float_accuracy) = evaluate(&mut session, &int8_layers)?;
    let folded = session.folded().clone();
    let bytes_of = |layers: &[(String, Precision)]| {
        crate::analysis::size::plan_size(&folded, &with_precisions(d.base, layers))
    };
    let float_bytes = bytes_of(&int8_layers).float_bytes;
    on_event(SearchEvent::Baseline {
        float_accuracy,
        int8: int8.clone(),
    });
    let mut tried = vec![int8.clone()];
    let report =
        |tried: &mut Vec<Candidate>, c: Candidate, on_event: &mut dyn FnMut(SearchEvent)| {
            tried.push(c.clone());
            on_event(SearchEvent::Tried {
                index: tried.len() - 1,
                candidate: c,
            });
        };

    // Sensitivity: each free layer alone at each other precision, the rest int8.
    let free: Vec<usize> = (0..names.len())
        .filter(|&i| !pinned.contains_key(&names[i]))
        .collect();
    let mut sens: BTreeMap<(usize, Precision), f64> = BTreeMap::new();
    'sens: for &i in &free {
        for &p in cfg.candidates.iter().filter(|p| **p != Precision::Int8) {
            if over() {
                break 'sens;
            }
            let mut layers = int8_layers.clone();
            layers[i].1 = p;
            let (c, _) = evaluate(&mut session, &layers)?;
            sens.insert((i, p), int8.accuracy - c.accuracy);
            report(&mut tried, c, on_event);
        }
    }

    // Greedy from all-int8 (or from the most accurate single-layer change when all-int8
    // already breaks the constraint): the move with the best gain per expected accuracy loss.
    let mut current = int8_layers.clone();
    if int8.drop_pp > cfg.max_drop_pp {
        // Give the most sensitive layers more bits until the constraint holds.
        let mut order: Vec<usize> = free.clone();
        order.sort_by(|&a, &b| {
            let s = |i| sens.get(&(i, Precision::Int4)).copied().unwrap_or(0.0);
            s(b).total_cmp(&s(a))
        });
        for i in order {
            if over() {
                break;
            }
            let up = if cfg.candidates.contains(&Precision::Fp16) {
                Precision::Fp16
            } else {
                Precision::Fp32
            };
            current[i].1 = up;
            let (c, _) = evaluate(&mut session, &current)?;
            let met = c.drop_pp <= cfg.max_drop_pp;
            report(&mut tried, c, on_event);
            if met {
                break;
            }
        }
    }
    let gain = |layers: &[(String, Precision)], i: usize, p: Precision| -> f64 {
        let mut moved = layers.to_vec();
        moved[i].1 = p;
        match cfg.objective {
            Objective::Size => bytes_of(layers).bytes as f64 - bytes_of(&moved).bytes as f64,
            Objective::Latency => table.estimate(layers) - table.estimate(&moved),
        }
    };
    let mut rejected: Vec<(usize, Precision)> = Vec::new();
    loop {
        if over() {
            break;
        }
        let mut best: Option<(f64, usize, Precision)> = None;
        for &i in &free {
            for &p in &cfg.candidates {
                if p == current[i].1 || rejected.contains(&(i, p)) {
                    continue;
                }
                let g = gain(&current, i, p);
                if g <= 0.0 {
                    continue;
                }
                let loss = sens.get(&(i, p)).copied().unwrap_or(0.0).max(0.0) + 1e-4;
                let score = g / loss;
                if best.is_none_or(|(s, _, _)| score > s) {
                    best = Some((score, i, p));
                }
            }
        }
        let Some((_, i, p)) = best else { break };
        let mut moved = current.clone();
        moved[i].1 = p;
        // A plan measured already (a sensitivity probe) is not measured again.
        let met = match tried.iter().find(|c| c.layers == moved) {
            Some(c) => c.drop_pp <= cfg.max_drop_pp,
            None => {
                let (c, _) = evaluate(&mut session, &moved)?;
                let met = c.drop_pp <= cfg.max_drop_pp;
                report(&mut tried, c, on_event);
                met
            }
        };
        if met {
            current = moved;
        } else {
            rejected.push((i, p));
        }
    }

    mark_front(&mut tried);
    // The chosen plan and all-int8 measured in the same run (each with the float model).
    let measure = |layers: &[(String, Precision)]| -> Option<PlanLatency> {
        let plan = with_precisions(d.base, layers);
        let ptq = session.ptq(&plan).ok()?;
        plan_latency(
            &ptq.folded,
            &ptq.prepared.graph,
            &cfg.latency,
            &AtomicBool::new(false),
        )
        .ok()
    };
    // Per-layer rows do not add up exactly (int/float conversions between layers, cache
    // effects): for the latency objective the estimated-fastest plans within the drop are
    // measured and the fastest measured one wins.
    if cfg.objective == Objective::Latency {
        let mut finalists: Vec<usize> = (0..tried.len())
            .filter(|&i| tried[i].drop_pp <= cfg.max_drop_pp + 1e-9)
            .collect();
        finalists.sort_by(|&a, &b| tried[a].latency_est_us.total_cmp(&tried[b].latency_est_us));
        finalists.truncate(FINALISTS);
        if !finalists.contains(&0) {
            finalists.push(0);
        }
        for i in finalists {
            tried[i].latency_us = measure(&tried[i].layers).map(|l| l.int_us);
        }
    }
    let (chosen, constraint_met) = choose(&tried, cfg);
    let chosen_latency = measure(&tried[chosen].layers);
    let int8_latency = measure(&int8_layers);
    let chosen_plan = session
        .ptq(&with_precisions(d.base, &tried[chosen].layers))?
        .plan;
    Ok(SearchReport {
        chosen_plan,
        float_accuracy,
        float_bytes,
        int8,
        chosen,
        constraint_met,
        chosen_latency,
        int8_latency,
        seconds: start.elapsed().as_secs_f64(),
        stopped_early: over(),
        eval_images,
        tried,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cand(acc: f64, bytes: usize, us: f64) -> Candidate {
        Candidate {
            layers: Vec::new(),
            accuracy: acc,
            drop_pp: (0.99 - acc) * 100.0,
            weight_bytes: bytes,
            latency_est_us: us,
            latency_us: None,
            on_front: false,
        }
    }

    #[test]
    fn the_front_keeps_only_undominated_plans_and_the_choice_meets_the_drop() {
        let mut t = vec![
            cand(0.985, 70_000, 40.0),
            cand(0.984, 36_000, 35.0),
            cand(0.983, 40_000, 36.0), // dominated by the second
            cand(0.960, 20_000, 30.0),
        ];
        mark_front(&mut t);
        let front: Vec<bool> = t.iter().map(|c| c.on_front).collect();
        assert_eq!(front, [true, true, false, true]);
        let cfg = SearchConfig {
            max_drop_pp: 0.7,
            ..SearchConfig::default()
        };
        assert_eq!(choose(&t, &cfg), (1, true));
        let strict = SearchConfig {
            max_drop_pp: 0.1,
            ..SearchConfig::default()
        };
        // Nothing within 0.1 pp: the most accurate plan, and it says so.
        assert_eq!(choose(&t, &strict), (0, false));
        let lat = SearchConfig {
            max_drop_pp: 3.5,
            objective: Objective::Latency,
            ..SearchConfig::default()
        };
        assert_eq!(choose(&t, &lat), (3, true));
    }
}
