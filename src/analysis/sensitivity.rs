//! Sensitivity ablation: how much accuracy each layer costs when quantized.
//!
//! Two modes per layer of the plan: **only** this layer quantized (everything else float) and
//! **all but** this layer quantized. One calibration pass serves every variant (observers are
//! shared per value), the float logits are computed once, and the variants are evaluated in
//! parallel with rayon. Each finished variant is reported at once through `on_event`, so a
//! UI can fill in bars as they come; a stop flag cancels between batches; results are cached by
//! (model, plan, data, settings) so a repeat is instant.
//!
//! Reported per layer: accuracy and logit SQNR in each mode, the drop versus float (only) and the
//! gain versus the fully quantized model (all but), and the SQNR of the layer's own output when
//! it alone is quantized (measured on the first evaluation batch). Depends on `data`, `graph`,
//! `ops`, `quant`, `analysis::{cache, sqnr}`.

use super::cache::{ResultCache, combine, data_key, model_key, plan_key};
use super::sqnr::{Sqnr, finite_db};
use crate::data::{Dataset, Loader, Normalization};
use crate::graph::{Graph, GraphError, ValueId};
use crate::ops::loss::softmax_cross_entropy;
use crate::quant::exec::run_tapped;
use crate::quant::points::{QuantPoints, all_but_layer, only_layer, plan_points};
use crate::quant::{Calibrator, QuantError, QuantPlan, fold_batchnorm, prepare};
use crate::tensor::{Tensor, slice};
use rayon::prelude::*;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

/// Which ablations to run.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, clap::ValueEnum)]
pub enum SweepMode {
    /// Only this layer quantized.
    Only,
    /// Every layer but this one quantized.
    AllBut,
    Both,
}

/// Settings of a sweep.
#[derive(Clone, Debug, PartialEq)]
pub struct SweepConfig {
    pub mode: SweepMode,
    /// Evaluation images (the first ones of the evaluation set).
    pub samples: usize,
    /// Calibration images (the first ones of the calibration set).
    pub calib_samples: usize,
    pub batch: usize,
}

/// Accuracy and logit SQNR of one variant.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, serde::Deserialize)]
pub struct Outcome {
    pub accuracy: f64,
    pub output_sqnr_db: Option<f64>,
}

/// One layer's row.
#[derive(Clone, Debug, PartialEq, Serialize, serde::Deserialize)]
pub struct LayerSensitivity {
    pub layer: String,
    pub op: String,
    pub only: Option<Outcome>,
    /// Float accuracy minus only-this-layer accuracy, in percentage points.
    pub only_drop_pp: Option<f64>,
    pub all_but: Option<Outcome>,
    /// All-but-this-layer accuracy minus all-layers accuracy, in percentage points.
    pub all_but_gain_pp: Option<f64>,
    /// SQNR (dB) of the layer's output when it alone is quantized (first batch).
    pub layer_sqnr_db: Option<f64>,
}

/// A whole sweep.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct SensitivityReport {
    pub float_accuracy: f64,
    /// Every layer of the plan quantized.
    pub quantized: Outcome,
    pub images: usize,
    pub calib_images: usize,
    pub layers: Vec<LayerSensitivity>,
    pub seconds: f64,
}

/// What a sweep reports while it runs.
#[derive(Clone, Debug, PartialEq)]
pub enum SensitivityEvent {
    /// The float model's accuracy and the fully quantized outcome.
    Baseline {
        float_accuracy: f64,
        quantized: Outcome,
    },
    /// A layer's row as known so far (sent after each of its variants).
    Layer(LayerSensitivity),
}

/// Cache of sweeps.
pub type SensitivityCache = ResultCache<SensitivityReport>;

/// The data of a sweep.
pub struct SweepData<'a> {
    pub model: &'a Graph,
    /// The plan at the chosen precision; its quantized layers are swept.
    pub plan: &'a QuantPlan,
    pub calib: &'a Dataset,
    pub eval: &'a Dataset,
    pub norm: &'a Normalization,
}

