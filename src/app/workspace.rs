//! The workspace: what the studio knows about the quantization of the model on screen. The
//! [`QuantPlan`] is the one object the window edits; around it sit the cached analysis results
//! (the latest plan evaluation with its per-layer SQNR and histograms, the sensitivity sweep,
//! the measured latency, a clip-range what-if) and the selection. Knows nothing of egui and
//! starts no thread: [`Workspace::apply`] changes it and returns the [`Effect`]s (work to start)
//! that the studio's job bridge carries out; job results come back through the `on_*` methods.
//! Every result is tagged with the plan revision it was computed for, so the window can show a
//! stale number grey while its replacement is computed.

use crate::analysis::clip::RangeStats;
use crate::analysis::sensitivity::{LayerSensitivity, SensitivityEvent, SweepMode};
use crate::bench::latency::PlanLatency;
use crate::jobs::analysis::{Evaluated, TensorRole};
use crate::quant::plan::{Granularity, LayerPlan, Precision, QuantPlan};
use crate::quant::{Observer, PointRange};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Instant;

/// Images the what-if evaluates on by default (the start of the test split).
pub const DEFAULT_EVAL_SAMPLES: usize = 1000;
/// Calibration images by default (the start of the training split).
pub const DEFAULT_CALIB_SAMPLES: usize = 1000;

/// Which layers a bulk edit touches.
#[derive(Clone, Debug, PartialEq)]
pub enum Target {
    All,
    Layers(Vec<String>),
}

/// One change to the plan (a layer row's selector or a bulk action).
#[derive(Clone, Debug, PartialEq)]
pub enum PlanEdit {
    Weights(Precision),
    Activations(Precision),
    Granularity(Granularity),
    ActivationObserver(Observer),
    /// Keep in fp32 (or quantize again) without losing the other settings.
    Excluded(bool),
}

/// A typed request of a quantization panel.
#[derive(Clone, Debug, PartialEq)]
pub enum PlanCommand {
    Edit(Target, PlanEdit),
    /// Back to the default plan.
    Reset,
    Select(String),
    Samples {
        eval: usize,
        calib: usize,
    },
    /// Calibrate and evaluate the current plan again now.
    Recalibrate,
    Sweep(SweepSettings),
    CancelSweep,
    /// Keep the `n` most sensitive layers at `keep`, the swept precision elsewhere.
    KeepSensitive {
        n: usize,
        keep: Precision,
    },
    MeasureLatency,
    /// Search per-layer precisions (Search tab).
    Search(super::search_state::SearchSettings),
    /// Continue the last search with these settings (another budget, drop or objective):
    /// its evaluated plans are kept and not evaluated again.
    ResumeSearch(super::search_state::SearchSettings),
    /// Stop the search; its front stays.
    StopSearch,
    /// Make the search's evaluated plan `n` the current plan.
    UseSearched(usize),
    /// Clip-range what-if while dragging (nothing changes in the plan).
    DragRange {
        layer: String,
        role: TensorRole,
        min: f32,
        max: f32,
    },
    /// Write a hand-set range into the plan.
    ApplyRange {
        layer: String,
        role: TensorRole,
        min: f32,
        max: f32,
    },
}

/// Settings of a sensitivity sweep in the window.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct SweepSettings {
    pub mode: SweepMode,
    /// Weights precision of the swept plan (int8, int4) and whether activations go to int4.
    pub weights: Precision,
    pub a4: bool,
    pub samples: usize,
}

impl Default for SweepSettings {
    fn default() -> Self {
        SweepSettings {
            mode: SweepMode::Only,
            weights: Precision::Int4,
            a4: false,
            samples: 500,
        }
    }
}

impl SweepSettings {
    /// The plan the sweep quantizes: every layer of `base` at the sweep's precision.
    pub fn plan(&self, base: &QuantPlan) -> QuantPlan {
        let mut p = base.clone();
        p.ranges.clear();
        for l in &mut p.layers {
            l.precision = self.weights;
            l.excluded = false;
            l.activations = if self.a4 {
                Precision::Int4
            } else {
                Precision::Int8
            };
        }
        p
    }

    /// Short label ("int4 weights", "W4A4").
    pub fn label(&self) -> String {
        match (self.weights, self.a4) {
            (Precision::Int4, true) => "W4A4".into(),
            (p, _) => format!("{} weights", p.name()),
        }
    }
}

