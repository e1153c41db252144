//! Lowering one Conv2d/Linear layer of a fake-quant graph: its weights quantized once with the
//! fake quantizer's own formula (s8, int4 two per byte, f16 or f32), reordered to the runtime's
//! NHWC layout (conv weights `[cout, kh, kw, cin]`, a Linear after Flatten with its columns
//! permuted), and the following ReLU/Clip and output quantizer fused into the layer's step.
//! Part of [`super`] (`convert.rs`), split out to keep files small.

use super::{ActVal, Builder, Logical, Val};
use crate::kernels::int8::{Int4Kind, int4};
use crate::ops::OpKind;
use crate::ops::fake_quant::quantize_unclamped;
use crate::runtime::error::RuntimeError;
use crate::runtime::spec::{ConvGeom, Dims, LayerKind, LayerSpec, SlotKind, Step, WeightStorage};
use crate::runtime::store::TensorData;
use crate::tensor::slice;

impl Builder<'_> {
    pub(super) fn layer(&mut self, ni: usize) -> Result<(), RuntimeError> {
        let g = self.g;
        let node = &g.nodes[ni];
        let x = self.act(ni, 0)?;
        let wv = node.inputs[1];
        let w = self.vals[wv]
            .clone()
            .ok_or_else(|| self.err(ni, "weight is undefined"))?;
        let wparam = match &w {
            Val::Param(p) | Val::F16Weight(p) | Val::QWeight { param: p, .. } => *p,
            Val::Act(_) | Val::Shuffle { .. } => {
                return Err(self.err(ni, "weights computed at run time are not supported"));
            }
        };
        let wt = &g.params[wparam].tensor;
        let ws = wt.shape().to_vec();
        let wdata = slice(wt);
        let bias = match node.inputs.get(2) {
            Some(&bv) => match self.vals[bv] {
                Some(Val::Param(p)) => Some(slice(&g.params[p].tensor).to_vec()),
                _ => return Err(self.err(ni, "bias must be a stored parameter")),
            },
            None => None,
        };
        let cout = ws[0];
        // Reorder weights to cout x K in the runtime's K order; `perm[k_new] = k_old`.
        let (kind, perm): (LayerKind, Vec<usize>) = match &node.op {
            OpKind::Conv2d(a) => {
                if x.logical != Logical::Image || ws.len() != 4 {
                    return Err(self.err(ni, "convolution needs an image input and a 4-D weight"));
                }
                let (cg, kh, kw) = (ws[1], ws[2], ws[3]);
                let perm = (0..kh)
                    .flat_map(|i| {
                        (0..kw).flat_map(move |j| (0..cg).map(move |c| (c * kh + i) * kw + j))
                    })
                    .collect();
                (
                    LayerKind::Conv(ConvGeom {
                        cin: x.dims.c,
                        kh,
                        kw,
                        stride: a.stride,
                        pads: a.pads,
                        dilation: a.dilation,
                        groups: a.groups,
                    }),
                    perm,
                )
            }
            _ => {
                if ws.len() != 2 || ws[1] != x.dims.elems() {
                    return Err(self.err(ni, "linear weight does not match its input"));
                }
                let perm = match x.logical {
                    Logical::Flat(Some(d)) => (0..d.h * d.w)
                        .flat_map(|p| (0..d.c).map(move |c| c * d.h * d.w + p))
                        .collect(),
                    _ => (0..ws[1]).collect(),
                };
                (LayerKind::Linear { inputs: ws[1] }, perm)
            }
        };
        let k = perm.len();
        if cout == 0 || k == 0 || cout * k != wdata.len() {
            return Err(self.err(ni, "weight shape does not match the layer"));
        }
        let reorder = |v: &[f32]| -> Vec<f32> {
            (0..cout)
                .flat_map(|o| perm.iter().map(move |&kk| v[o * k + kk]))
                .collect()
        };
        let name = node.name.clone();
        let wname = format!("{name}.weight");
        let (storage, wscale, wzp, int_weights) = match &w {
            Val::Param(_) => {
                self.tensors
                    .insert(wname.clone(), TensorData::F32(reorder(wdata)));
                (WeightStorage::F32, vec![], vec![], false)
            }
            Val::F16Weight(_) => {
                let h: Vec<half::f16> = reorder(wdata)
                    .iter()
                    .map(|&v| half::f16::from_f32(v))
                    .collect();
                self.tensors.insert(wname.clone(), TensorData::F16(h));
                (WeightStorage::F16, vec![], vec![], false)
            }
            Val::QWeight {
                qmin,
                qmax,
                scale,
                zero_point,
                ..
            } => {
                let (qmin, qmax) = (*qmin, *qmax);
                let per = |c: usize| if scale.len() == 1 { 0 } else { c };
                let shift = if qmax > 127 { 128 } else { 0 };
                if qmin - shift < -128 || qmax - shift > 127 {
                    return Err(self.err(
                        ni,
                        format!("weight grid {qmin}..={qmax} does not fit 8 bits"),
                    ));
                }
                let ordered = reorder(wdata);
                let q: Vec<i8> = ordered
                    .iter()
                    .enumerate()
                    .map(|(i, &v)| {
                        let c = per(i / k);
                        let inv = 1.0 / scale[c];
                        let zp = zero_point[c] as f32;
                        (quantize_unclamped(v, inv, zp).clamp(qmin as f32, qmax as f32) as i32
                            - shift) as i8
                    })
                    .collect();
                let storage = match (qmin, qmax) {
                    (-8, 7) => WeightStorage::Int4 { signed: true },
                    (0, 15) => WeightStorage::Int4 { signed: false },
                    _ => WeightStorage::S8,
                };
                let data = match storage {
                    WeightStorage::Int4 { signed } => {
                        let kind = if signed { Int4Kind::S4 } else { Int4Kind::U4 };
                        TensorData::U8(
                            int4::pack(&q, kind)
                                .ok_or_else(|| self.err(ni, "int4 packing failed"))?,
                        )
                    }
                    _ => TensorData::I8(q),
                };
                self.tensors.insert(wname.clone(), data);
                (
                    storage,
                    scale.clone(),
                    zero_point.iter().map(|z| z - shift).collect(),
                    true,
                )
            }
            Val::Act(_) | Val::Shuffle { .. } => unreachable!("rejected above"),
        };
        let bname = bias.map(|b| {
            let n = format!("{name}.bias");
            self.tensors.insert(n.clone(), TensorData::F32(b));
            n
        });
        let x = if int_weights && x.q.is_some() {
            x
        } else {
            self.float(x)
        };
        let (act, output, last) = self.fuse_after(node.output);
        let shapes_out = match &kind {
            LayerKind::Conv(geom) => {
                let attrs = crate::ops::Conv2dAttrs {
                    stride: geom.stride,
                    pads: geom.pads,
                    dilation: geom.dilation,
                    groups: geom.groups,
                };
                let s = crate::ops::conv::output_shape(
                    &attrs,
                    &[&[1, x.dims.c, x.dims.h, x.dims.w], &ws[..]],
                )
                .map_err(|e| self.err(ni, e.to_string()))?;
                Dims {
                    h: s[2],
                    w: s[3],
                    c: cout,
                }
            }
            LayerKind::Linear { .. } => Dims::flat(cout),
        };
        let dst = self.slot(if output.is_some() {
            SlotKind::U8
        } else {
            SlotKind::F32
        });
        self.layers.push(LayerSpec {
            name,
            kind: kind.clone(),
            cout,
            storage,
            weight: wname,
            weight_scale: wscale,
            weight_zero_point: wzp,
            bias: bname,
            input: x.q,
            act,
            output,
        });
        self.steps.push(Step::Layer {
            src: x.slot,
            dst,
            layer: self.layers.len() - 1,
        });
        let r = ActVal {
            slot: dst,
            dims: shapes_out,
            q: output,
            logical: match kind {
                LayerKind::Conv(_) => Logical::Image,
                LayerKind::Linear { .. } => Logical::Flat(None),
            },
        };
        self.set(node.output, r);
        self.set(last, r);
        Ok(())
    }
}