/// A finished sweep and whether it came from the cache.
pub struct Sweep {
    pub report: Arc<SensitivityReport>,
    pub cached: bool,
}

#[derive(Clone, Copy, PartialEq)]
enum Variant {
    Only(usize),
    AllBut(usize),
}

fn correct(logits: &Tensor, y: &[u32]) -> Result<usize, QuantError> {
    softmax_cross_entropy(logits, y)
        .map(|l| l.correct)
        .map_err(|e| {
            QuantError::Graph(GraphError::Op {
                node: "loss".into(),
                source: e,
            })
        })
}

/// Runs the sweep (see the module doc).
pub fn sensitivity(
    d: &SweepData<'_>,
    cfg: &SweepConfig,
    cache: Option<&SensitivityCache>,
    stop: &AtomicBool,
    on_event: &(dyn Fn(SensitivityEvent) + Sync),
) -> Result<Sweep, QuantError> {
    let key = combine(&[
        model_key(d.model),
        plan_key(d.plan),
        data_key(d.eval, cfg.samples, d.norm),
        data_key(d.calib, cfg.calib_samples, d.norm),
        cfg.mode as u64,
        cfg.batch as u64,
    ]);
    if let Some(report) = cache.and_then(|c| c.get(key)) {
        on_event(SensitivityEvent::Baseline {
            float_accuracy: report.float_accuracy,
            quantized: report.quantized,
        });
        report
            .layers
            .iter()
            .for_each(|l| on_event(SensitivityEvent::Layer(l.clone())));
        return Ok(Sweep {
            report,
            cached: true,
        });
    }
    let start = Instant::now();
    let (folded, _) = fold_batchnorm(d.model)?;
    let base = plan_points(&folded, d.plan)?;
    let swept: Vec<usize> = (0..base.layers.len()).collect();
    let name_of = |li: usize| folded.nodes[base.layers[li].node].name.clone();
    let mut variants: Vec<(Variant, QuantPoints)> = Vec::new();
    for &li in &swept {
        if cfg.mode != SweepMode::AllBut {
            variants.push((
                Variant::Only(li),
                plan_points(&folded, &only_layer(d.plan, &name_of(li)))?,
            ));
        }
        if cfg.mode != SweepMode::Only {
            variants.push((
                Variant::AllBut(li),
                plan_points(&folded, &all_but_layer(d.plan, &name_of(li)))?,
            ));
        }
    }
    // One calibration pass for every variant.
    let calib = d.calib.first(cfg.calib_samples.max(1));
    let mut all: Vec<&QuantPoints> = vec![&base];
    all.extend(variants.iter().map(|v| &v.1));
    let mut cal = Calibrator::new(&all);
    for (x, _) in Loader::new(&calib, d.norm, cfg.batch.max(1), None, false) {
        if stop.load(Ordering::Relaxed) {
            return Err(QuantError::Cancelled);
        }
        cal.observe(&folded, &x)?;
    }
    calib.check()?;
    let eval = d.eval.first(cfg.samples.max(1));
    let batches: Vec<(Tensor, Vec<u32>)> =
        Loader::new(&eval, d.norm, cfg.batch.max(1), None, false).collect();
    eval.check()?;
    let images: usize = batches.iter().map(|b| b.1.len()).sum();
    // Float logits once; the float outputs of every swept layer on the first batch.
    let out_value = |li: usize| -> ValueId {
        let l = &base.layers[li];
        l.activation
            .map_or(folded.nodes[l.node].output, |a| folded.nodes[a].output)
    };
    let want: HashMap<ValueId, usize> = swept.iter().map(|&li| (out_value(li), li)).collect();
    let mut first_float: HashMap<usize, Tensor> = HashMap::new();
    let mut float_logits = Vec::with_capacity(batches.len());
    let mut fc = 0;
    for (bi, (x, y)) in batches.iter().enumerate() {
        let l = run_tapped(&folded, x, &mut |v, t| {
            if let (0, Some(&li)) = (bi, want.get(&v)) {
                first_float.insert(li, t.clone());
            }
        })?;
        fc += correct(&l, y)?;
        float_logits.push(l);
    }
    let float_accuracy = fc as f64 / images.max(1) as f64;
    // Evaluates one variant; `tap_layer` also measures that layer's output SQNR on batch 0.
    let run = |qp: &QuantPoints,
               tap_layer: Option<usize>|
     -> Result<(Outcome, Option<f64>), QuantError> {
        let ranges = cal.ranges(&folded, qp)?;
        let prepared = prepare(&folded, qp, &ranges)?;
        let (mut ok, mut sq, mut layer_sq) = (0usize, Sqnr::default(), Sqnr::default());
        for (bi, (x, y)) in batches.iter().enumerate() {
            if stop.load(Ordering::Relaxed) {
                return Err(QuantError::Cancelled);
            }
            let target = tap_layer
                .filter(|_| bi == 0)
                .and_then(|li| prepared.value_map[out_value(li)].map(|v| (li, v)));
            let logits = match target {
                Some((li, tv)) => run_tapped(&prepared.graph, x, &mut |v, t| {
                    if let (true, Some(f)) = (v == tv, first_float.get(&li)) {
                        layer_sq.add(slice(f), slice(t));
                    }
                })?,
                None => prepared.graph.infer(x)?,
            };
            ok += correct(&logits, y)?;
            sq.add(slice(&float_logits[bi]), slice(&logits));
        }
        let o = Outcome {
            accuracy: ok as f64 / images.max(1) as f64,
            output_sqnr_db: finite_db(sq.db()),
        };
        Ok((o, tap_layer.and_then(|_| finite_db(layer_sq.db()))))
    };
    let (quantized, _) = run(&base, None)?;
    on_event(SensitivityEvent::Baseline {
        float_accuracy,
        quantized,
    });
    let pp = |a: f64, b: f64| (a - b) * 100.0;
    let rows: Mutex<Vec<LayerSensitivity>> = Mutex::new(
        swept
            .iter()
            .map(|&li| LayerSensitivity {
                layer: name_of(li),
                op: folded.nodes[base.layers[li].node].op.name().to_string(),
                only: None,
                only_drop_pp: None,
                all_but: None,
                all_but_gain_pp: None,
                layer_sqnr_db: None,
            })
            .collect(),
    );
    variants
        .par_iter()
        .try_for_each(|(variant, qp)| -> Result<(), QuantError> {
            let tap = match variant {
                Variant::Only(li) => Some(*li),
                Variant::AllBut(_) => None,
            };
            let (o, layer_db) = run(qp, tap)?;
            let row = {
                let mut rows = rows.lock().map_err(|_| QuantError::Cancelled)?;
                let (Variant::Only(li) | Variant::AllBut(li)) = *variant;
                let r = &mut rows[li];
                match variant {
                    Variant::Only(_) => {
                        r.only = Some(o);
                        r.only_drop_pp = Some(pp(float_accuracy, o.accuracy));
                        r.layer_sqnr_db = layer_db;
                    }
                    Variant::AllBut(_) => {
                        r.all_but = Some(o);
                        r.all_but_gain_pp = Some(pp(o.accuracy, quantized.accuracy));
                    }
                }
                r.clone()
            };
            on_event(SensitivityEvent::Layer(row));
            Ok(())
        })?;
    let report = Arc::new(SensitivityReport {
        float_accuracy,
        quantized,
        images,
        calib_images: calib.len(),
        layers: rows.into_inner().map_err(|_| QuantError::Cancelled)?,
        seconds: start.elapsed().as_secs_f64(),
    });
    if let Some(c) = cache {
        c.insert(key, report.clone());
    }
    Ok(Sweep {
        report,
        cached: false,
    })
}