/// What the workspace asks the studio to start.
#[derive(Clone, Debug, PartialEq)]
pub enum Effect {
    /// Evaluate the current plan (revision `rev`) on the plan worker.
    Evaluate {
        rev: u64,
    },
    /// Run a sensitivity sweep of this plan.
    Sweep {
        plan: QuantPlan,
        settings: SweepSettings,
    },
    CancelSweep,
    /// Run a mixed-precision search from this plan.
    Search {
        plan: QuantPlan,
        settings: super::search_state::SearchSettings,
        resume: Option<crate::analysis::search::SearchMemory>,
    },
    StopSearch,
    /// Measure the latency of the evaluated plan.
    Latency,
    /// Clip-range what-if for a histogram drag.
    Range {
        layer: String,
        role: TensorRole,
        min: f32,
        max: f32,
    },
}

/// The clip-range what-if of one layer tensor.
#[derive(Clone, Debug, PartialEq)]
pub struct RangeView {
    pub layer: String,
    pub role: TensorRole,
    pub stats: RangeStats,
    /// The range each observer kind picks from the same histogram.
    pub observers: Vec<(String, (f32, f32))>,
}

/// Which of the workspace's jobs run now (read from the job bridge each frame, never stored).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PlanBusy {
    pub sweep: bool,
    pub latency: bool,
    pub search: bool,
}

/// A hand-set range of one layer tensor (as a project stores it).
pub use crate::project::file::PinnedRange as Pin;

/// A result and the plan revision it belongs to.
#[derive(Clone, Debug)]
pub struct Tagged<T> {
    pub rev: u64,
    pub value: T,
}

/// The sensitivity sweep on screen.
#[derive(Clone, Debug, Default)]
pub struct SweepView {
    pub settings: Option<SweepSettings>,
    pub cached: bool,
    pub float_accuracy: Option<f64>,
    pub quantized_accuracy: Option<f64>,
    /// Rows by layer name, filled as they arrive.
    pub rows: BTreeMap<String, LayerSensitivity>,
    pub error: Option<String>,
}

/// The quantization workspace of the model on screen.
#[derive(Clone, Debug, Default)]
pub struct Workspace {
    /// The model the plan belongs to (its session id), 0 for none.
    pub model_id: u64,
    /// The plan the window edits (`None`: no model, or one the tools cannot quantize).
    pub plan: Option<QuantPlan>,
    /// The default plan of the model (x86 int8), for "reset".
    pub default_plan: Option<QuantPlan>,
    /// Why there is no plan (e.g. the model is already quantized).
    pub blocked: Option<String>,
    /// Increases with every edit of the plan or of the evaluation settings.
    pub rev: u64,
    pub eval_samples: usize,
    pub calib_samples: usize,
    pub selected: Option<String>,
    /// The latest finished evaluation and the revision it was made for.
    pub eval: Option<Tagged<Evaluated>>,
    /// The revision being evaluated, and since when (for the click-to-screen time).
    pub pending: Option<(u64, Instant)>,
    /// Calibration progress of the pending evaluation: (done, total) images.
    pub calibrating: Option<(usize, usize)>,
    pub eval_error: Option<String>,
    /// Click-to-result times of what-if evaluations this session (seconds).
    pub whatif_seconds: Vec<f64>,
    pub sweep: SweepView,
    pub latency: Option<Tagged<Arc<PlanLatency>>>,
    /// Accuracy and images of the plan converted to the integer runtime (or why not).
    pub integer: Option<Tagged<Result<(f64, usize), String>>>,
    pub latency_error: Option<String>,
    /// The clip-range what-if of the histogram drag.
    pub range: Option<RangeView>,
    /// Ranges set by hand (histogram "Apply"), each owned by a layer tensor.
    pub pins: Vec<Pin>,
    /// The mixed-precision search (Search tab).
    pub search: super::search_state::SearchView,
}

impl Workspace {
    /// A workspace for model `id` with `plan` as its default (or why it has none).
    pub fn for_model(id: u64, plan: Result<QuantPlan, String>) -> Workspace {
        let (plan, blocked) = match plan {
            Ok(p) => (Some(p), None),
            Err(e) => (None, Some(e)),
        };
        Workspace {
            model_id: id,
            default_plan: plan.clone(),
            selected: plan
                .as_ref()
                .and_then(|p| p.layers.first())
                .map(|l| l.layer.clone()),
            plan,
            blocked,
            rev: 1,
            eval_samples: DEFAULT_EVAL_SAMPLES,
            calib_samples: DEFAULT_CALIB_SAMPLES,
            ..Workspace::default()
        }
    }

