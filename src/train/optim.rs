//! Optimizers: SGD (momentum, Nesterov, L2 weight decay) and AdamW (decoupled weight decay),
//! with PyTorch's update rules so that hyper-parameters carry over.

use crate::graph::Graph;
use crate::tensor::Tensor;
use ndarray::Zip;
use serde::{Deserialize, Serialize};

/// Optimizer and its hyper-parameters (the learning rate is the peak of the schedule).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum OptimizerConfig {
    Sgd {
        lr: f32,
        momentum: f32,
        nesterov: bool,
        weight_decay: f32,
    },
    AdamW {
        lr: f32,
        beta1: f32,
        beta2: f32,
        eps: f32,
        weight_decay: f32,
    },
}

impl OptimizerConfig {
    /// Peak learning rate.
    pub fn lr(&self) -> f32 {
        match self {
            OptimizerConfig::Sgd { lr, .. } | OptimizerConfig::AdamW { lr, .. } => *lr,
        }
    }
}

/// Optimizer state for one graph's trainable parameters.
pub struct Optimizer {
    pub config: OptimizerConfig,
    /// First moment (or momentum buffer) per parameter.
    m: Vec<Option<Tensor>>,
    /// Second moment per parameter (AdamW).
    v: Vec<Option<Tensor>>,
    /// Learning-rate factor per parameter (1 unless set).
    lr_factor: Vec<f32>,
    step: u64,
}

impl Optimizer {
    /// Fresh state for `g`.
    pub fn new(config: OptimizerConfig, g: &Graph) -> Self {
        let n = g.params.len();
        Optimizer {
            config,
            m: vec![None; n],
            v: vec![None; n],
            lr_factor: vec![1.0; n],
            step: 0,
        }
    }

    /// Scales the learning rate of each parameter by `factors[i]` (parameters beyond the
    /// vector keep 1).
    pub fn set_lr_factors(&mut self, factors: &[f32]) {
        for (f, &v) in self.lr_factor.iter_mut().zip(factors) {
            *f = v;
        }
    }

    /// Applies one update with learning rate `lr` to every parameter that has a gradient.
    pub fn step(&mut self, g: &mut Graph, grads: &[Option<Tensor>], lr: f32) {
        self.step += 1;
        let t = self.step as i32;
        for (i, grad) in grads.iter().enumerate() {
            let Some(grad) = grad else { continue };
            if !g.params[i].trainable {
                continue;
            }
            let w = &mut g.params[i].tensor;
            let lr = lr * self.lr_factor[i];
            match self.config {
                OptimizerConfig::Sgd {
                    momentum,
                    nesterov,
                    weight_decay,
                    ..
                } => {
                    let m = self.m[i].get_or_insert_with(|| Tensor::zeros(w.raw_dim()));
                    Zip::from(&mut *w).and(m).and(grad).for_each(|w, m, &g| {
                        let g = g + weight_decay * *w;
                        let d = if momentum != 0.0 {
                            *m = momentum * *m + g;
                            if nesterov { g + momentum * *m } else { *m }
                        } else {
                            g
                        };
                        *w -= lr * d;
                    });
                }
                OptimizerConfig::AdamW {
                    beta1,
                    beta2,
                    eps,
                    weight_decay,
                    ..
                } => {
                    let m = self.m[i].get_or_insert_with(|| Tensor::zeros(w.raw_dim()));
                    let v = self.v[i].get_or_insert_with(|| Tensor::zeros(w.raw_dim()));
                    let bc1 = 1.0 - beta1.powi(t);
                    let bc2 = 1.0 - beta2.powi(t);
                    let step = lr / bc1;
                    let bc2s = bc2.sqrt();
                    Zip::from(&mut *w)
                        .and(m)
                        .and(v)
                        .and(grad)
                        .for_each(|w, m, v, &g| {
                            *w *= 1.0 - lr * weight_decay;
                            *m = beta1 * *m + (1.0 - beta1) * g;
                            *v = beta2 * *v + (1.0 - beta2) * g * g;
                            *w -= step * *m / (v.sqrt() / bc2s + eps);
                        });
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::graph::GraphBuilder;
    use crate::tensor::from_vec;

    fn one_param(v: f32) -> Graph {
        let mut b = GraphBuilder::new("p", &[1], 0);
        let x = b.input("x");
        let p = b.param("w", from_vec(&[1], vec![v]), true);
        let y = b.node("add", crate::ops::OpKind::Add, &[x, p]);
        b.finish(&[y]).unwrap()
    }

    #[test]
    fn sgd_momentum_and_nesterov_match_pytorch_rule() {
        // PyTorch: b1 = g, w1 = w0 - lr*b1; b2 = 0.9*b1 + g, w2 = w1 - lr*b2 (g constant 1).
        let mut g = one_param(1.0);
        let mut o = Optimizer::new(
            OptimizerConfig::Sgd {
                lr: 0.1,
                momentum: 0.9,
                nesterov: false,
                weight_decay: 0.0,
            },
            &g,
        );
        let gr = vec![Some(from_vec(&[1], vec![1.0]))];
        o.step(&mut g, &gr, 0.1);
        o.step(&mut g, &gr, 0.1);
        assert!((g.params[0].tensor[0] - (1.0 - 0.1 - 0.19)).abs() < 1e-6);
        // Nesterov: d1 = g + 0.9*b1 = 1.9; d2 = g + 0.9*1.9 = 2.71.
        let mut g = one_param(1.0);
        let mut o = Optimizer::new(
            OptimizerConfig::Sgd {
                lr: 0.1,
                momentum: 0.9,
                nesterov: true,
                weight_decay: 0.0,
            },
            &g,
        );
        o.step(&mut g, &gr, 0.1);
        o.step(&mut g, &gr, 0.1);
        assert!((g.params[0].tensor[0] - (1.0 - 0.19 - 0.271)).abs() < 1e-6);
    }

    #[test]
    fn lr_factors_scale_each_parameters_step() {
        let mut g = one_param(1.0);
        let cfg = OptimizerConfig::Sgd {
            lr: 0.1,
            momentum: 0.0,
            nesterov: false,
            weight_decay: 0.0,
        };
        let mut o = Optimizer::new(cfg, &g);
        o.set_lr_factors(&[0.5]);
        o.step(&mut g, &[Some(from_vec(&[1], vec![2.0]))], 0.1);
        // 1 - 0.1 * 0.5 * 2 = 0.9
        assert!((crate::tensor::slice(&g.params[0].tensor)[0] - 0.9).abs() < 1e-6);
    }

    #[test]
    fn adamw_first_step_is_lr_sign_plus_decay() {
        let mut g = one_param(2.0);
        let mut o = Optimizer::new(
            OptimizerConfig::AdamW {
                lr: 0.01,
                beta1: 0.9,
                beta2: 0.999,
                eps: 1e-8,
                weight_decay: 0.1,
            },
            &g,
        );
        o.step(&mut g, &[Some(from_vec(&[1], vec![-3.0]))], 0.01);
        // w = 2*(1 - 0.001) + 0.01 (bias-corrected m/sqrt(v) = -1).
        assert!((g.params[0].tensor[0] - (2.0 * 0.999 + 0.01)).abs() < 1e-5);
    }
}
