//! Background jobs: heavy work (training, evaluation, quantization-aware training, plan
//! calibration and what-if evaluation, sensitivity sweeps, latency measurement) runs on a worker thread that reports typed
//! [`JobEvent`]s over a channel and honours stop/pause commands through a shared [`Control`]. The UI (or CLI) drains events
//! without blocking; workers wake it through an injected [`Waker`], so this module knows nothing
//! of egui.

pub mod analysis;
pub mod error;
pub mod export;
pub mod qat;
pub mod qat_request;
pub mod rounding;
pub mod sweep;

pub use analysis::{PlanEvent, PlanRequest, PlanWorker};
pub use error::{IntegerCheckError, JobError};
pub use export::{ExportFormat, ExportReport, ExportSpec};
pub use qat::{QatError, QatEvent, QatOutcome, QatSpec, run_qat};
pub use sweep::{IntegerCheck, SweepDone};

use crate::data::{Dataset, Normalization};
use crate::io::Model;
use crate::train::{
    Control, Divergence, EvalResult, TrainConfig, TrainError, TrainEvent, TrainSummary, train,
};
use std::sync::mpsc::{Receiver, Sender, channel};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

/// Called by a worker after it sends an event (the GUI passes `ctx.request_repaint`).
pub type Waker = Arc<dyn Fn() + Send + Sync>;

/// What a job reports.
#[derive(Debug)]
pub enum JobEvent {
    Train(TrainEvent),
    /// A training job finished (or stopped, or diverged): the trained model and its summary.
    /// With `diverged`, a non-finite step ended the run and the model holds the last good
    /// weights, those after `summary.steps` steps.
    Trained {
        model: Arc<Model>,
        summary: TrainSummary,
        diverged: Option<Divergence>,
    },
    Evaluated(EvalResult),
    /// Quantization-aware training progress besides steps and epochs.
    Qat(QatEvent),
    /// A QAT job finished (possibly with an error and the last good weights).
    QatFinished(Box<QatOutcome>),
    /// The plan worker (calibration, what-if evaluation, clip ranges).
    Plan(PlanEvent),
    /// A sensitivity sweep's baseline or a layer row.
    Sweep(crate::analysis::sensitivity::SensitivityEvent),
    SweepDone(SweepDone),
    /// Per-layer latency of a plan on the integer runtime (or why it could not be measured).
    Latency(Result<Arc<crate::bench::latency::PlanLatency>, crate::bench::BenchError>),
    /// Accuracy and images of a plan converted to the integer runtime.
    IntegerAccuracy(Result<(f64, usize), IntegerCheckError>),
    /// A file written and read back (or why not).
    Exported(Result<ExportReport, String>),
    /// A mixed-precision search's baseline or another evaluated plan.
    Search(crate::analysis::search::SearchEvent),
    /// A mixed-precision search ended (stopped or within its budget).
    SearchDone(Box<crate::analysis::search::SearchReport>),
    /// The job stopped with an error, or its worker panicked.
    Failed(JobError),
}

/// Thins out trainer step events for a UI: at most one per 20 ms (~50/s), but the first and the
/// last step always pass, and so does every epoch event.
#[derive(Default)]
pub(crate) struct StepThrottle {
    last_sent: Option<std::time::Instant>,
}

impl StepThrottle {
    /// Whether `e` should be sent.
    pub(crate) fn pass(&mut self, e: &TrainEvent) -> bool {
        self.pass_at(e, std::time::Instant::now())
    }

    /// [`StepThrottle::pass`] at the time `now` (an injected clock, for tests).
    fn pass_at(&mut self, e: &TrainEvent, now: std::time::Instant) -> bool {
        if let TrainEvent::Step {
            step, total_steps, ..
        } = *e
        {
            let recent = self
                .last_sent
                .is_some_and(|t| now.saturating_duration_since(t).as_millis() < 20);
            if recent && step != total_steps {
                return false;
            }
            self.last_sent = Some(now);
        }
        true
    }
}

/// A running background job.
pub struct Job {
    rx: Receiver<JobEvent>,
    control: Arc<Control>,
    handle: Option<JoinHandle<()>>,
}

struct Outbox {
    tx: Mutex<Sender<JobEvent>>,
    waker: Waker,
}

impl Outbox {
    fn send(&self, e: JobEvent) {
        if let Ok(tx) = self.tx.lock() {
            // A closed receiver means nobody listens any more: dropping the event is right.
            let _ = tx.send(e);
        }
        (self.waker)();
    }
}