    /// Applies a panel's command; returns the work to start (or why it cannot act).
    pub fn apply(&mut self, cmd: PlanCommand) -> Result<Vec<Effect>, String> {
        if self.plan.is_none() && !matches!(cmd, PlanCommand::Select(_)) {
            return Err(self
                .blocked
                .clone()
                .unwrap_or_else(|| "no model with a plan is open".into()));
        }
        Ok(match cmd {
            PlanCommand::Edit(target, edit) => self.edit(&target, &edit),
            PlanCommand::Reset => self.reset(),
            PlanCommand::Select(name) => {
                self.selected = Some(name);
                Vec::new()
            }
            PlanCommand::Samples { eval, calib } => self.set_samples(eval, calib),
            PlanCommand::Recalibrate => self.touch(),
            PlanCommand::Sweep(s) => self.start_sweep(s),
            PlanCommand::CancelSweep => vec![Effect::CancelSweep],
            PlanCommand::Search(st) => self.start_search(st),
            PlanCommand::ResumeSearch(st) => self.resume_search(st)?,
            PlanCommand::StopSearch => vec![Effect::StopSearch],
            PlanCommand::UseSearched(i) => self.use_candidate(i)?,
            PlanCommand::KeepSensitive { n, keep } => {
                if self.sweep.rows.is_empty() {
                    return Err("run a sensitivity sweep first".into());
                }
                self.keep_sensitive(n, keep)
            }
            PlanCommand::MeasureLatency => {
                if self.current_eval().is_none() {
                    return Err("the current plan is still being evaluated".into());
                }
                vec![Effect::Latency]
            }
            PlanCommand::DragRange {
                layer,
                role,
                min,
                max,
            } => vec![Effect::Range {
                layer,
                role,
                min,
                max,
            }],
            PlanCommand::ApplyRange {
                layer,
                role,
                min,
                max,
            } => {
                let r = self.hand_range(&layer, role, min, max)?;
                self.pin_range(&layer, role, r)
            }
        })
    }

    /// The frozen range of a layer tensor in the evaluated plan, with `min`/`max` set by hand
    /// (per-tensor grids only; a per-channel weight range is one range per channel).
    pub fn hand_range(
        &self,
        layer: &str,
        role: TensorRole,
        min: f32,
        max: f32,
    ) -> Result<PointRange, String> {
        let ev = self
            .current_eval()
            .ok_or("the current plan is still being evaluated")?;
        let ptq = &ev.eval.ptq;
        let pi = crate::jobs::analysis::layer_point(ptq, layer, role)?;
        let name = &ptq.points.points[pi].name;
        let r = ptq
            .plan
            .ranges
            .iter()
            .find(|r| &r.point == name)
            .ok_or_else(|| format!("'{name}' has no integer range"))?;
        r.with_range(min, max).map_err(|e| e.to_string())
    }

    /// The plan of a layer, if the plan covers it.
    pub fn layer_plan(&self, name: &str) -> Option<&LayerPlan> {
        self.plan.as_ref()?.layer(name)
    }

    /// The latest evaluation if it is of the current plan.
    pub fn current_eval(&self) -> Option<&Evaluated> {
        self.eval
            .as_ref()
            .filter(|t| t.rev == self.rev)
            .map(|t| &t.value)
    }

    /// Whether an evaluation of the current plan is under way.
    pub fn is_evaluating(&self) -> bool {
        self.pending.is_some()
    }

    /// Edits the plan; the edited plan is then re-evaluated.
    pub fn edit(&mut self, target: &Target, edit: &PlanEdit) -> Vec<Effect> {
        let Some(plan) = self.plan.as_mut() else {
            return Vec::new();
        };
        let mut changed = false;
        for l in plan.layers.iter_mut().filter(|l| match target {
            Target::All => true,
            Target::Layers(names) => names.contains(&l.layer),
        }) {
            let before = l.clone();
            match *edit {
                PlanEdit::Weights(p) => {
                    l.precision = p;
                    l.excluded = false;
                }
                PlanEdit::Activations(p) => l.activations = p,
                PlanEdit::Granularity(g) => l.weight_granularity = g,
                PlanEdit::ActivationObserver(o) => l.activation_observer = o,
                PlanEdit::Excluded(x) => l.excluded = x,
            }
            if *l != before {
                changed = true;
                // A pinned range no longer fits a changed layer.
                self.pins.retain(|p| p.layer != l.layer);
            }
        }
        if changed { self.touch() } else { Vec::new() }
    }

