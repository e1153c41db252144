//! Commands a running loop (training, QAT, sweeps) honours between steps: stop, pause, resume.
//! Shared by reference between the worker and whoever drives it (CLI, studio, tests).

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

/// Stop and pause flags, checked by workers once per step.
#[derive(Debug, Default)]
pub struct Control {
    stop: AtomicBool,
    paused: AtomicBool,
}

impl Control {
    /// A control with no command pending.
    pub fn new() -> Self {
        Self::default()
    }

    /// Asks the worker to stop at its next step (also ends a pause).
    pub fn stop(&self) {
        self.stop.store(true, Ordering::Relaxed);
    }

    /// Asks the worker to wait before its next step.
    pub fn pause(&self) {
        self.paused.store(true, Ordering::Relaxed);
    }

    /// Lets a paused worker go on.
    pub fn resume(&self) {
        self.paused.store(false, Ordering::Relaxed);
    }

    /// Whether a pause is in force.
    pub fn is_paused(&self) -> bool {
        self.paused.load(Ordering::Relaxed)
    }

    /// The stop flag itself, for library code that takes a `&AtomicBool`.
    pub fn stop_flag(&self) -> &AtomicBool {
        &self.stop
    }

    /// Whether a stop was requested.
    pub fn stop_requested(&self) -> bool {
        self.stop.load(Ordering::Relaxed)
    }

    /// Called by a worker between steps: waits while paused (polling every 10 ms), then says
    /// whether to stop.
    pub fn checkpoint(&self) -> bool {
        while self.is_paused() && !self.stop_requested() {
            std::thread::sleep(Duration::from_millis(10));
        }
        self.stop_requested()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[test]
    fn pause_blocks_until_resume_and_stop_ends_a_pause() {
        let c = Arc::new(Control::new());
        assert!(!c.checkpoint());
        c.pause();
        let c2 = c.clone();
        let waiter = std::thread::spawn(move || {
            let t = std::time::Instant::now();
            let stop = c2.checkpoint();
            (t.elapsed(), stop)
        });
        std::thread::sleep(Duration::from_millis(60));
        c.resume();
        let (waited, stop) = waiter.join().unwrap();
        assert!(waited >= Duration::from_millis(50), "{waited:?}");
        assert!(!stop);
        c.pause();
        c.stop();
        assert!(c.checkpoint(), "a stop ends a pause");
    }
}