impl Job {
    fn spawn(
        name: &str,
        waker: Waker,
        work: impl FnOnce(&Outbox, &Control) + Send + 'static,
    ) -> std::io::Result<Job> {
        let (tx, rx) = channel();
        let control = Arc::new(Control::new());
        let flag = control.clone();
        let out = Outbox {
            tx: Mutex::new(tx),
            waker,
        };
        let what = name.to_string();
        let handle = std::thread::Builder::new()
            .name(name.to_string())
            .spawn(move || {
                // A panicking worker must not leave the window waiting: it reports and ends.
                let r =
                    std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| work(&out, &flag)));
                if let Err(p) = r {
                    out.send(JobEvent::Failed(JobError::Crashed {
                        worker: what,
                        message: crate::panics::panic_message(&*p),
                    }));
                }
            })?;
        Ok(Job {
            rx,
            control,
            handle: Some(handle),
        })
    }

    /// Trains a copy of `model` on `data` (evaluating on `eval` after each epoch).
    pub fn train(
        model: Model,
        data: Arc<Dataset>,
        eval: Option<Arc<Dataset>>,
        cfg: TrainConfig,
        waker: Waker,
    ) -> std::io::Result<Job> {
        Job::spawn("qatlas-train", waker, move |out, control| {
            let mut model = model;
            let norm = model.meta.normalization.clone();
            let mut throttle = StepThrottle::default();
            let mut on_event = |e: TrainEvent| {
                if throttle.pass(&e) {
                    out.send(JobEvent::Train(e));
                }
            };
            match train(
                &mut model.graph,
                &data,
                &norm,
                &cfg,
                eval.as_deref(),
                control,
                &mut on_event,
            ) {
                Ok(summary) => {
                    model.meta.train_config = Some(cfg);
                    model.meta.history = Some(summary.history.clone());
                    out.send(JobEvent::Trained {
                        model: Arc::new(model),
                        summary,
                        diverged: None,
                    });
                }
                // The model holds the last good weights: hand it back with the reason.
                Err(TrainError::Diverged { cause, summary }) => {
                    model.meta.train_config = Some(cfg);
                    model.meta.history = Some(summary.history.clone());
                    out.send(JobEvent::Trained {
                        model: Arc::new(model),
                        summary: *summary,
                        diverged: Some(cause),
                    });
                }
                Err(e) => out.send(JobEvent::Failed(JobError::Train(e))),
            }
        })
    }

    /// Evaluates `model` on `data`.
    pub fn evaluate(
        model: Arc<Model>,
        data: Arc<Dataset>,
        norm: Normalization,
        waker: Waker,
    ) -> std::io::Result<Job> {
        Job::spawn(
            "qatlas-eval",
            waker,
            move |out, _| match crate::runtime::evaluate_float(&model.graph, &data, &norm, 256) {
                Ok((r, _)) => out.send(JobEvent::Evaluated(r)),
                Err(e) => out.send(JobEvent::Failed(JobError::Evaluate(e))),
            },
        )
    }

    /// Events received so far, without blocking.
    pub fn drain(&self) -> Vec<JobEvent> {
        self.rx.try_iter().collect()
    }

    /// Asks the worker to stop at its next step.
    pub fn stop(&self) {
        self.control.stop();
    }

    /// Asks the worker to wait before its next step.
    pub fn pause(&self) {
        self.control.pause();
    }

    /// Lets a paused worker go on.
    pub fn resume(&self) {
        self.control.resume();
    }

    /// Whether the job is paused.
    pub fn is_paused(&self) -> bool {
        self.control.is_paused()
    }

    /// Whether the worker thread has ended.
    pub fn is_finished(&self) -> bool {
        self.handle.as_ref().is_none_or(|h| h.is_finished())
    }
}

impl Drop for Job {
    fn drop(&mut self) {
        self.stop();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn step(step: usize) -> TrainEvent {
        TrainEvent::Step {
            epoch: 0,
            step,
            total_steps: 10,
            loss: 1.0,
            lr: 0.1,
            images_per_s: 1.0,
        }
    }

    #[test]
    fn throttle_keeps_first_and_last_steps_and_every_epoch() {
        use std::time::{Duration, Instant};
        let mut t = StepThrottle::default();
        let t0 = Instant::now();
        let at = |ms: u64| t0 + Duration::from_millis(ms);
        assert!(t.pass_at(&step(1), at(0)));
        assert!(
            !t.pass_at(&step(2), at(5)),
            "a step right after another is dropped"
        );
        assert!(t.pass_at(&step(10), at(6)), "the last step always goes out");
        let rec = crate::train::EpochRecord {
            epoch: 0,
            train_loss: 1.0,
            train_accuracy: 0.5,
            images_per_s: 1.0,
            eval: None,
        };
        assert!(t.pass_at(&TrainEvent::Epoch(rec), at(7)));
        assert!(
            !t.pass_at(&step(3), at(25)),
            "19 ms after the last one sent"
        );
        assert!(
            t.pass_at(&step(3), at(26)),
            "after 20 ms a step passes again"
        );
    }

    #[test]
    fn a_panicking_worker_reports_a_failure_and_ends() {
        let job = Job::spawn("test", Arc::new(|| {}), |out, _| {
            out.send(JobEvent::Evaluated(EvalResult {
                loss: 0.0,
                accuracy: 0.5,
                images: 2,
                images_per_s: 1.0,
            }));
            panic!("injected fault at step {}", 7);
        })
        .unwrap();
        while !job.is_finished() {
            std::thread::sleep(std::time::Duration::from_millis(1));
        }
        let events = job.drain();
        assert!(matches!(events[0], JobEvent::Evaluated(_)), "{events:?}");
        match &events[1..] {
            [JobEvent::Failed(JobError::Crashed { worker, message })] => {
                assert_eq!(worker, "test");
                assert_eq!(message, "injected fault at step 7");
            }
            other => panic!("{other:?}"),
        }
    }
}