    /// Back to the model's default plan.
    pub fn reset(&mut self) -> Vec<Effect> {
        if self.default_plan.is_none() || self.plan == self.default_plan {
            return Vec::new();
        }
        self.plan = self.default_plan.clone();
        self.pins.clear();
        self.touch()
    }

    /// Replaces the whole plan (e.g. "keep the N most sensitive layers").
    pub fn set_plan(&mut self, plan: QuantPlan) -> Vec<Effect> {
        if self.plan.as_ref() == Some(&plan) {
            return Vec::new();
        }
        let old = self.plan.replace(plan);
        let new = self.plan.as_ref().expect("just set");
        // Pins of layers whose plan changed no longer fit.
        self.pins
            .retain(|p| old.as_ref().and_then(|o| o.layer(&p.layer)) == new.layer(&p.layer));
        self.touch()
    }

    /// Changes the number of evaluation or calibration images.
    pub fn set_samples(&mut self, eval: usize, calib: usize) -> Vec<Effect> {
        let (eval, calib) = (eval.max(1), calib.max(1));
        if (eval, calib) == (self.eval_samples, self.calib_samples) {
            return Vec::new();
        }
        self.eval_samples = eval;
        self.calib_samples = calib;
        self.touch()
    }

    /// Takes a saved plan, its hand-set ranges and sample counts (an opened project); the plan
    /// must cover exactly the model's quantizable layers. Evaluates it.
    pub fn restore(
        &mut self,
        plan: QuantPlan,
        pins: Vec<Pin>,
        samples: crate::project::file::Calibration,
    ) -> Result<Vec<Effect>, String> {
        let Some(default) = &self.default_plan else {
            return Err(self
                .blocked
                .clone()
                .unwrap_or_else(|| "the model has no plan".into()));
        };
        let names = |p: &QuantPlan| {
            let mut v: Vec<String> = p.layers.iter().map(|l| l.layer.clone()).collect();
            v.sort();
            v
        };
        let (want, have) = (names(default), names(&plan));
        if want != have {
            let missing = want.iter().find(|n| !have.contains(n));
            let extra = have.iter().find(|n| !want.contains(n));
            return Err(match (missing, extra) {
                (_, Some(e)) => format!("the model has no layer '{e}'"),
                (Some(m), None) => format!("the plan does not cover layer '{m}'"),
                (None, None) => "its layers differ".into(),
            });
        }
        if let Some(p) = pins.iter().find(|p| !want.contains(&p.layer)) {
            return Err(format!(
                "a hand-set range names no layer of the model ('{}')",
                p.layer
            ));
        }
        let mut plan = plan;
        plan.ranges.clear();
        self.plan = Some(plan);
        self.pins = pins;
        self.eval_samples = samples.eval_samples.max(1);
        self.calib_samples = samples.calib_samples.max(1);
        Ok(self.touch())
    }

    /// Shows a saved sensitivity table (an opened project) until a new sweep runs.
    pub fn restore_sweep(&mut self, s: &crate::project::file::SweepFigures) {
        self.sweep = SweepView {
            settings: Some(SweepSettings {
                mode: s.mode,
                weights: s.weights,
                a4: s.a4,
                samples: s.samples,
            }),
            cached: true,
            float_accuracy: s.float_accuracy,
            quantized_accuracy: s.quantized_accuracy,
            rows: s
                .rows
                .iter()
                .map(|r| (r.layer.clone(), r.clone()))
                .collect(),
            error: None,
        };
    }

    /// Pins a hand-set range of a layer tensor (from the histogram drag); it holds until that
    /// layer's plan changes.
    pub fn pin_range(&mut self, layer: &str, role: TensorRole, range: PointRange) -> Vec<Effect> {
        if self.plan.is_none() {
            return Vec::new();
        }
        self.pins.retain(|p| !(p.layer == layer && p.role == role));
        self.pins.push(Pin {
            layer: layer.to_string(),
            role,
            range,
        });
        self.range = None;
        self.touch()
    }

