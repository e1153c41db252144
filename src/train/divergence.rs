//! Divergence: a step whose loss, gradients or updated weights are not finite ends a run, and
//! the model goes back to its last good weights: the last ones whose loss and gradients were
//! seen to be finite, i.e. those the last applied step started from (weights that give a NaN
//! loss on the next batch are not good, though they are finite). [`LastGood`] is that copy,
//! taken just before each step is applied, in buffers reused from step to step; a divergence
//! on the first step of a run leaves the weights it started with.

use crate::graph::Graph;
use crate::tensor::Tensor;
use serde::{Deserialize, Serialize};
use thiserror::Error;

/// What went non-finite.
#[derive(Clone, Debug, Error, PartialEq, Serialize, Deserialize)]
pub enum NonFinite {
    #[error("the loss became {0}")]
    Loss(f32),
    /// The gradient of this parameter.
    #[error("the gradient of '{0}' became non-finite")]
    Gradient(String),
    /// The optimizer's update made this parameter non-finite.
    #[error("the update made '{0}' non-finite")]
    Update(String),
}

/// Where a run diverged: `step` counts the steps applied before the failing one over the whole
/// run (messages number steps and epochs from 1).
#[derive(Clone, Debug, Error, PartialEq, Serialize, Deserialize)]
#[error("{what} at epoch {}, step {}", epoch + 1, step + 1)]
pub struct Divergence {
    pub epoch: usize,
    pub step: usize,
    pub what: NonFinite,
}

impl Divergence {
    /// The whole story for a person: what failed, where, the advice, and which weights the
    /// model kept (those after `kept` steps).
    pub fn report(&self, kept: usize) -> String {
        format!(
            "training diverged: {self}: lower the learning rate, or look for extreme values in \
             the data (the model keeps the weights after step {kept})"
        )
    }
}

/// Name of the first parameter of `g` whose tensor in `tensors` (one per parameter, `None`
/// where absent) holds a NaN or an infinity.
pub(crate) fn first_non_finite<'a>(
    g: &Graph,
    tensors: impl IntoIterator<Item = Option<&'a Tensor>>,
) -> Option<String> {
    tensors.into_iter().enumerate().find_map(|(i, t)| {
        let t = t?;
        t.iter()
            .any(|v| !v.is_finite())
            .then(|| g.params[i].name.clone())
    })
}

/// Name of the first parameter of `g` that holds a NaN or an infinity.
pub(crate) fn first_non_finite_param(g: &Graph) -> Option<String> {
    first_non_finite(g, g.params.iter().map(|p| Some(&p.tensor)))
}

/// The parameters as they were before the step last applied.
#[derive(Default)]
pub(crate) struct LastGood {
    saved: Vec<Tensor>,
    /// Steps applied before the saved weights (set once something is saved).
    steps: Option<usize>,
}

impl LastGood {
    /// Copies every parameter of `g`, the weights after `steps` steps (into the buffers of the
    /// previous copy when shapes agree).
    pub(crate) fn save(&mut self, g: &Graph, steps: usize) {
        self.steps = Some(steps);
        if self.saved.len() != g.params.len()
            || self
                .saved
                .iter()
                .zip(&g.params)
                .any(|(s, p)| s.shape() != p.tensor.shape())
        {
            self.saved = g.params.iter().map(|p| p.tensor.clone()).collect();
            return;
        }
        for (s, p) in self.saved.iter_mut().zip(&g.params) {
            s.assign(&p.tensor);
        }
    }

    /// Puts the saved parameters back into `g` and says after how many steps they were taken
    /// (`None`, and nothing changed, before the first save).
    pub(crate) fn restore(&self, g: &mut Graph) -> Option<usize> {
        if self.saved.len() != g.params.len() {
            return None;
        }
        for (s, p) in self.saved.iter().zip(g.params.iter_mut()) {
            if s.shape() == p.tensor.shape() {
                p.tensor.assign(s);
            } else {
                p.tensor = s.clone();
            }
        }
        self.steps
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::graph::GraphBuilder;
    use crate::tensor::from_vec;

    #[test]
    fn restore_undoes_a_change_and_first_non_finite_names_the_parameter() {
        let mut b = GraphBuilder::new("p", &[2], 0);
        let x = b.input("x");
        let w = b.param("w", from_vec(&[2], vec![1.0, 2.0]), true);
        let y = b.node("add", crate::ops::OpKind::Add, &[x, w]);
        let mut g = b.finish(&[y]).unwrap();
        let mut keep = LastGood::default();
        assert_eq!(keep.restore(&mut g), None);
        keep.save(&g, 3);
        assert_eq!(first_non_finite_param(&g), None);
        g.params[0].tensor.as_slice_mut().unwrap()[1] = f32::INFINITY;
        assert_eq!(first_non_finite_param(&g).as_deref(), Some("w"));
        assert_eq!(keep.restore(&mut g), Some(3));
        assert_eq!(g.params[0].tensor.as_slice().unwrap(), &[1.0, 2.0]);
        // A second save reuses the buffers and sees the new values.
        g.params[0].tensor.as_slice_mut().unwrap()[0] = 5.0;
        keep.save(&g, 4);
        g.params[0].tensor.as_slice_mut().unwrap()[0] = f32::NAN;
        assert_eq!(keep.restore(&mut g), Some(4));
        assert_eq!(g.params[0].tensor.as_slice().unwrap(), &[5.0, 2.0]);
    }
}
