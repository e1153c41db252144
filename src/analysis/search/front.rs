//! The Pareto front of evaluated plans (accuracy up, weight bytes and estimated latency down)
//! and the choice among them: the best objective within the accuracy drop, else the most
//! accurate plan.

use super::{Candidate, Objective, SearchConfig};

/// Whether `a` is at least as good as `b` in all three and better in one. Latency is the
/// measured one when both plans were measured, else the estimate.
fn dominates(a: &Candidate, b: &Candidate) -> bool {
    let (la, lb) = match (a.latency_us, b.latency_us) {
        (Some(x), Some(y)) => (x, y),
        _ => (a.latency_est_us, b.latency_est_us),
    };
    let ge = a.accuracy >= b.accuracy && a.weight_bytes <= b.weight_bytes && la <= lb;
    let gt = a.accuracy > b.accuracy || a.weight_bytes < b.weight_bytes || la < lb;
    ge && gt
}

/// Marks the non-dominated candidates.
pub fn mark_front(tried: &mut [Candidate]) {
    let flags: Vec<bool> = tried
        .iter()
        .map(|c| !tried.iter().any(|o| dominates(o, c)))
        .collect();
    for (c, f) in tried.iter_mut().zip(flags) {
        c.on_front = f;
    }
}

/// Plans the latency objective measures before it chooses.
pub(super) const FINALISTS: usize = 6;

fn objective_value(c: &Candidate, o: Objective) -> f64 {
    match o {
        Objective::Size => c.weight_bytes as f64,
        // Measured plans are chosen in `choose` before this is reached.
        Objective::Latency => c.latency_est_us,
    }
}

/// Measured latencies closer than this (relative) are a tie, below what a busy machine's
/// timing resolves: the more accurate plan is chosen.
pub(super) const LATENCY_TIE: f64 = 0.02;

/// The chosen plan: the best objective among plans within the drop (for latency, the most
/// accurate of those measured within [`LATENCY_TIE`] of the fastest), else the most accurate.
pub(super) fn choose(tried: &[Candidate], cfg: &SearchConfig) -> (usize, bool) {
    let within = |c: &Candidate| c.drop_pp <= cfg.max_drop_pp + 1e-9;
    if cfg.objective == Objective::Latency {
        let fastest = tried
            .iter()
            .filter(|c| within(c))
            .filter_map(|c| c.latency_us)
            .min_by(f64::total_cmp);
        if let Some(f) = fastest {
            let pick = tried
                .iter()
                .enumerate()
                .filter(|(_, c)| {
                    within(c) && c.latency_us.is_some_and(|l| l <= f * (1.0 + LATENCY_TIE))
                })
                .max_by(|a, b| {
                    a.1.accuracy.total_cmp(&b.1.accuracy).then(
                        b.1.latency_us
                            .unwrap_or(0.0)
                            .total_cmp(&a.1.latency_us.unwrap_or(0.0)),
                    )
                });
            if let Some((i, _)) = pick {
                return (i, true);
            }
        }
    }
    let ok = tried
        .iter()
        .enumerate()
        .filter(|(_, c)| c.drop_pp <= cfg.max_drop_pp + 1e-9)
        .min_by(|a, b| {
            objective_value(a.1, cfg.objective)
                .total_cmp(&objective_value(b.1, cfg.objective))
                .then(b.1.accuracy.total_cmp(&a.1.accuracy))
        });
    match ok {
        Some((i, _)) => (i, true),
        None => {
            let i = tried
                .iter()
                .enumerate()
                .max_by(|a, b| a.1.accuracy.total_cmp(&b.1.accuracy))
                .map_or(0, |(i, _)| i);
            (i, false)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::analysis::search::Candidate;

    fn cand(acc: f64, bytes: usize, us: f64) -> Candidate {
        Candidate {
            layers: Vec::new(),
            accuracy: acc,
            drop_pp: (0.99 - acc) * 100.0,
            weight_bytes: bytes,
            latency_est_us: us,
            latency_us: None,
            on_front: false,
        }
    }

    #[test]
    fn the_front_keeps_only_undominated_plans_and_the_choice_meets_the_drop() {
        let mut t = vec![
            cand(0.985, 70_000, 40.0),
            cand(0.984, 36_000, 35.0),
            cand(0.983, 40_000, 36.0), // dominated by the second
            cand(0.960, 20_000, 30.0),
        ];
        mark_front(&mut t);
        let front: Vec<bool> = t.iter().map(|c| c.on_front).collect();
        assert_eq!(front, [true, true, false, true]);
        let cfg = SearchConfig {
            max_drop_pp: 0.7,
            ..SearchConfig::default()
        };
        assert_eq!(choose(&t, &cfg), (1, true));
        let strict = SearchConfig {
            max_drop_pp: 0.1,
            ..SearchConfig::default()
        };
        // Nothing within 0.1 pp: the most accurate plan, and it says so.
        assert_eq!(choose(&t, &strict), (0, false));
        let lat = SearchConfig {
            max_drop_pp: 3.5,
            objective: Objective::Latency,
            ..SearchConfig::default()
        };
        assert_eq!(choose(&t, &lat), (3, true));
        // Measured latencies decide between measured plans: the third, estimated slower than
        // the second, measured faster, is no longer dominated, and the latency objective takes
        // it over the unmeasured fourth.
        t[1].latency_us = Some(33.0);
        t[2].latency_us = Some(31.0);
        mark_front(&mut t);
        assert!(t[2].on_front);
        assert_eq!(choose(&t, &lat), (2, true));
        // Within 2 % of the fastest is a tie: the more accurate plan wins it.
        t[1].latency_us = Some(31.5);
        assert_eq!(choose(&t, &lat), (1, true));
        t[2].latency_us = Some(34.0);
        mark_front(&mut t);
        assert!(!t[2].on_front);
    }
}
