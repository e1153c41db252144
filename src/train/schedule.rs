//! Learning-rate schedules, evaluated per optimizer step.

use serde::{Deserialize, Serialize};

/// How the learning rate evolves from its peak value over a run.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum Schedule {
    Constant,
    /// Multiply by `gamma` every `every_epochs` epochs.
    Step {
        every_epochs: usize,
        gamma: f32,
    },
    /// Linear warm-up over `warmup_steps`, then cosine decay to `min_factor`·peak at the end.
    Cosine {
        warmup_steps: usize,
        min_factor: f32,
    },
}

impl Schedule {
    /// Learning rate at `step` (0-based) of `total` steps, `steps_per_epoch` per epoch.
    pub fn lr(&self, peak: f32, step: usize, total: usize, steps_per_epoch: usize) -> f32 {
        match *self {
            Schedule::Constant => peak,
            Schedule::Step {
                every_epochs,
                gamma,
            } => {
                let epoch = step / steps_per_epoch.max(1);
                peak * gamma.powi((epoch / every_epochs.max(1)) as i32)
            }
            Schedule::Cosine {
                warmup_steps,
                min_factor,
            } => {
                if step < warmup_steps {
                    return peak * (step + 1) as f32 / warmup_steps as f32;
                }
                let span = total.saturating_sub(warmup_steps).max(1) as f32;
                let t = ((step - warmup_steps) as f32 / span).min(1.0);
                let f = min_factor
                    + (1.0 - min_factor) * 0.5 * (1.0 + (std::f32::consts::PI * t).cos());
                peak * f
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values() {
        assert_eq!(Schedule::Constant.lr(0.1, 50, 100, 10), 0.1);
        let s = Schedule::Step {
            every_epochs: 2,
            gamma: 0.5,
        };
        assert_eq!(s.lr(1.0, 19, 100, 10), 1.0);
        assert_eq!(s.lr(1.0, 20, 100, 10), 0.5);
        assert_eq!(s.lr(1.0, 45, 100, 10), 0.25);
        let c = Schedule::Cosine {
            warmup_steps: 10,
            min_factor: 0.0,
        };
        assert!((c.lr(1.0, 0, 110, 10) - 0.1).abs() < 1e-6);
        assert!((c.lr(1.0, 10, 110, 10) - 1.0).abs() < 1e-6);
        assert!((c.lr(1.0, 60, 110, 10) - 0.5).abs() < 1e-6);
        assert!(c.lr(1.0, 109, 110, 10) < 0.001);
    }
}
