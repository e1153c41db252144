//! Lowering ShuffleNet's channel shuffle: `Reshape [N, c, h, w] -> [N, g, c / g, h, w]`,
//! `Transpose [0, 2, 1, 3, 4]`, `Reshape -> [N, c, h, w]` becomes one channel permutation of
//! the NHWC slot (u8 or f32, the grid unchanged: a permutation moves values, it computes
//! nothing). The 5-D value in between lives only in the builder ([`Val::Shuffle`]); any
//! other reader of it is an error naming that node. Part of [`super`] (`convert.rs`).

use super::{Builder, Logical, Val};
use crate::runtime::error::RuntimeError;
use crate::runtime::spec::{SlotKind, Step};

impl Builder<'_> {
    /// A Reshape into or out of the 5-D shuffle view; `Ok(false)`: not such a Reshape.
    pub(super) fn shuffle_reshape(&mut self, ni: usize) -> Result<bool, RuntimeError> {
        let node = &self.g.nodes[ni];
        let (vin, vout) = (node.inputs[0], node.output);
        let so = self.shapes[vout].clone();
        match self.vals[vin].clone() {
            Some(Val::Act(x)) if x.logical == Logical::Image && so.len() == 5 => {
                let d = x.dims;
                if so[1] * so[2] != d.c || (so[3], so[4]) != (d.h, d.w) || so[1] == 0 {
                    return Err(self.err(ni, format!("reshape to {so:?} is not a channel split")));
                }
                self.vals[vout] = Some(Val::Shuffle {
                    x,
                    groups: so[1],
                    transposed: false,
                });
                Ok(true)
            }
            Some(Val::Shuffle {
                x,
                groups,
                transposed,
            }) => {
                let d = x.dims;
                if so.len() != 4 || (so[1], so[2], so[3]) != (d.c, d.h, d.w) {
                    return Err(self.err(
                        ni,
                        format!(
                            "reshape of the channel-split view to {so:?} (only back to the image)"
                        ),
                    ));
                }
                if !transposed {
                    self.set(vout, x);
                    return Ok(true);
                }
                // [g, c/g] transposed to [c/g, g]: output channel a·g + b is input b·(c/g) + a.
                let per = d.c / groups;
                let channels = (0..d.c).map(|j| (j % groups) * per + j / groups).collect();
                let kind = if x.q.is_some() {
                    SlotKind::U8
                } else {
                    SlotKind::F32
                };
                let dst = self.slot(kind);
                self.steps.push(Step::GatherChannels {
                    src: x.slot,
                    dst,
                    channels,
                });
                self.set(vout, super::ActVal { slot: dst, ..x });
                Ok(true)
            }
            _ => Ok(false),
        }
    }

    /// A Slice along the channels of an image (ShuffleNet's `chunk`): the channels it keeps.
    pub(super) fn channel_slice(
        &mut self,
        ni: usize,
        a: &crate::ops::layout::SliceAttrs,
    ) -> Result<(), RuntimeError> {
        let x = self.act(ni, 0)?;
        let rank = self.shapes[self.g.nodes[ni].inputs[0]].len();
        if a.axis != 1 || rank != 4 || x.logical != Logical::Image || a.step < 1 {
            return Err(self.err(ni, "slices an axis other than the channels of an image"));
        }
        let c = x.dims.c as i64;
        let (start, end) = (a.start.clamp(0, c), a.end.clamp(0, c));
        let channels: Vec<usize> = (start..end)
            .step_by(a.step as usize)
            .map(|v| v as usize)
            .collect();
        if channels.is_empty() {
            return Err(self.err(ni, "keeps no channel"));
        }
        let kind = if x.q.is_some() {
            SlotKind::U8
        } else {
            SlotKind::F32
        };
        let dst = self.slot(kind);
        let dims = crate::runtime::spec::Dims {
            c: channels.len(),
            ..x.dims
        };
        self.steps.push(Step::GatherChannels {
            src: x.slot,
            dst,
            channels,
        });
        let out = self.g.nodes[ni].output;
        self.set(
            out,
            super::ActVal {
                slot: dst,
                dims,
                ..x
            },
        );
        Ok(())
    }

    /// The Transpose that swaps the two channel axes of the shuffle view; false otherwise.
    pub(super) fn shuffle_transpose(&mut self, ni: usize, perm: &[usize]) -> bool {
        let node = &self.g.nodes[ni];
        let Some(Val::Shuffle {
            x,
            groups,
            transposed,
        }) = self.vals[node.inputs[0]].clone()
        else {
            return false;
        };
        if perm != [0, 2, 1, 3, 4] {
            return false;
        }
        let out = node.output;
        self.vals[out] = Some(Val::Shuffle {
            x,
            groups,
            transposed: !transposed,
        });
        true
    }
}
