//! The bridge between the [`Workspace`] and the background jobs that serve it: it starts the
//! plan worker of the model on screen, turns the workspace's [`Effect`]s into requests and jobs
//! (what-if evaluation, sensitivity sweep, latency, clip ranges), and folds their typed events
//! back into the workspace within the frame. Evaluation requests carry a cancel flag: a new
//! edit cancels the evaluation in flight. Nothing here computes tensors or blocks.

use super::workspace::{Effect, PlanBusy, Tagged, Workspace};
use crate::analysis::sensitivity::{SensitivityCache, SweepConfig};
use crate::bench::latency::LatencyConfig;
use crate::data::Dataset;
use crate::io::Model;
use crate::jobs::analysis::{CancelSlot, PlanData, PlanEvent, PlanRequest, PlanWorker};
use crate::jobs::{IntegerCheck, Job, JobEvent, Waker};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

/// What the plan jobs read from the studio each time they start work.
pub struct Inputs<'a> {
    pub model: Option<(u64, &'a Arc<Model>)>,
    pub train: Option<&'a Arc<Dataset>>,
    pub test: Option<&'a Arc<Dataset>>,
}

/// The plan worker, the sweep and the latency job of the studio.
#[derive(Default)]
pub struct PlanJobs {
    worker: Option<(u64, PlanWorker)>,
    next_ticket: u64,
    /// Evaluation tickets → plan revisions.
    evals: HashMap<u64, u64>,
    eval_cancel: CancelSlot,
    /// The latest range request (older answers are ignored).
    range_ticket: u64,
    sweep: Option<Job>,
    sweep_cache: Arc<SensitivityCache>,
    latency: Option<(u64, Job)>,
    search: Option<Job>,
    /// An evaluation that waits for the data to load.
    deferred: bool,
}

impl PlanJobs {
    /// Whether a job of the workspace runs (the window then animates progress).
    pub fn is_busy(&self) -> bool {
        !self.evals.is_empty()
            || self.sweep.is_some()
            || self.latency.is_some()
            || self.search.is_some()
    }

    /// Which of the workspace's jobs run.
    pub fn busy(&self) -> PlanBusy {
        PlanBusy {
            sweep: self.sweep.is_some(),
            latency: self.latency.is_some(),
            search: self.search.is_some(),
        }
    }

    /// The data an evaluation needs, or why it cannot run yet.
    fn plan_data(ws: &Workspace, inp: &Inputs<'_>) -> Result<PlanData, String> {
        let (_, model) = inp.model.ok_or("no model is open")?;
        let train = inp
            .train
            .ok_or("the training set (calibration images) is not loaded")?;
        let test = inp.test.ok_or("the test set is not loaded")?;
        super::state::check_fit(model, test)?;
        Ok(PlanData {
            calib: train.clone(),
            eval: test.clone(),
            norm: model.meta.normalization.clone(),
            calib_samples: ws.calib_samples,
            eval_samples: ws.eval_samples,
        })
    }

    /// The plan worker of the model on screen, started on first use.
    fn worker(&mut self, inp: &Inputs<'_>, waker: &Waker) -> Result<&PlanWorker, String> {
        let (id, model) = inp.model.ok_or("no model is open")?;
        if self.worker.as_ref().is_none_or(|(wid, _)| *wid != id) {
            self.eval_cancel.cancel();
            self.evals.clear();
            let w = PlanWorker::start(model.clone(), waker.clone())
                .map_err(|e| format!("cannot start the plan worker: {e}"))?;
            self.worker = Some((id, w));
        }
        Ok(&self.worker.as_ref().expect("just set").1)
    }