    /// The plan to evaluate: the edited plan with the pinned ranges as its fixed ranges.
    pub fn plan_to_evaluate(&self) -> Option<QuantPlan> {
        let mut p = self.plan.clone()?;
        p.ranges = self.pins.iter().map(|p| p.range.clone()).collect();
        Some(p)
    }

    /// A new revision: everything computed so far is stale; evaluate again.
    fn touch(&mut self) -> Vec<Effect> {
        self.rev += 1;
        self.latency_error = None;
        vec![Effect::Evaluate { rev: self.rev }]
    }

    /// The evaluation of `rev` was sent to the worker at `at`.
    pub fn on_eval_started(&mut self, rev: u64, at: Instant) {
        self.pending = Some((rev, at));
        self.calibrating = None;
        self.eval_error = None;
    }

    /// An evaluation finished. Returns follow-up work (latency of the new plan).
    pub fn on_evaluated(&mut self, rev: u64, e: Evaluated, now: Instant) -> Vec<Effect> {
        if let Some((r, at)) = self.pending
            && r == rev
        {
            self.whatif_seconds
                .push(now.duration_since(at).as_secs_f64());
            self.pending = None;
            self.calibrating = None;
        }
        self.eval = Some(Tagged { rev, value: e });
        if rev == self.rev {
            vec![Effect::Latency]
        } else {
            Vec::new()
        }
    }

    /// An evaluation failed or was cancelled.
    pub fn on_eval_failed(&mut self, rev: u64, message: Option<String>) {
        if self.pending.is_some_and(|(r, _)| r == rev) {
            self.pending = None;
            self.calibrating = None;
            self.eval_error = message;
        }
    }

    /// A sensitivity event.
    pub fn on_sweep_event(&mut self, e: SensitivityEvent) {
        match e {
            SensitivityEvent::Baseline {
                float_accuracy,
                quantized,
            } => {
                self.sweep.float_accuracy = Some(float_accuracy);
                self.sweep.quantized_accuracy = Some(quantized.accuracy);
            }
            SensitivityEvent::Layer(row) => {
                self.sweep.rows.insert(row.layer.clone(), row);
            }
        }
    }

    /// Starts a sweep with `settings` on the current plan.
    pub fn start_sweep(&mut self, settings: SweepSettings) -> Vec<Effect> {
        let Some(plan) = &self.plan else {
            return Vec::new();
        };
        let plan = settings.plan(plan);
        self.sweep = SweepView {
            settings: Some(settings),
            ..SweepView::default()
        };
        vec![Effect::Sweep { plan, settings }]
    }

    /// The layers ranked by sensitivity, most sensitive first (the only-this-layer drop, or
    /// the all-but gain when only that mode ran).
    pub fn ranked_layers(&self) -> Vec<(String, f64)> {
        let mut v: Vec<(String, f64)> = self
            .sweep
            .rows
            .values()
            .filter_map(|r| {
                r.only_drop_pp
                    .or(r.all_but_gain_pp)
                    .map(|d| (r.layer.clone(), d))
            })
            .collect();
        v.sort_by(|a, b| b.1.total_cmp(&a.1));
        v
    }

    /// "Keep the `n` most sensitive layers at `keep`": the swept precision everywhere else.
    pub fn keep_sensitive(&mut self, n: usize, keep: Precision) -> Vec<Effect> {
        let (Some(plan), Some(settings)) = (&self.plan, self.sweep.settings) else {
            return Vec::new();
        };
        let ranked = self.ranked_layers();
        let mut p = settings.plan(plan);
        for (name, _) in ranked.iter().take(n) {
            if let Some(l) = p.layer_mut(name) {
                l.precision = keep;
                l.activations = Precision::Int8;
            }
        }
        self.set_plan(p)
    }

    /// Median and 90th percentile of the click-to-result times so far.
    pub fn whatif_percentiles(&self) -> Option<(f64, f64, usize)> {
        if self.whatif_seconds.is_empty() {
            return None;
        }
        let mut v = self.whatif_seconds.clone();
        let p50 = crate::bench::percentile(&mut v, 0.5);
        Some((p50, crate::bench::percentile(&mut v, 0.9), v.len()))
    }
}

#[cfg(test)]
mod tests;
