//! The oscillation meter of quantization-aware training: how many weights change their integer
//! value from one optimizer step to the next, per layer.
//!
//! Latent weights near a rounding boundary flip between two grid points as training moves them
//! back and forth (Nagel et al. 2022, "Overcoming Oscillations in Quantization-Aware
//! Training"); at 4 bits this is what makes BatchNorm statistics and accuracy drift. After each
//! step [`OscillationMeter::observe`] computes every weight quantizer's integer values (the
//! quantizer input is a function of parameters only: the weight, or the weight scaled by its
//! BatchNorm factor in the `ConvBn` simulation) and counts, against the previous step, the
//! *flips* (integer value changed) and the *oscillations* (changed back in the direction
//! opposite to its last change). [`OscillationMeter::report`] gives the per-layer rates per
//! step since the previous report. Depends on `graph` and `ops`.

use crate::graph::{Graph, Source, ValueId};
use crate::ops::fake_quant::grid_values;
use crate::ops::{FwdCtx, Mode, OpKind, QuantGrid};
use crate::tensor::Tensor;
use rand::SeedableRng;
use serde::{Deserialize, Serialize};

/// Flip and oscillation rates of one weight quantizer, per weight and step.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LayerFlips {
    /// The quantizer (node name, `<weight>.fq`).
    pub point: String,
    /// Weights in the tensor.
    pub weights: usize,
    /// Fraction of the weights whose integer value changed, per step (0..1).
    pub flip_rate: f64,
    /// Fraction that changed back against their previous change, per step (0..1).
    pub oscillation_rate: f64,
}

/// State of one weight quantizer between steps.
#[derive(Clone, Debug)]
struct Track {
    node: usize,
    prev: Vec<i8>,
    /// Sign of each weight's last integer change (0: none yet).
    last_dir: Vec<i8>,
    flips: u64,
    oscillations: u64,
}

/// Counts integer flips of every weight quantizer of a training graph, step by step.
#[derive(Clone, Debug, Default)]
pub struct OscillationMeter {
    tracks: Vec<Track>,
    steps: u64,
}

/// The value `v` of `g` when it depends on parameters only (a weight, or a weight scaled by a
/// function of other parameters); `None` when it depends on data.
pub fn param_value(g: &Graph, v: ValueId) -> Option<Tensor> {
    match g.values[v].source {
        Source::Param(p) => Some(g.params[p].tensor.clone()),
        Source::Input(_) => None,
        Source::Node(n) => {
            let node = &g.nodes[n];
            let ins: Vec<Tensor> = node
                .inputs
                .iter()
                .map(|&i| param_value(g, i))
                .collect::<Option<_>>()?;
            let refs: Vec<&Tensor> = ins.iter().collect();
            let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(0);
            let mut ctx = FwdCtx {
                mode: Mode::Eval,
                need_backward: false,
                rng: &mut rng,
            };
            node.op.forward(&refs, &mut ctx).ok().map(|f| f.output)
        }
    }
}

/// Every weight quantizer of `g` (an integer fake quantizer whose input depends on parameters
/// only) with its current integer values.
pub fn weight_integers(g: &Graph) -> Vec<(usize, Vec<i8>)> {
    g.nodes
        .iter()
        .enumerate()
        .filter_map(|(ni, n)| {
            let OpKind::FakeQuant(a) = &n.op else {
                return None;
            };
            if a.grid == QuantGrid::Fp16 {
                return None;
            }
            let x = param_value(g, n.inputs[0])?;
            let s = param_value(g, n.inputs[1])?;
            let z = param_value(g, n.inputs[2])?;
            Some((ni, grid_values(a, &[&x, &s, &z])))
        })
        .collect()
}

impl Track {
    /// Counts the changes from the previous integer values to `q` (same length).
    fn update(&mut self, q: &[i8]) {
        if q.len() != self.prev.len() {
            return;
        }
        for ((p, d), &v) in self.prev.iter_mut().zip(&mut self.last_dir).zip(q) {
            if v != *p {
                let dir = if v > *p { 1 } else { -1 };
                self.flips += 1;
                if *d == -dir {
                    self.oscillations += 1;
                }
                *d = dir;
                *p = v;
            }
        }
    }
}

impl OscillationMeter {
    /// A meter starting from the weights of `g` as they are now.
    pub fn new(g: &Graph) -> Self {
        let tracks = weight_integers(g)
            .into_iter()
            .map(|(node, prev)| Track {
                node,
                last_dir: vec![0; prev.len()],
                prev,
                flips: 0,
                oscillations: 0,
            })
            .collect();
        OscillationMeter { tracks, steps: 0 }
    }