    /// Carries out the workspace's effects.
    pub fn run(
        &mut self,
        effects: Vec<Effect>,
        ws: &mut Workspace,
        inp: &Inputs<'_>,
        waker: &Waker,
    ) {
        for e in effects {
            match e {
                Effect::Evaluate { rev } => self.evaluate(rev, ws, inp, waker),
                Effect::Sweep { plan, settings } => {
                    if let Some(j) = self.sweep.take() {
                        j.stop();
                    }
                    let started = Self::plan_data(ws, inp).and_then(|d| {
                        let (_, model) = inp.model.ok_or("no model is open")?;
                        let cfg = SweepConfig {
                            mode: settings.mode,
                            samples: settings.samples.min(d.eval.len()),
                            calib_samples: ws.calib_samples.min(d.calib.len()),
                            batch: 250,
                        };
                        // The sweep takes the first images itself: no copy of the data here.
                        Job::sensitivity(
                            model.clone(),
                            plan,
                            d.calib,
                            d.eval,
                            d.norm,
                            cfg,
                            self.sweep_cache.clone(),
                            waker.clone(),
                        )
                        .map_err(|e| format!("cannot start the sweep: {e}"))
                    });
                    match started {
                        Ok(j) => self.sweep = Some(j),
                        Err(msg) => {
                            ws.sweep.error = Some(msg);
                        }
                    }
                }
                Effect::CancelSweep => {
                    if let Some(j) = &self.sweep {
                        j.stop();
                    }
                }
                Effect::Latency => self.latency(ws, inp, waker),
                Effect::Search {
                    plan,
                    settings,
                    resume,
                } => {
                    if let Some(j) = self.search.take() {
                        j.stop();
                    }
                    let started = Self::plan_data(ws, inp).and_then(|d| {
                        let (_, model) = inp.model.ok_or("no model is open")?;
                        let cfg = settings.config(ws.calib_samples, ws.eval_samples);
                        Job::search(
                            model.clone(),
                            plan,
                            (d.calib, d.eval),
                            cfg,
                            resume,
                            waker.clone(),
                        )
                        .map_err(|e| format!("cannot start the search: {e}"))
                    });
                    match started {
                        Ok(j) => self.search = Some(j),
                        Err(msg) => ws.search.error = Some(msg),
                    }
                }
                Effect::StopSearch => {
                    if let Some(j) = &self.search {
                        j.stop();
                    }
                }
                Effect::Range {
                    layer,
                    role,
                    min,
                    max,
                } => {
                    self.next_ticket += 1;
                    let ticket = self.next_ticket;
                    self.range_ticket = ticket;
                    if let Ok(w) = self.worker(inp, waker) {
                        w.send(PlanRequest::Range {
                            ticket,
                            layer,
                            role,
                            min,
                            max,
                        });
                    }
                }
            }
        }
    }

    fn evaluate(&mut self, rev: u64, ws: &mut Workspace, inp: &Inputs<'_>, waker: &Waker) {
        let Some(plan) = ws.plan_to_evaluate() else {
            return;
        };
        let data = match Self::plan_data(ws, inp) {
            Ok(d) => d,
            Err(msg) => {
                // Data still loading: try again when it arrives.
                self.deferred = true;
                ws.eval_error = Some(msg);
                return;
            }
        };
        self.deferred = false;
        // A latency measurement of the previous plan would compete for the cores.
        if let Some((_, j)) = self.latency.take() {
            j.stop();
        }
        // The worker first: starting one cancels what was in flight for the previous model.
        if let Err(msg) = self.worker(inp, waker) {
            ws.eval_error = Some(msg);
            return;
        }
        let cancel = self.eval_cancel.renew();
        self.next_ticket += 1;
        let ticket = self.next_ticket;
        let sent = self.worker.as_ref().is_some_and(|(_, w)| {
            w.send(PlanRequest::Evaluate {
                ticket,
                plan,
                data,
                cancel,
            })
        });
        if sent {
            self.evals.insert(ticket, rev);
            ws.on_eval_started(rev, Instant::now());
        } else {
            ws.eval_error = Some("the plan worker has stopped".into());
        }
    }

    fn latency(&mut self, ws: &mut Workspace, inp: &Inputs<'_>, waker: &Waker) {
        let Some(ev) = ws.current_eval() else { return };
        let check = Self::plan_data(ws, inp).ok().map(|d| IntegerCheck {
            data: d.eval,
            norm: d.norm,
            samples: d.eval_samples,
        });
        if let Some((_, j)) = self.latency.take() {
            j.stop();
        }
        let cfg = LatencyConfig {
            batch: 1,
            repeats: 15,
            min_seconds: 0.05,
        };
        match Job::latency(ev.eval.clone(), cfg, check, waker.clone()) {
            Ok(j) => {
                self.latency = Some((ws.rev, j));
            }
            Err(e) => ws.latency_error = Some(format!("cannot start the latency job: {e}")),
        }
    }

    /// Retries an evaluation that waited for data (call when a dataset arrives).
    pub fn retry_deferred(&mut self, ws: &mut Workspace, inp: &Inputs<'_>, waker: &Waker) {
        if self.deferred {
            let rev = ws.rev;
            self.evaluate(rev, ws, inp, waker);
        }
    }

