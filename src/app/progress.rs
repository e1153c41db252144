//! Reduction of a training run's [`TrainEvent`]s into what the studio shows: the live loss curve
//! (raw and smoothed), per-epoch records, progress, throughput and an ETA; plus the same curves
//! read from a model's stored [`TrainHistory`]. Pure data: no egui, no threads, and the time of
//! each event is passed in, so tests drive it with made-up clocks.

use crate::train::{EpochRecord, TrainEvent, TrainHistory};
use std::time::{Duration, Instant};

/// Most points kept per live curve; past this, neighbouring points are merged pairwise.
pub const MAX_POINTS: usize = 4096;

/// Weight of the past in the smoothed loss (exponential moving average per event).
const SMOOTHING: f64 = 0.9;

/// Everything the studio knows about a running (or finished) training run.
#[derive(Clone, Debug, Default)]
pub struct TrainProgress {
    /// (global step, loss of that step), as reported.
    pub loss: Vec<[f64; 2]>,
    /// (global step, exponential moving average of the loss).
    pub smoothed: Vec<[f64; 2]>,
    /// Epochs finished so far.
    pub epochs: Vec<EpochRecord>,
    /// 0-based epoch of the latest step.
    pub epoch: usize,
    /// Steps done (the trainer's 1-based step counter).
    pub step: usize,
    /// Steps of the whole run (0 until the first step arrives).
    pub total_steps: usize,
    /// Learning rate of the latest step.
    pub lr: f32,
    /// Training throughput reported with the latest step.
    pub images_per_s: f64,
    /// Loss of the latest step.
    pub last_loss: Option<f32>,
    ema: Option<f64>,
    /// (step, time) of the first and latest step events, for the rate behind the ETA.
    first: Option<(usize, Instant)>,
    last: Option<(usize, Instant)>,
}

impl TrainProgress {
    /// Folds one event, received at `at`, into the state.
    pub fn apply(&mut self, event: &TrainEvent, at: Instant) {
        match *event {
            TrainEvent::Step {
                epoch,
                step,
                total_steps,
                loss,
                lr,
                images_per_s,
            } => {
                self.epoch = epoch;
                self.step = step;
                self.total_steps = total_steps;
                self.lr = lr;
                self.images_per_s = images_per_s;
                self.last_loss = Some(loss);
                if loss.is_finite() {
                    let x = step as f64;
                    let ema = match self.ema {
                        Some(prev) => SMOOTHING * prev + (1.0 - SMOOTHING) * loss as f64,
                        None => loss as f64,
                    };
                    self.ema = Some(ema);
                    self.loss.push([x, loss as f64]);
                    self.smoothed.push([x, ema]);
                    if self.loss.len() > MAX_POINTS {
                        decimate(&mut self.loss);
                        decimate(&mut self.smoothed);
                    }
                }
                if self.first.is_none() {
                    self.first = Some((step, at));
                }
                self.last = Some((step, at));
            }
            TrainEvent::Epoch(ref record) => self.epochs.push(record.clone()),
        }
    }

    /// Fraction of the run done, in 0..=1 (0 before the first step).
    pub fn fraction(&self) -> f32 {
        if self.total_steps == 0 {
            0.0
        } else {
            (self.step as f32 / self.total_steps as f32).clamp(0.0, 1.0)
        }
    }

    /// Steps per second between the first and the latest step event, once two are apart in time.
    pub fn steps_per_s(&self) -> Option<f64> {
        let ((s0, t0), (s1, t1)) = (self.first?, self.last?);
        let secs = t1.saturating_duration_since(t0).as_secs_f64();
        (s1 > s0 && secs > 0.0).then(|| (s1 - s0) as f64 / secs)
    }

    /// Time left at `now`: the remaining steps at the measured rate, minus the time already
    /// spent since the latest step (so the estimate counts down between events).
    pub fn eta(&self, now: Instant) -> Option<Duration> {
        let rate = self.steps_per_s()?;
        let (_, last_at) = self.last?;
        let remaining = self.total_steps.saturating_sub(self.step) as f64 / rate;
        let since = now.saturating_duration_since(last_at).as_secs_f64();
        Some(Duration::from_secs_f64((remaining - since).max(0.0)))
    }
}

/// Merges neighbouring points pairwise (mean of x and of y), halving the count; an odd last
/// point is kept as it is.
pub fn decimate(points: &mut Vec<[f64; 2]>) {
    let merged: Vec<[f64; 2]> = points
        .chunks(2)
        .map(|c| match c {
            [a, b] => [(a[0] + b[0]) / 2.0, (a[1] + b[1]) / 2.0],
            [a] => *a,
            _ => unreachable!("chunks(2) yields one or two points"),
        })
        .collect();
    *points = merged;
}

/// The stored loss curve of a model: (step, mean loss) points.
pub fn history_loss(h: &TrainHistory) -> Vec<[f64; 2]> {
    h.loss
        .iter()
        .filter(|(_, l)| l.is_finite())
        .map(|&(s, l)| [s as f64, l as f64])
        .collect()
}

/// Test accuracy after each epoch, in percent, at x = epoch number (1-based); epochs without an
/// evaluation are skipped.
pub fn test_accuracy(epochs: &[EpochRecord]) -> Vec<[f64; 2]> {
    epochs
        .iter()
        .filter_map(|r| {
            r.eval
                .as_ref()
                .map(|e| [(r.epoch + 1) as f64, e.accuracy * 100.0])
        })
        .collect()
}

