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
//!
//! When greedy single-layer moves run out, pair moves follow (one layer down a precision that
//! failed alone, another up), so a longer budget keeps finding plans. A search can be resumed
//! ([`SearchMemory`]) with another budget, drop or objective: plans already evaluated and the
//! latency table are reused, only new plans cost an evaluation.

mod front;

pub use front::mark_front;
use front::{FINALISTS, choose};

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
    /// Measured on the integer runtime (the latency objective measures its finalists), µs per
    /// image corrected for machine drift: each run times the float model interleaved, and the
    /// plan's time is scaled by the float time of the search's first latency run over the
    /// float time of its own run, so plans measured minutes apart compare fairly.
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
    /// A resumed search starts from these evaluated plans (the first is all-int8).
    Resumed {
        float_accuracy: f64,
        tried: Vec<Candidate>,
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
    /// Plans taken from the resumed search rather than evaluated in this run.
    pub resumed_plans: usize,
    /// What a resumed search reuses.
    #[serde(skip)]
    pub memory: SearchMemory,
}

/// What a search knows when it ends, for resuming it: every evaluated plan and the measured
/// latency table, valid for the same model, base plan and sample counts.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct SearchMemory {
    tried: Vec<Candidate>,
    table: LatencyTable,
    float_accuracy: f64,
    base: Option<QuantPlan>,
    calib_samples: usize,
    eval_samples: usize,
}

impl SearchMemory {
    /// Whether a search of `base` with `cfg` can reuse this memory: the same base plan (ranges
    /// and precisions aside) and what [`SearchMemory::fits_config`] checks.
    pub fn fits(&self, base: &QuantPlan, cfg: &SearchConfig) -> bool {
        self.base.as_ref().is_some_and(|b| same_settings(b, base)) && self.fits_config(cfg)
    }

    /// Whether `cfg` keeps what the memory's figures depend on: the sample counts and the
    /// candidate precisions (budget, drop, objective and pins may differ).
    pub fn fits_config(&self, cfg: &SearchConfig) -> bool {
        !self.tried.is_empty()
            && self.calib_samples == cfg.calib_samples
            && self.eval_samples == cfg.eval_samples
            && cfg
                .candidates
                .iter()
                .all(|p| self.table.rows.keys().any(|(_, q)| q == p))
    }

    /// The base plan the search ran on (a resumed search runs on it again).
    pub fn base(&self) -> Option<&QuantPlan> {
        self.base.as_ref()
    }

    /// Plans it holds.
    pub fn plans(&self) -> usize {
        self.tried.len()
    }
}

impl SearchReport {
    /// The chosen candidate.
    pub fn best(&self) -> &Candidate {
        &self.tried[self.chosen]
    }

    /// The chosen plan's measured speed-up over all-int8 and over float. Each of the two runs
    /// times its plan interleaved with the float model, and the ratios are taken against that
    /// float time, so a machine that slows down between the runs does not favour either plan.
    pub fn speedups(&self) -> Option<(f64, f64)> {
        let (c, i) = (self.chosen_latency.as_ref()?, self.int8_latency.as_ref()?);
        Some((c.ratio / i.ratio, c.ratio))
    }
}

/// Whether two plans agree in what the candidates keep (observers, schemes, granularity,
/// exclusions), their ranges and precisions aside.
fn same_settings(a: &QuantPlan, b: &QuantPlan) -> bool {
    a.layers.len() == b.layers.len()
        && a.layers.iter().zip(&b.layers).all(|(x, y)| {
            let crate::quant::plan::LayerPlan {
                layer,
                precision: _,
                activations: _,
                weight_granularity,
                weight_scheme,
                activation_scheme,
                weight_observer,
                activation_observer,
                excluded,
            } = x;
            *layer == y.layer
                && *weight_granularity == y.weight_granularity
                && *weight_scheme == y.weight_scheme
                && *activation_scheme == y.activation_scheme
                && *weight_observer == y.weight_observer
                && *activation_observer == y.activation_observer
                && *excluded == y.excluded
        })
}