    /// Forgets everything of the previous model (a new one is on screen).
    pub fn reset(&mut self) {
        self.eval_cancel.cancel();
        self.evals.clear();
        self.worker = None;
        if let Some(j) = self.sweep.take() {
            j.stop();
        }
        self.latency = None;
        if let Some(j) = self.search.take() {
            j.stop();
        }
        self.deferred = false;
    }

    /// Applies the events of every job to `ws`; returns the follow-up effects.
    pub fn drain(&mut self, ws: &mut Workspace) -> Vec<Effect> {
        let mut effects = Vec::new();
        let now = Instant::now();
        if let Some((_, w)) = &self.worker {
            for e in w.job.drain() {
                match e {
                    JobEvent::Plan(pe) => self.on_plan_event(pe, ws, now, &mut effects),
                    JobEvent::Failed(e) => {
                        ws.eval_error = Some(e.to_string());
                        self.evals.clear();
                        ws.pending = None;
                    }
                    _ => {}
                }
            }
        }
        if let Some(j) = &self.sweep {
            let ended = j.is_finished();
            for e in j.drain() {
                match e {
                    JobEvent::Sweep(se) => ws.on_sweep_event(se),
                    JobEvent::SweepDone(d) => {
                        ws.sweep.cached = d.cached;
                    }
                    JobEvent::Failed(e) => {
                        ws.sweep.error = Some(e.to_string());
                    }
                    _ => {}
                }
            }
            if ended {
                self.sweep = None;
            }
        }
        if let Some(j) = &self.search {
            let ended = j.is_finished();
            for e in j.drain() {
                match e {
                    JobEvent::Search(se) => ws.on_search_event(se),
                    JobEvent::SearchDone(r) => ws.on_search_done(*r),
                    JobEvent::Failed(e) => ws.search.error = Some(e.to_string()),
                    _ => {}
                }
            }
            if ended {
                self.search = None;
            }
        }
        if let Some((rev, j)) = &self.latency {
            let rev = *rev;
            let ended = j.is_finished();
            for e in j.drain() {
                match e {
                    JobEvent::Latency(Ok(l)) => {
                        ws.latency = Some(Tagged { rev, value: l });
                        ws.latency_error = None;
                    }
                    JobEvent::Latency(Err(e)) => ws.latency_error = Some(e.to_string()),
                    JobEvent::IntegerAccuracy(r) => {
                        let value = r.map_err(|e| e.to_string());
                        ws.integer = Some(Tagged { rev, value });
                    }
                    _ => {}
                }
            }
            if ended {
                self.latency = None;
            }
        }
        effects
    }

    fn on_plan_event(
        &mut self,
        e: PlanEvent,
        ws: &mut Workspace,
        now: Instant,
        effects: &mut Vec<Effect>,
    ) {
        match e {
            PlanEvent::Calibrating {
                ticket,
                done,
                total,
            } => {
                if self.evals.get(&ticket) == Some(&ws.rev) {
                    ws.calibrating = Some((done, total));
                }
            }
            PlanEvent::Evaluated(ev) => {
                if let Some(rev) = self.evals.remove(&ev.ticket) {
                    let (worker_s, recal) = (ev.seconds, ev.recalibrated);
                    effects.extend(ws.on_evaluated(rev, ev, now));
                    // The logged click-to-screen timing (the what-if target is 1 s).
                    if let Some(t) = ws.whatif_seconds.last() {
                        eprintln!(
                            "what-if: plan revision {rev} on screen {t:.3} s after the change \
                             (worker {worker_s:.3} s, {recal} observers calibrated)"
                        );
                    }
                }
            }
            PlanEvent::Cancelled { ticket } => {
                if let Some(rev) = self.evals.remove(&ticket) {
                    ws.on_eval_failed(rev, None);
                }
            }
            PlanEvent::Failed { ticket, message } => {
                if let Some(rev) = self.evals.remove(&ticket) {
                    ws.on_eval_failed(rev, Some(message));
                } else if ticket == self.range_ticket {
                    ws.range = None;
                }
            }
            PlanEvent::Range {
                ticket,
                layer,
                role,
                stats,
                observers,
            } => {
                if ticket == self.range_ticket {
                    ws.range = Some(super::workspace::RangeView {
                        layer,
                        role,
                        stats,
                        observers,
                    });
                }
            }
        }
    }
}