    /// Counts the flips of the step that produced `g`'s current weights.
    pub fn observe(&mut self, g: &Graph) {
        let now = weight_integers(g);
        for t in &mut self.tracks {
            let Some((_, q)) = now.iter().find(|(n, _)| *n == t.node) else {
                continue;
            };
            t.update(q);
        }
        self.steps += 1;
    }

    /// Steps observed since the last report.
    pub fn steps(&self) -> u64 {
        self.steps
    }

    /// Per-layer rates per step since the last report (then starts a new window).
    pub fn report(&mut self, g: &Graph) -> Vec<LayerFlips> {
        let steps = self.steps.max(1) as f64;
        let out = self
            .tracks
            .iter_mut()
            .map(|t| {
                let n = t.prev.len().max(1) as f64;
                let r = LayerFlips {
                    point: g.nodes[t.node].name.clone(),
                    weights: t.prev.len(),
                    flip_rate: t.flips as f64 / n / steps,
                    oscillation_rate: t.oscillations as f64 / n / steps,
                };
                t.flips = 0;
                t.oscillations = 0;
                r
            })
            .collect();
        self.steps = 0;
        out
    }
}

/// Flip rate of all layers together (weighted by their weight counts).
pub fn overall_flip_rate(layers: &[LayerFlips]) -> f64 {
    let n: usize = layers.iter().map(|l| l.weights).sum();
    let f: f64 = layers.iter().map(|l| l.flip_rate * l.weights as f64).sum();
    f / n.max(1) as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    /// On a real training graph (resnet-mini, ConvBn simulation: the quantizer input is the
    /// weight times its BatchNorm factor), the meter's flips are exactly the weights whose
    /// integer value changed.
    #[test]
    fn meter_counts_the_integer_changes_of_a_training_graph() {
        use crate::ops::gradcheck::rand_tensor;
        use crate::quant::plan::{Precision, QuantPlan};
        use crate::quant::qat::{QatOptions, prepare_qat};
        use std::sync::atomic::AtomicBool;
        let g = crate::zoo::Arch::ResnetMini
            .build([1, 12, 12], 5, 3)
            .unwrap();
        let x = rand_tensor(&[8, 1, 12, 12], 9);
        let plan = QuantPlan::default_for(&g, Precision::Int4);
        let opts = QatOptions {
            lsq: true,
            ..QatOptions::default()
        };
        let mut q = prepare_qat(&g, &plan, [x], &AtomicBool::new(false), &mut |_| {}, &opts)
            .unwrap()
            .graph;
        let before = weight_integers(&q);
        assert_eq!(
            before.len(),
            plan.layers.len(),
            "one weight quantizer per layer"
        );
        let mut meter = OscillationMeter::new(&q);
        // Nudge every weight by a quarter of the largest scale's step: some cross a boundary.
        for p in q.params.iter_mut().filter(|p| p.name.ends_with(".weight")) {
            p.tensor.iter_mut().enumerate().for_each(|(i, v)| {
                *v += if i % 3 == 0 { 0.02 } else { -0.01 };
            });
        }
        meter.observe(&q);
        let after = weight_integers(&q);
        let changed: Vec<usize> = before
            .iter()
            .zip(&after)
            .map(|((_, a), (_, b))| a.iter().zip(b).filter(|(u, v)| u != v).count())
            .collect();
        assert!(changed.iter().sum::<usize>() > 0);
        let r = meter.report(&q);
        for (l, &c) in r.iter().zip(&changed) {
            assert_eq!(
                (l.flip_rate * l.weights as f64).round() as usize,
                c,
                "{}",
                l.point
            );
            assert_eq!(l.oscillation_rate, 0.0);
        }
        assert_eq!(meter.steps(), 0, "a report starts a new window");
    }

    #[test]
    fn track_counts_flips_and_back_and_forth_changes() {
        let mut t = Track {
            node: 0,
            prev: vec![0, 0, 0, 0],
            last_dir: vec![0; 4],
            flips: 0,
            oscillations: 0,
        };
        t.update(&[1, 0, 0, 0]); // one flip up
        t.update(&[0, 0, 1, 0]); // back down (an oscillation) and a new flip
        t.update(&[0, 0, 2, 0]); // the same direction again: a flip, no oscillation
        t.update(&[0, 0, 2]); // wrong length: ignored
        assert_eq!((t.flips, t.oscillations), (4, 1));
        assert_eq!(t.prev, vec![0, 0, 2, 0]);
    }
}