/// Per-layer latency rows (µs per image) of each precision, from uniform plans.
#[derive(Clone, Debug, Default, PartialEq)]
struct LatencyTable {
    rows: BTreeMap<(String, Precision), f64>,
    other_us: f64,
    /// The float model's time in the all-int8 run: the reference measured latencies are
    /// scaled to.
    float_us: f64,
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

/// The search's inputs.
pub struct SearchData<'a> {
    /// The float model.
    pub model: &'a Graph,
    /// The plan whose settings (observers, granularity) the candidates keep.
    pub base: &'a QuantPlan,
    pub calib: &'a Dataset,
    pub eval: &'a Dataset,
    pub norm: &'a Normalization,
    /// A previous search to continue (ignored unless it [fits](SearchMemory::fits)).
    pub resume: Option<&'a SearchMemory>,
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
    let resume = d.resume.filter(|m| m.fits(d.base, cfg));
    let calib_n = cfg.calib_samples.min(d.calib.len()).max(1);
    let eval_n = cfg.eval_samples.min(d.eval.len()).max(1);
    let table = match resume {
        Some(m) => m.table.clone(),
        None => latency_table(&mut session, d, cfg, &uniform, calib_n, stop)?,
    };

    let mut eval_images = resume.map_or(0, |_| eval_n.min(d.eval.len()));
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
    let (mut tried, float_accuracy) = match resume {
        Some(m) => {
            let mut tried = m.tried.clone();
            for c in &mut tried {
                // Latency measurements are this run's.
                c.latency_us = None;
            }
            on_event(SearchEvent::Resumed {
                float_accuracy: m.float_accuracy,
                tried: tried.clone(),
            });
            (tried, m.float_accuracy)
        }
        None => {
            let (int8, float_accuracy) = evaluate(&mut session, &int8_layers)?;
            on_event(SearchEvent::Baseline {
                float_accuracy,
                int8: int8.clone(),
            });
            (vec![int8], float_accuracy)
        }
    };
    let resumed_plans = if resume.is_some() { tried.len() } else { 0 };
    // The all-int8 plan of these pins (the memory's first plan unless the pins changed).
    let int8 = match tried.iter().find(|c| c.layers == int8_layers) {
        Some(c) => c.clone(),
        None => {
            let (c, _) = evaluate(&mut session, &int8_layers)?;
            tried.push(c.clone());
            on_event(SearchEvent::Tried {
                index: tried.len() - 1,
                candidate: c.clone(),
            });
            c
        }
    };
    let folded = session.folded().clone();
    let bytes_of = |layers: &[(String, Precision)]| {
        crate::analysis::size::plan_size(&folded, &with_precisions(d.base, layers))
    };
    let float_bytes = bytes_of(&int8_layers).float_bytes;
    // A plan evaluated before (in this run or the resumed one) is not evaluated again.
    let mut probe = |session: &mut PlanSession,
                     tried: &mut Vec<Candidate>,
                     layers: &[(String, Precision)],
                     on_event: &mut dyn FnMut(SearchEvent)|
     -> Result<Candidate, QuantError> {
        if let Some(c) = tried.iter().find(|c| c.layers == layers) {
            return Ok(c.clone());
        }
        let (c, _) = evaluate(session, layers)?;
        tried.push(c.clone());
        on_event(SearchEvent::Tried {
            index: tried.len() - 1,
            candidate: c.clone(),
        });
        Ok(c)
    };
    let met = |c: &Candidate| c.drop_pp <= cfg.max_drop_pp + 1e-9;

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
            let c = probe(&mut session, &mut tried, &layers, on_event)?;
            sens.insert((i, p), int8.accuracy - c.accuracy);
        }
    }

    // Greedy from all-int8 (or from the most accurate single-layer change when all-int8
    // already breaks the constraint): the move with the best gain per expected accuracy loss.
    let mut current = int8_layers.clone();
    if !met(&int8) {
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
            let c = probe(&mut session, &mut tried, &current, on_event)?;
            if met(&c) {
                break;
            }
        }
    }
    let value = |layers: &[(String, Precision)]| -> f64 {
        match cfg.objective {
            Objective::Size => bytes_of(layers).bytes as f64,
            Objective::Latency => table.estimate(layers),
        }
    };
    let moved = |layers: &[(String, Precision)], moves: &[(usize, Precision)]| {
        let mut m = layers.to_vec();
        for &(i, p) in moves {
            m[i].1 = p;
        }
        m
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
                let g = value(&current) - value(&moved(&current, &[(i, p)]));
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
        let next = moved(&current, &[(i, p)]);
        if met(&probe(&mut session, &mut tried, &next, on_event)?) {
            current = next;
        } else {
            rejected.push((i, p));
        }
    }

    // Pair moves: a layer down to a precision that failed alone, another layer up one step,
    // when the pair still gains; the largest gain first. Each pair is evaluated once.
    let up_one = |p: Precision| -> Option<Precision> {
        let order = [
            Precision::Int4,
            Precision::Int8,
            Precision::Fp16,
            Precision::Fp32,
        ];
        let at = order.iter().position(|q| *q == p)?;
        order[at + 1..]
            .iter()
            .copied()
            .find(|q| cfg.candidates.contains(q))
    };
    let mut pairs_done: Vec<Vec<(String, Precision)>> = Vec::new();
    loop {
        if over() {
            break;
        }
        let mut best: Option<(f64, Vec<(String, Precision)>)> = None;
        for &(i, p) in &rejected {
            if current[i].1 == p {
                continue;
            }
            for &j in free.iter().filter(|&&j| j != i) {
                let Some(up) = up_one(current[j].1) else {
                    continue;
                };
                let next = moved(&current, &[(i, p), (j, up)]);
                let g = value(&current) - value(&next);
                if g <= 0.0 || pairs_done.contains(&next) {
                    continue;
                }
                if best.as_ref().is_none_or(|(bg, _)| g > *bg) {
                    best = Some((g, next));
                }
            }
        }
        let Some((_, next)) = best else { break };
        pairs_done.push(next.clone());
        if met(&probe(&mut session, &mut tried, &next, on_event)?) {
            current = next;
        }
    }

    mark_front(&mut tried);
    // The chosen plan and all-int8 measured in the same run (each with the float model).
    let measure =
        |session: &mut PlanSession, layers: &[(String, Precision)]| -> Option<PlanLatency> {
            let plan = with_precisions(d.base, layers);
            let never = AtomicBool::new(false);
            session
                .calibrate(&plan, d.calib, d.norm, calib_n, 256, &never, &mut |_, _| {})
                .ok()?;
            let ptq = session.ptq(&plan).ok()?;
            plan_latency(&ptq.folded, &ptq.prepared.graph, &cfg.latency, &never).ok()
        };
    // Per-layer rows do not add up exactly (int/float conversions between layers, cache
    // effects): for the latency objective the estimated-fastest plans within the drop are
    // measured and the fastest measured one wins.
    if cfg.objective == Objective::Latency {
        let mut finalists: Vec<usize> = (0..tried.len()).filter(|&i| met(&tried[i])).collect();
        finalists.sort_by(|&a, &b| tried[a].latency_est_us.total_cmp(&tried[b].latency_est_us));
        finalists.truncate(FINALISTS);
        let int8_at = tried.iter().position(|c| c.layers == int8_layers);
        if let Some(k) = int8_at.filter(|k| !finalists.contains(k)) {
            finalists.push(k);
        }
        for i in finalists {
            tried[i].latency_us = measure(&mut session, &tried[i].layers)
                .map(|l| l.int_us * table.float_us / l.float_us.max(1e-9));
        }
        mark_front(&mut tried);
    }
    let (chosen, constraint_met) = choose(&tried, cfg);
    let chosen_latency = measure(&mut session, &tried[chosen].layers);
    let int8_latency = measure(&mut session, &int8_layers);
    let chosen_as_plan = with_precisions(d.base, &tried[chosen].layers);
    let never = AtomicBool::new(false);
    session.calibrate(
        &chosen_as_plan,
        d.calib,
        d.norm,
        calib_n,
        256,
        &never,
        &mut |_, _| {},
    )?;
    let chosen_plan = session.ptq(&chosen_as_plan)?.plan;
    let memory = SearchMemory {
        tried: tried.clone(),
        table,
        float_accuracy,
        base: Some(d.base.clone()),
        calib_samples: cfg.calib_samples,
        eval_samples: cfg.eval_samples,
    };
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
        resumed_plans,
        memory,
        tried,
    })
}

/// Per-layer latency rows per precision, from uniform plans (fp32 rows are the float
/// model's, measured beside int8).
fn latency_table(
    session: &mut PlanSession,
    d: &SearchData<'_>,
    cfg: &SearchConfig,
    uniform: &dyn Fn(Precision) -> Vec<(String, Precision)>,
    calib_n: usize,
    stop: &AtomicBool,
) -> Result<LatencyTable, QuantError> {
    let mut table = LatencyTable::default();
    let mut float_rows = Vec::new();
    for &p in cfg.candidates.iter().filter(|p| **p != Precision::Fp32) {
        let plan = with_precisions(d.base, &uniform(p));
        session.calibrate(&plan, d.calib, d.norm, calib_n, 256, stop, &mut |_, _| {})?;
        let ptq = session.ptq(&plan)?;
        let l = plan_latency(&ptq.folded, &ptq.prepared.graph, &cfg.latency, stop)
            .map_err(|e| QuantError::Structure(format!("measuring the latency: {e}")))?;
        for r in &l.layers {
            table.rows.insert((r.layer.clone(), p), r.int_us);
        }
        if p == Precision::Int8 {
            table.other_us = l.other_int_us;
            table.float_us = l.float_us;
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
    Ok(table)
}
