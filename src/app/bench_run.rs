//! The studio's Benchmarks tab, its data: [`BenchCommand`]s start the kernel benchmark
//! ([`crate::bench::gemm`]) or the end-to-end one ([`crate::bench::e2e`]) on a worker thread that
//! sends typed [`BenchEvent`]s (each finished shape as it completes) and wakes the UI through the
//! injected waker; a shared stop flag cancels. [`BenchState`] is what the panel draws from.
//! The UI thread never measures: it only folds events in. Knows nothing of egui, nor of the
//! studio (`bench_control` applies the commands).

use crate::bench::{
    CpuFeatures, E2eConfig, E2eProgress, E2eResult, GemmConfig, GemmMachine, GemmRow,
};
use crate::jobs::Waker;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, Sender, channel};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Instant;

/// What the Benchmarks panel asks for.
#[derive(Clone, Debug, PartialEq)]
pub enum BenchCommand {
    /// The int8 GEMM kernel benchmark with these settings.
    RunGemm(GemmConfig),
    /// The end-to-end benchmark with these settings.
    RunE2e(E2eConfig),
    Stop,
}

/// Which benchmark a run is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BenchKind {
    Gemm,
    E2e,
}

/// What the benchmark worker reports.
#[derive(Debug)]
pub enum BenchEvent {
    GemmMachine(GemmMachine),
    GemmRow(GemmRow),
    GemmDone {
        stopped: bool,
    },
    /// Which model the end-to-end run measures.
    E2eModel(String),
    E2eProgress(E2eProgress),
    /// `None`: stopped.
    E2eDone(Option<Box<E2eResult>>),
    Failed(String),
}

/// A benchmark running on its own thread.
pub struct BenchJob {
    rx: Receiver<BenchEvent>,
    stop: Arc<AtomicBool>,
    handle: JoinHandle<()>,
}

impl BenchJob {
    /// Starts `work` on a new thread; it sends events through the given closure, which wakes
    /// the UI after each one.
    pub fn spawn(
        waker: Waker,
        work: impl FnOnce(&mut dyn FnMut(BenchEvent), &AtomicBool) + Send + 'static,
    ) -> std::io::Result<BenchJob> {
        let (tx, rx): (Sender<BenchEvent>, _) = channel();
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let tx = Mutex::new(tx);
        let handle = std::thread::Builder::new()
            .name("qatlas-bench".to_string())
            .spawn(move || {
                let mut send = |e: BenchEvent| {
                    if let Ok(tx) = tx.lock() {
                        // A closed receiver means nobody listens any more: dropping is right.
                        let _ = tx.send(e);
                    }
                    waker();
                };
                work(&mut send, &flag);
            })?;
        Ok(BenchJob { rx, stop, handle })
    }

    /// Asks the worker to stop at its next check.
    pub fn stop(&self) {
        self.stop.store(true, Ordering::Relaxed);
    }

    /// Events sent so far; never blocks.
    pub fn drain(&self) -> Vec<BenchEvent> {
        self.rx.try_iter().collect()
    }

    pub fn is_finished(&self) -> bool {
        self.handle.is_finished()
    }
}

/// The kernel benchmark as the panel shows it.
#[derive(Clone, Debug, Default)]
pub struct GemmView {
    pub config: GemmConfig,
    pub machine: Option<GemmMachine>,
    pub rows: Vec<GemmRow>,
    /// `Some(stopped)` once the run ended.
    pub finished: Option<bool>,
}

/// The end-to-end benchmark as the panel shows it.
#[derive(Clone, Debug, Default)]
pub struct E2eView {
    pub config: Option<E2eConfig>,
    pub model: Option<String>,
    pub progress: Option<E2eProgress>,
    pub result: Option<E2eResult>,
    /// `Some(stopped)` once the run ended.
    pub finished: Option<bool>,
}

/// Everything the Benchmarks tab shows.
pub struct BenchState {
    /// Read once at start (CPUID; no measurement).
    pub features: CpuFeatures,
    pub job: Option<BenchJob>,
    pub running: Option<BenchKind>,
    pub stopping: bool,
    pub started: Option<Instant>,
    pub gemm: Option<GemmView>,
    pub e2e: Option<E2eView>,
    pub error: Option<String>,
}

impl Default for BenchState {
    fn default() -> Self {
        BenchState {
            features: CpuFeatures::detect(),
            job: None,
            running: None,
            stopping: false,
            started: None,
            gemm: None,
            e2e: None,
            error: None,
        }
    }
}

impl BenchState {
    /// Folds one worker event in.
    pub fn apply(&mut self, e: BenchEvent) {
        match e {
            BenchEvent::GemmMachine(m) => {
                if let Some(g) = &mut self.gemm {
                    g.machine = Some(m);
                }
            }
            BenchEvent::GemmRow(r) => {
                if let Some(g) = &mut self.gemm {
                    g.rows.push(r);
                }
            }
            BenchEvent::GemmDone { stopped } => {
                if let Some(g) = &mut self.gemm {
                    g.finished = Some(stopped);
                }
                self.end();
            }
            BenchEvent::E2eModel(m) => {
                if let Some(v) = &mut self.e2e {
                    v.model = Some(m);
                }
            }
            BenchEvent::E2eProgress(p) => {
                if let Some(v) = &mut self.e2e {
                    v.progress = Some(p);
                }
            }
            BenchEvent::E2eDone(r) => {
                if let Some(v) = &mut self.e2e {
                    v.finished = Some(r.is_none());
                    v.result = r.map(|r| *r);
                }
                self.end();
            }
            BenchEvent::Failed(msg) => {
                self.error = Some(msg);
                self.end();
            }
        }
    }

    fn end(&mut self) {
        self.job = None;
        self.running = None;
        self.stopping = false;
    }

    /// What runs, for the status line.
    pub fn busy_label(&self) -> Option<String> {
        let what = match self.running? {
            BenchKind::Gemm => "kernel",
            BenchKind::E2e => "end-to-end",
        };
        Some(if self.stopping {
            format!("Stopping the {what} benchmark…")
        } else {
            format!("Running the {what} benchmark…")
        })
    }
}
