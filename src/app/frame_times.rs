//! Frame times of the studio (job draining plus layout, the CPU time the UI thread spends per
//! frame), kept for the status bar's 99th percentile. Knows nothing of egui.

use std::collections::VecDeque;
use std::time::Duration;

/// The last frames' times, for a p99 in the status bar.
#[derive(Default)]
pub struct FrameTimes {
    times: VecDeque<Duration>,
    seen: usize,
}

impl FrameTimes {
    const KEEP: usize = 600;
    /// Start-up frames (font atlas, first layout) are not what a user feels while working.
    const SKIP: usize = 10;

    /// Records one frame.
    pub fn push(&mut self, d: Duration) {
        self.seen += 1;
        if self.seen <= Self::SKIP {
            return;
        }
        if self.times.len() == Self::KEEP {
            self.times.pop_front();
        }
        self.times.push_back(d);
    }

    /// The 99th percentile of the recorded frames, in ms.
    pub fn p99_ms(&self) -> Option<f64> {
        if self.times.is_empty() {
            return None;
        }
        let mut ms: Vec<f64> = self
            .times
            .iter()
            .map(|d| d.as_secs_f64() * 1000.0)
            .collect();
        Some(crate::bench::percentile(&mut ms, 0.99))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn p99_skips_start_up_frames_and_keeps_the_last_600() {
        let mut f = FrameTimes::default();
        assert_eq!(f.p99_ms(), None);
        for _ in 0..10 {
            f.push(Duration::from_millis(500));
        }
        assert_eq!(f.p99_ms(), None, "start-up frames are not counted");
        for i in 1..=100 {
            f.push(Duration::from_millis(i));
        }
        assert_eq!(f.p99_ms(), Some(99.0));
        for _ in 0..600 {
            f.push(Duration::from_millis(2));
        }
        assert_eq!(f.p99_ms(), Some(2.0));
    }
}