/// Training accuracy of each epoch, in percent, at x = epoch number (1-based).
pub fn train_accuracy(epochs: &[EpochRecord]) -> Vec<[f64; 2]> {
    epochs
        .iter()
        .map(|r| [(r.epoch + 1) as f64, r.train_accuracy * 100.0])
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::train::EvalResult;

    fn step(step: usize, loss: f32) -> TrainEvent {
        TrainEvent::Step {
            epoch: (step - 1) / 10,
            step,
            total_steps: 100,
            loss,
            lr: 1e-3,
            images_per_s: 500.0,
        }
    }

    fn record(epoch: usize, test_acc: Option<f64>) -> EpochRecord {
        EpochRecord {
            epoch,
            train_loss: 0.5,
            train_accuracy: 0.9,
            images_per_s: 1000.0,
            eval: test_acc.map(|accuracy| EvalResult {
                accuracy,
                loss: 0.1,
                images: 10_000,
                images_per_s: 5000.0,
            }),
        }
    }

    #[test]
    fn steps_build_the_curve_and_the_smoothed_curve() {
        let t0 = Instant::now();
        let mut p = TrainProgress::default();
        p.apply(&step(1, 2.0), t0);
        p.apply(&step(2, 1.0), t0 + Duration::from_millis(100));
        assert_eq!(p.loss, vec![[1.0, 2.0], [2.0, 1.0]]);
        // EMA: starts at the first loss, then 0.9 * 2.0 + 0.1 * 1.0 = 1.9.
        assert_eq!(p.smoothed[0], [1.0, 2.0]);
        assert!((p.smoothed[1][1] - 1.9).abs() < 1e-12);
        assert_eq!((p.step, p.total_steps, p.last_loss), (2, 100, Some(1.0)));
        assert!((p.fraction() - 0.02).abs() < 1e-6);
    }

    #[test]
    fn eta_is_remaining_steps_at_the_measured_rate() {
        let t0 = Instant::now();
        let mut p = TrainProgress::default();
        p.apply(&step(1, 1.0), t0);
        // One event alone gives no rate.
        assert_eq!(p.eta(t0), None);
        // 10 steps per second: steps 1 -> 21 in 2 s.
        p.apply(&step(21, 1.0), t0 + Duration::from_secs(2));
        assert!((p.steps_per_s().unwrap() - 10.0).abs() < 1e-9);
        // 79 steps left at 10 steps/s = 7.9 s, counted from the latest event.
        let eta = p.eta(t0 + Duration::from_secs(2)).unwrap();
        assert!((eta.as_secs_f64() - 7.9).abs() < 1e-6, "{eta:?}");
        // Half a second later, 7.4 s remain; long after, the estimate bottoms out at zero.
        let eta = p.eta(t0 + Duration::from_millis(2500)).unwrap();
        assert!((eta.as_secs_f64() - 7.4).abs() < 1e-6, "{eta:?}");
        assert_eq!(p.eta(t0 + Duration::from_secs(60)), Some(Duration::ZERO));
    }

    #[test]
    fn non_finite_losses_are_reported_but_not_plotted() {
        let t0 = Instant::now();
        let mut p = TrainProgress::default();
        p.apply(&step(1, f32::NAN), t0);
        assert!(p.loss.is_empty() && p.smoothed.is_empty());
        assert!(p.last_loss.unwrap().is_nan());
        assert_eq!(p.step, 1);
    }

    #[test]
    fn long_runs_are_decimated_pairwise() {
        let t0 = Instant::now();
        let mut p = TrainProgress::default();
        for s in 1..=MAX_POINTS + 1 {
            p.apply(
                &TrainEvent::Step {
                    epoch: 0,
                    step: s,
                    total_steps: 10 * MAX_POINTS,
                    loss: s as f32,
                    lr: 1e-3,
                    images_per_s: 1.0,
                },
                t0,
            );
        }
        // MAX_POINTS + 1 points merged to half (rounded up), each the mean of a pair.
        assert_eq!(p.loss.len(), MAX_POINTS / 2 + 1);
        assert_eq!(p.loss[0], [1.5, 1.5]);
        assert_eq!(p.loss[1], [3.5, 3.5]);
        assert_eq!(*p.loss.last().unwrap(), [(MAX_POINTS + 1) as f64; 2]);
        assert_eq!(p.smoothed.len(), p.loss.len());
    }

    #[test]
    fn epochs_feed_the_accuracy_curves() {
        let mut p = TrainProgress::default();
        p.apply(&TrainEvent::Epoch(record(0, Some(0.95))), Instant::now());
        p.apply(&TrainEvent::Epoch(record(1, None)), Instant::now());
        p.apply(&TrainEvent::Epoch(record(2, Some(0.9875))), Instant::now());
        assert_eq!(p.epochs.len(), 3);
        assert_eq!(test_accuracy(&p.epochs), vec![[1.0, 95.0], [3.0, 98.75]]);
        assert_eq!(train_accuracy(&p.epochs).len(), 3);
        assert!((train_accuracy(&p.epochs)[1][1] - 90.0).abs() < 1e-9);
    }

    #[test]
    fn stored_history_becomes_points() {
        let h = TrainHistory {
            loss: vec![(10, 2.0), (20, f32::INFINITY), (30, 0.5)],
            epochs: vec![],
        };
        assert_eq!(history_loss(&h), vec![[10.0, 2.0], [30.0, 0.5]]);
    }
}
