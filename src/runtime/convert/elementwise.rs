//! Lowering the f32 elementwise steps of a fake-quant graph: Clip and the gates of mobile CNNs
//! (Sigmoid, HardSigmoid, HardSwish) as activation steps, `Mul` of the same shape or by a
//! 1 x 1 x c squeeze-excitation gate, and `Concat` along the channels (pairwise, NHWC).
//! Part of [`super`] (`convert.rs`), split out to keep files small.

use super::{ActVal, Builder, Logical};
use crate::ops::OpKind;
use crate::runtime::error::RuntimeError;
use crate::runtime::spec::{Act, Dims, SlotKind, Step};

impl Builder<'_> {
    pub(super) fn activation(&mut self, ni: usize) -> Result<(), RuntimeError> {
        let node = &self.g.nodes[ni];
        let act = match &node.op {
            OpKind::Clip(c) => Act::Clip {
                min: c.min,
                max: c.max,
            },
            OpKind::HardSigmoid(h) => Act::HardSigmoid {
                alpha: h.alpha,
                beta: h.beta,
            },
            OpKind::HardSwish => Act::HardSwish,
            OpKind::Sigmoid => Act::Sigmoid,
            other => return Err(self.err(ni, format!("{} is not an activation", other.name()))),
        };
        let out_v = node.output;
        let x = self.act(ni, 0)?;
        let x = self.float(x);
        let dst = self.slot(SlotKind::F32);
        self.steps.push(Step::Activation {
            src: x.slot,
            dst,
            act,
        });
        self.set(out_v, ActVal { slot: dst, ..x });
        Ok(())
    }

    pub(super) fn mul(&mut self, ni: usize) -> Result<(), RuntimeError> {
        let out_v = self.g.nodes[ni].output;
        let (a, b) = (self.act(ni, 0)?, self.act(ni, 1)?);
        let (a, b) = (self.float(a), self.float(b));
        // The full-size operand first; the other is the same size or a 1 x 1 x c gate.
        let (a, b) = if a.dims.elems() >= b.dims.elems() {
            (a, b)
        } else {
            (b, a)
        };
        let gate = b.dims == Dims::flat(a.dims.c) && a.logical == Logical::Image;
        if b.dims != a.dims && !gate {
            return Err(self.err(
                ni,
                "multiplies tensors the integer runtime cannot broadcast (same shape or a \
                 per-channel gate only)",
            ));
        }
        let dst = self.slot(SlotKind::F32);
        self.steps.push(Step::Mul {
            a: a.slot,
            b: b.slot,
            dst,
        });
        self.set(out_v, ActVal { slot: dst, ..a });
        Ok(())
    }

    /// A BatchNorm PTQ could not fold into a layer (DenseNet's after each Concat): running
    /// statistics, the float op's `1 / sqrt(var + eps)` and order, on the dequantized values.
    pub(super) fn batch_norm(&mut self, ni: usize, eps: f32) -> Result<(), RuntimeError> {
        let g = self.g;
        let node = &g.nodes[ni];
        // Right after a Conv/Linear it should have been folded: this is a float model.
        let after_layer = g.nodes.iter().any(|n| {
            n.output == node.inputs[0] && matches!(n.op, OpKind::Conv2d(_) | OpKind::Linear)
        });
        if after_layer {
            return Err(self.err(
                ni,
                "BatchNorm after a layer is not folded (convert the fake-quant model PTQ or QAT \
                 produce)",
            ));
        }
        let param = |k: usize| -> Result<Vec<f32>, RuntimeError> {
            let v = node.inputs[k];
            g.param_of(v)
                .map(|p| g.params[p].tensor.iter().copied().collect())
                .ok_or_else(|| self.err(ni, "BatchNorm statistics and affine must be parameters"))
        };
        let (gamma, beta, mean, var) = (param(1)?, param(2)?, param(3)?, param(4)?);
        let x = self.act(ni, 0)?;
        let x = self.float(x);
        if [&gamma, &beta, &mean, &var]
            .iter()
            .any(|v| v.len() != x.dims.c)
        {
            return Err(self.err(ni, "BatchNorm parameters do not match the channels"));
        }
        let inv_std = var.iter().map(|v| 1.0 / (v + eps).sqrt()).collect();
        let dst = self.slot(SlotKind::F32);
        self.steps.push(Step::BatchNorm {
            src: x.slot,
            dst,
            mean,
            inv_std,
            gamma,
            beta,
        });
        self.set(node.output, ActVal { slot: dst, ..x });
        Ok(())
    }

    pub(super) fn concat(&mut self, ni: usize, axis: i64) -> Result<(), RuntimeError> {
        let g = self.g;
        let node = &g.nodes[ni];
        let rank = self.shapes[node.inputs[0]].len() as i64;
        let axis = if axis < 0 { axis + rank } else { axis };
        if axis != 1 || (rank != 4 && rank != 2) {
            return Err(self.err(ni, "concatenates along an axis other than the channels"));
        }
        let first = self.act(ni, 0)?;
        let first = self.float(first);
        if node.inputs.len() == 1 {
            self.set(node.output, first);
            return Ok(());
        }
        let mut slots = vec![first.slot];
        let mut c = first.dims.c;
        for k in 1..node.inputs.len() {
            let b = self.act(ni, k)?;
            let b = self.float(b);
            if (b.dims.h, b.dims.w) != (first.dims.h, first.dims.w) || b.logical != first.logical {
                return Err(self.err(ni, "concatenates tensors of different sizes"));
            }
            slots.push(b.slot);
            c += b.dims.c;
        }
        let dst = self.slot(SlotKind::F32);
        self.steps.push(Step::Concat {
            a: slots[0],
            b: slots[1],
            dst,
            more: slots[2..].to_vec(),
        });
        let acc = ActVal {
            slot: dst,
            dims: Dims { c, ..first.dims },
            ..first
        };
        self.set(node.output, acc);
        Ok(())
    }
}
