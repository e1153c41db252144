//! Applying the Benchmarks tab's [`BenchCommand`]s: what may run now (training and QAT runs
//! would distort the measurement), which model the end-to-end benchmark times, starting the
//! [`BenchJob`] and folding its events into [`super::bench_run::BenchState`] each frame.

use super::bench_run::{BenchCommand, BenchEvent, BenchJob, BenchKind, E2eView, GemmView};
use super::qat_run::is_fake_quant;
use super::state::{Live, check_fit};
use super::studio::{CentralTab, StudioApp};
use crate::bench::{GemmStep, run_e2e, run_gemm};
use crate::cli::common::default_model;
use crate::data::{Dataset, Normalization};
use crate::io::{Model, ModelMeta, load_any};
use crate::zoo::Arch;
use std::sync::Arc;
use std::time::Instant;

impl Live {
    /// Why a benchmark cannot start now (`Ok` when it can). Other work on the CPU would make
    /// the numbers meaningless, so training and QAT runs block it.
    pub fn bench_blocker(&self) -> Result<(), String> {
        if self.bench.running.is_some() {
            return Err("a benchmark is already running".into());
        }
        if self.is_training() {
            return Err("a training run is under way; its load would distort the numbers".into());
        }
        if self.qat.as_ref().is_some_and(|q| q.is_active()) {
            return Err("a QAT run is under way; its load would distort the numbers".into());
        }
        Ok(())
    }

    /// Why "Run end-to-end" cannot start now: it needs both splits of the dataset.
    pub fn e2e_blocker(&self) -> Result<(), String> {
        self.bench_blocker()?;
        match (self.data.train.ready(), self.data.test.ready()) {
            (Some(_), Some(_)) => Ok(()),
            _ => Err("the dataset (train and test splits) is not loaded".into()),
        }
    }
}

/// The model the end-to-end benchmark measures: the open one if it is a float model that reads
/// the data, else the built-in pretrained seed-cnn, else a freshly initialised seed-cnn of the
/// data's shape (timing does not depend on the weights). Runs on the worker.
fn pick_model(
    open: Option<(Arc<Model>, String)>,
    test: &Dataset,
) -> Result<(Arc<Model>, String), String> {
    if let Some((m, label)) = open
        && !is_fake_quant(&m)
        && check_fit(&m, test).is_ok()
    {
        return Ok((m, label));
    }
    let path = default_model();
    if let Ok(m) = load_any(&path)
        && check_fit(&m, test).is_ok()
    {
        return Ok((
            Arc::new(m),
            format!("built-in seed-cnn ({})", path.display()),
        ));
    }
    let classes = test.num_classes.max(2);
    let graph = Arch::SeedCnn
        .build(test.image_shape(), classes, 0)
        .map_err(|e| format!("cannot build seed-cnn for the data: {e}"))?;
    let meta = ModelMeta {
        normalization: Normalization::mnist(),
        class_names: Vec::new(),
        arch: Some(Arch::SeedCnn.name().to_string()),
        train_config: None,
        history: None,
        command: None,
        qat: None,
    };
    Ok((
        Arc::new(Model { graph, meta }),
        "seed-cnn, freshly initialised (no pretrained file fits the data; timing only)".to_string(),
    ))
}

impl StudioApp {
    /// Applies one Benchmarks command.
    pub(super) fn apply_bench(&mut self, cmd: BenchCommand) {
        match cmd {
            BenchCommand::Stop => {
                if let Some(job) = &self.live.bench.job {
                    job.stop();
                    self.live.bench.stopping = true;
                }
            }
            BenchCommand::RunGemm(cfg) => {
                if let Err(r) = self.live.bench_blocker() {
                    self.live.error(format!("cannot run the benchmark: {r}"));
                    return;
                }
                let run_cfg = cfg.clone();
                let job = BenchJob::spawn(self.waker.clone(), move |send, stop| {
                    let res = run_gemm(
                        &run_cfg,
                        &mut |s| match s {
                            GemmStep::Machine(m) => send(BenchEvent::GemmMachine(m.clone())),
                            GemmStep::Row(r) => send(BenchEvent::GemmRow(r.clone())),
                        },
                        stop,
                    );
                    send(match res {
                        Ok(r) => BenchEvent::GemmDone { stopped: r.stopped },
                        Err(e) => BenchEvent::Failed(format!("kernel benchmark: {e}")),
                    });
                });
                self.live.bench.gemm = Some(GemmView {
                    config: cfg,
                    ..GemmView::default()
                });
                self.start_bench(job, BenchKind::Gemm);
            }
            BenchCommand::RunE2e(cfg) => {
                if let Err(r) = self.live.e2e_blocker() {
                    self.live.error(format!("cannot run the benchmark: {r}"));
                    return;
                }
                let (Some(train), Some(test)) = (
                    self.live.data.train.ready().cloned(),
                    self.live.data.test.ready().cloned(),
                ) else {
                    return;
                };
                let open = self.live.model.as_ref().map(|v| {
                    let label = match v.path() {
                        Some(p) => format!("the open model ({})", p.display()),
                        None => "the open model (trained in this session)".to_string(),
                    };
                    (v.model.clone(), label)
                });
                let run_cfg = cfg.clone();
                let job = BenchJob::spawn(self.waker.clone(), move |send, stop| {
                    let (model, label) = match pick_model(open, &test) {
                        Ok(m) => m,
                        Err(e) => return send(BenchEvent::Failed(e)),
                    };
                    send(BenchEvent::E2eModel(label));
                    let res = run_e2e(
                        &model.graph,
                        &train,
                        &test,
                        &model.meta.normalization,
                        &run_cfg,
                        &mut |p| send(BenchEvent::E2eProgress(p)),
                        stop,
                    );
                    send(match res {
                        Ok(r) => BenchEvent::E2eDone(r.map(Box::new)),
                        Err(e) => BenchEvent::Failed(format!("end-to-end benchmark: {e}")),
                    });
                });
                self.live.bench.e2e = Some(E2eView {
                    config: Some(cfg),
                    ..E2eView::default()
                });
                self.start_bench(job, BenchKind::E2e);
            }
        }
    }

    fn start_bench(&mut self, job: std::io::Result<BenchJob>, kind: BenchKind) {
        let b = &mut self.live.bench;
        b.error = None;
        match job {
            Ok(job) => {
                b.job = Some(job);
                b.running = Some(kind);
                b.stopping = false;
                b.started = Some(Instant::now());
                self.state.central = CentralTab::Bench;
            }
            Err(e) => {
                let msg = format!("cannot start the benchmark thread: {e}");
                b.error = Some(msg.clone());
                self.live.error(msg);
            }
        }
    }

    /// Folds the benchmark worker's events in (few: one per shape or step).
    pub(super) fn pump_bench(&mut self) {
        let b = &mut self.live.bench;
        let Some(job) = &b.job else { return };
        // Read "finished" before draining: every event a finished worker sent is then drained.
        let ended = job.is_finished();
        for e in job.drain() {
            b.apply(e);
        }
        if ended && b.job.is_some() {
            b.apply(BenchEvent::Failed(
                "the benchmark worker ended without a result".into(),
            ));
        }
    }
}
