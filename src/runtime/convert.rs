//! Lowering a fake-quant graph (what `quant::ptq` / `prepare_from_plan` produce and QAT saves:
//! BatchNorm folded, `FakeQuant` on weights, on layer outputs after their fused ReLU/Clip, and on
//! inputs) into a [`ModelSpec`] plus its tensors.
//!
//! Patterns, in graph order:
//! - `FakeQuant(param)` (integer grid, per channel on axis 0 or per tensor; or fp16): the weight
//!   is quantized here with the fake quantizer's own formula and stored as s8, as int4 two per
//!   byte when its grid is -8..7 / 0..15, or as f16; a plain parameter weight stays f32.
//! - `Conv2d`/`Linear` with integer weights reading a quantized activation compute in integers;
//!   a following `Relu`/`Clip` and output `FakeQuant` (each the only reader of its input) are
//!   fused into the layer's requantization. Other layers compute in f32 (dequantizing their input
//!   if needed), the fused activation and output quantizer still applied in the epilogue.
//! - `FakeQuant` on an activation: quantize (f32 -> u8), nothing (already on that grid), or
//!   requantize; fp16 grids round through half precision.
//! - `Relu` on u8: a clamp at the zero point; `MaxPool` on u8 or f32; `AvgPool` /
//!   `GlobalAvgPool` and `Add` to f32 (an `Add` followed by ReLU/Clip and a `FakeQuant` is fused
//!   into one step writing u8); `Flatten`/`Reshape` to `[N, F]` and `Dropout` move no data.
//!
//! Anything else is an error naming the node. Depends on `graph`, `ops` (attributes and the
//! fake-quant formulas), `kernels::int8::int4`.

use super::error::RuntimeError;
use super::spec::{
    Act, Dims, LayerSpec, ModelSpec, PoolSpec, QGrid, Requantization, SlotKind, Step,
};
use super::store::TensorData;
use crate::data::Normalization;
use crate::graph::{Graph, ParamId, Source, ValueId};
use crate::ops::fake_quant::{effective_scale, effective_zero_point};
use crate::ops::{OpKind, PoolAttrs, QuantGrid};
use crate::tensor::slice;
use std::collections::BTreeMap;

mod elementwise;
mod layer;
mod shuffle;

/// Settings of a conversion.
#[derive(Clone, Debug)]
pub struct ConvertOptions {
    pub requantization: Requantization,
    /// Stored with the model (input preprocessing).
    pub normalization: Normalization,
    pub class_names: Vec<String>,
}

impl Default for ConvertOptions {
    fn default() -> Self {
        ConvertOptions {
            requantization: Requantization::default(),
            normalization: Normalization::identity(),
            class_names: Vec::new(),
        }
    }
}

/// How a flat value's elements are ordered in its slot.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Logical {
    Image,
    /// Flattened; `Some(d)`: stored in HWC order of `d`, which differs from the graph's CHW.
    Flat(Option<Dims>),
}

#[derive(Clone, Copy, Debug)]
struct ActVal {
    slot: usize,
    dims: Dims,
    q: Option<QGrid>,
    logical: Logical,
}

#[derive(Clone, Debug)]
enum Val {
    Act(ActVal),
    Param(ParamId),
    /// An integer fake-quantized weight: grid, effective per-channel (or one) scales and zero
    /// points.
    QWeight {
        param: ParamId,
        qmin: i32,
        qmax: i32,
        scale: Vec<f32>,
        zero_point: Vec<i32>,
    },
    F16Weight(ParamId),
    /// An image viewed as `[N, groups, c / groups, h, w]` (ShuffleNet's channel shuffle),
    /// `transposed` after swapping the two channel axes.
    Shuffle {
        x: ActVal,
        groups: usize,
        transposed: bool,
    },
}

struct Builder<'g> {
    g: &'g Graph,
    readers: Vec<Vec<usize>>,
    vals: Vec<Option<Val>>,
    done: Vec<bool>,
    slots: Vec<SlotKind>,
    steps: Vec<Step>,
    layers: Vec<LayerSpec>,
    tensors: BTreeMap<String, TensorData>,
    /// Every value's shape at batch 2, inferred once.
    shapes: Vec<Vec<usize>>,
}

fn unsupported(g: &Graph, node: usize, problem: impl Into<String>) -> RuntimeError {
    let n = &g.nodes[node];
    RuntimeError::Unsupported {
        node: n.name.clone(),
        op: n.op.name().to_string(),
        problem: problem.into(),
    }
}

/// Converts a fake-quant (or float) graph into an integer model description and its tensors.
pub fn convert(
    g: &Graph,
    opts: &ConvertOptions,
) -> Result<(ModelSpec, BTreeMap<String, TensorData>), RuntimeError> {
    let mut readers = vec![Vec::new(); g.values.len()];
    for (ni, n) in g.nodes.iter().enumerate() {
        for &v in &n.inputs {
            readers[v].push(ni);
        }
    }
    let shapes = g
        .infer_shapes(2)
        .map_err(|e| RuntimeError::Invalid(e.to_string()))?;
    let mut b = Builder {
        g,
        shapes,
        readers,
        vals: vec![None; g.values.len()],
        done: vec![false; g.nodes.len()],
        slots: vec![SlotKind::F32],
        steps: Vec::new(),
        layers: Vec::new(),
        tensors: BTreeMap::new(),
    };
    if g.inputs.len() != 1 || g.outputs.is_empty() {
        return Err(RuntimeError::Invalid(format!(
            "the runtime runs graphs with one input and an output, found {} inputs and {} outputs",
            g.inputs.len(),
            g.outputs.len()
        )));
    }
    let input_shape: [usize; 3] = match g.input_shape[..] {
        [c, h, w] => [c, h, w],
        [f] => [f, 1, 1],
        _ => {
            return Err(RuntimeError::Invalid(format!(
                "input shape {:?} is neither [c, h, w] nor [features]",
                g.input_shape
            )));
        }
    };
    let [c, h, w] = input_shape;
    let mut input = ActVal {
        slot: 0,
        dims: Dims { h, w, c },
        q: None,
        logical: if g.input_shape.len() == 1 {
            Logical::Flat(None)
        } else {
            Logical::Image
        },
    };
    if c > 1 && h * w > 1 {
        let dst = b.slot(SlotKind::F32);
        b.steps.push(Step::ToHwc { src: 0, dst });
        input.slot = dst;
    }
    for (v, val) in g.values.iter().enumerate() {
        match val.source {
            Source::Param(p) => b.vals[v] = Some(Val::Param(p)),
            Source::Input(0) => b.vals[v] = Some(Val::Act(input)),
            _ => {}
        }
    }
    for ni in 0..g.nodes.len() {
        if !b.done[ni] {
            b.node(ni)?;
        }
    }
    let ov = g.outputs[0];
    let out = match b.vals[ov].clone() {
        Some(Val::Act(a)) => a,
        _ => {
            return Err(RuntimeError::Invalid(format!(
                "the graph output '{}' is not an activation",
                g.values[ov].name
            )));
        }
    };
    let mut out = b.float(out);
    let reorder = match out.logical {
        Logical::Flat(Some(_)) => true,
        _ => out.dims.c > 1 && out.dims.h * out.dims.w > 1,
    };
    if reorder {
        let dst = b.slot(SlotKind::F32);
        b.steps.push(Step::ToChw { src: out.slot, dst });
        out.slot = dst;
    }
    let spec = ModelSpec {
        name: g.name.clone(),
        input_shape,
        output_shape: b.shapes[ov].iter().skip(1).copied().collect(),
        slots: b.slots,
        steps: b.steps,
        output: out.slot,
        layers: b.layers,
        requantization: opts.requantization,
        normalization: opts.normalization.clone(),
        class_names: opts.class_names.clone(),
    };
    Ok((spec, b.tensors))
}

impl Builder<'_> {
    fn slot(&mut self, k: SlotKind) -> usize {
        self.slots.push(k);
        self.slots.len() - 1
    }

    fn err(&self, node: usize, problem: impl Into<String>) -> RuntimeError {
        unsupported(self.g, node, problem)
    }

    fn act(&self, node: usize, k: usize) -> Result<ActVal, RuntimeError> {
        let v = self.g.nodes[node].inputs[k];
        match &self.vals[v] {
            Some(Val::Act(a)) => Ok(*a),
            _ => Err(self.err(
                node,
                format!("input '{}' is not an activation", self.g.values[v].name),
            )),
        }
    }

    fn set(&mut self, v: ValueId, a: ActVal) {
        self.vals[v] = Some(Val::Act(a));
    }

    fn param_values(&self, node: usize, k: usize) -> Result<&[f32], RuntimeError> {
        let v = self.g.nodes[node].inputs[k];
        match self.g.param_of(v) {
            Some(p) => Ok(slice(&self.g.params[p].tensor)),
            None => Err(self.err(
                node,
                format!(
                    "input '{}' must be a stored parameter",
                    self.g.values[v].name
                ),
            )),
        }
    }

    /// The value as f32 (a dequantize step if it is u8).
    fn float(&mut self, a: ActVal) -> ActVal {
        match a.q {
            None => a,
            Some(grid) => {
                let dst = self.slot(SlotKind::F32);
                self.steps.push(Step::Dequantize {
                    src: a.slot,
                    dst,
                    grid,
                });
                ActVal {
                    slot: dst,
                    q: None,
                    ..a
                }
            }
        }
    }

    /// The u8 grid of an activation fake quantizer (per tensor only).
    fn act_grid(&self, node: usize) -> Result<QGrid, RuntimeError> {
        let OpKind::FakeQuant(a) = &self.g.nodes[node].op else {
            return Err(self.err(node, "expected a FakeQuant"));
        };
        let QuantGrid::Int { qmin, qmax } = a.grid else {
            return Err(self.err(node, "expected an integer grid"));
        };
        let (s, z) = (self.param_values(node, 1)?, self.param_values(node, 2)?);
        if a.axis.is_some() || s.len() != 1 || z.len() != 1 {
            return Err(self.err(
                node,
                "per-channel activation quantization has no integer lowering",
            ));
        }
        let off = if qmin < 0 { 128 } else { 0 };
        if qmin + off < 0 || qmax + off > 255 {
            return Err(self.err(
                node,
                format!("grid {qmin}..={qmax} does not fit 8-bit activations"),
            ));
        }
        Ok(QGrid {
            scale: effective_scale(s[0]),
            zero_point: effective_zero_point(z[0], qmin, qmax) as i32 + off,
            lo: qmin + off,
            hi: qmax + off,
        })
    }

    /// Whether `node` is an activation fake quantizer with an integer per-tensor grid.
    fn is_int_act_fq(&self, node: usize) -> bool {
        matches!(&self.g.nodes[node].op, OpKind::FakeQuant(a)
            if matches!(a.grid, QuantGrid::Int { .. }) && a.axis.is_none())
            && self.act_grid(node).is_ok()
    }

    /// The only reader of `v`, if `v` has exactly one and is not a graph output.
    fn sole_reader(&self, v: ValueId) -> Option<usize> {
        match self.readers[v][..] {
            [r] if !self.g.outputs.contains(&v) && !self.done[r] => Some(r),
            _ => None,
        }
    }

    /// Looks past `v` for `[Relu | Clip] -> FakeQuant(int)`; marks what it takes as done and
    /// returns (activation, output grid, the value the result stands for).
    fn fuse_after(&mut self, v: ValueId) -> (Act, Option<QGrid>, ValueId) {
        let (mut act, mut last) = (Act::None, v);
        if let Some(r) = self.sole_reader(v) {
            let a = match &self.g.nodes[r].op {
                OpKind::Relu => Some(Act::Relu),
                OpKind::Clip(c) => Some(Act::Clip {
                    min: c.min,
                    max: c.max,
                }),
                _ => None,
            };
            if let Some(a) = a {
                act = a;
                self.done[r] = true;
                last = self.g.nodes[r].output;
            }
        }
        if let Some(r) = self.sole_reader(last)
            && self.is_int_act_fq(r)
            && self.g.nodes[r].inputs[0] == last
            && let Ok(grid) = self.act_grid(r)
        {
            self.done[r] = true;
            return (act, Some(grid), self.g.nodes[r].output);
        }
        (act, None, last)
    }

    fn node(&mut self, ni: usize) -> Result<(), RuntimeError> {
        let g = self.g;
        let node = &g.nodes[ni];
        let out_v = node.output;
        match &node.op {
            OpKind::FakeQuant(a) => {
                let x = node.inputs[0];
                match (&self.vals[x], a.grid) {
                    (Some(Val::Param(p)), QuantGrid::Fp16) => {
                        self.vals[out_v] = Some(Val::F16Weight(*p));
                    }
                    (Some(Val::Param(p)), QuantGrid::Int { qmin, qmax }) => {
                        let p = *p;
                        let shape = g.params[p].tensor.shape();
                        let channels = match a.axis {
                            None => 1,
                            Some(0) if !shape.is_empty() => shape[0],
                            Some(ax) => {
                                return Err(self.err(
                                    ni,
                                    format!("weight quantized along axis {ax}; the runtime needs per-output-channel (axis 0) or per-tensor"),
                                ));
                            }
                        };
                        let (s, z) = (self.param_values(ni, 1)?, self.param_values(ni, 2)?);
                        if s.len() != channels || z.len() != channels {
                            return Err(
                                self.err(ni, "scale/zero point count does not match the weight")
                            );
                        }
                        self.vals[out_v] = Some(Val::QWeight {
                            param: p,
                            qmin,
                            qmax,
                            scale: s.iter().map(|&v| effective_scale(v)).collect(),
                            zero_point: z
                                .iter()
                                .map(|&v| effective_zero_point(v, qmin, qmax) as i32)
                                .collect(),
                        });
                    }
                    (Some(Val::Act(x)), QuantGrid::Int { .. }) => {
                        let x = *x;
                        let grid = self.act_grid(ni)?;
                        let r = match x.q {
                            Some(g0) if g0.same(&grid) => x,
                            Some(from) => {
                                let dst = self.slot(SlotKind::U8);
                                self.steps.push(Step::Requantize {
                                    src: x.slot,
                                    dst,
                                    from,
                                    to: grid,
                                });
                                ActVal {
                                    slot: dst,
                                    q: Some(grid),
                                    ..x
                                }
                            }
                            None => {
                                let dst = self.slot(SlotKind::U8);
                                self.steps.push(Step::Quantize {
                                    src: x.slot,
                                    dst,
                                    grid,
                                });
                                ActVal {
                                    slot: dst,
                                    q: Some(grid),
                                    ..x
                                }
                            }
                        };
                        self.set(out_v, r);
                    }
                    (Some(Val::Act(x)), QuantGrid::Fp16) => {
                        let x = self.float(*x);
                        let dst = self.slot(SlotKind::F32);
                        self.steps.push(Step::Fp16 { src: x.slot, dst });
                        self.set(out_v, ActVal { slot: dst, ..x });
                    }
                    _ => {
                        return Err(self.err(
                            ni,
                            "quantizes a value that is neither a parameter nor an activation",
                        ));
                    }
                }
            }
            OpKind::Conv2d(_) | OpKind::Linear => self.layer(ni)?,
            OpKind::Relu => {
                let x = self.act(ni, 0)?;
                let r = match x.q {
                    Some(gq) => {
                        let dst = self.slot(SlotKind::U8);
                        self.steps.push(Step::ClampU8 {
                            src: x.slot,
                            dst,
                            lo: gq.zero_point as u8,
                        });
                        ActVal { slot: dst, ..x }
                    }
                    None => {
                        let dst = self.slot(SlotKind::F32);
                        self.steps.push(Step::Activation {
                            src: x.slot,
                            dst,
                            act: Act::Relu,
                        });
                        ActVal { slot: dst, ..x }
                    }
                };
                self.set(out_v, r);
            }
            OpKind::Clip(_) | OpKind::Sigmoid | OpKind::HardSigmoid(_) | OpKind::HardSwish => {
                self.activation(ni)?
            }
            OpKind::Mul => self.mul(ni)?,
            OpKind::Concat(c) => self.concat(ni, c.axis)?,
            OpKind::MaxPool2d(p) | OpKind::AvgPool2d(p) => {
                let x = self.act(ni, 0)?;
                if x.logical != Logical::Image {
                    return Err(self.err(ni, "pooling needs an image input"));
                }
                let pool = pool_spec(p);
                let o = crate::ops::pool::output_shape(p, &[1, x.dims.c, x.dims.h, x.dims.w])
                    .map_err(|e| self.err(ni, e.to_string()))?;
                let dims = Dims {
                    h: o[2],
                    w: o[3],
                    c: x.dims.c,
                };
                let r = if matches!(node.op, OpKind::MaxPool2d(_)) {
                    let dst = self.slot(if x.q.is_some() {
                        SlotKind::U8
                    } else {
                        SlotKind::F32
                    });
                    self.steps.push(Step::MaxPool {
                        src: x.slot,
                        dst,
                        pool,
                    });
                    ActVal {
                        slot: dst,
                        dims,
                        ..x
                    }
                } else {
                    let dst = self.slot(SlotKind::F32);
                    self.steps.push(Step::AvgPool {
                        src: x.slot,
                        dst,
                        pool,
                        input: x.q,
                    });
                    ActVal {
                        slot: dst,
                        dims,
                        q: None,
                        ..x
                    }
                };
                self.set(out_v, r);
            }
            OpKind::GlobalAvgPool => {
                let x = self.act(ni, 0)?;
                if x.logical != Logical::Image {
                    return Err(self.err(ni, "pooling needs an image input"));
                }
                let dst = self.slot(SlotKind::F32);
                self.steps.push(Step::GlobalAvgPool {
                    src: x.slot,
                    dst,
                    input: x.q,
                });
                self.set(
                    out_v,
                    ActVal {
                        slot: dst,
                        dims: Dims::flat(x.dims.c),
                        q: None,
                        logical: Logical::Image,
                    },
                );
            }
            OpKind::Reshape(_) if self.shuffle_reshape(ni)? => {}
            OpKind::Transpose(t) if self.shuffle_transpose(ni, &t.perm) => {}
            OpKind::Slice(a) => self.channel_slice(ni, a)?,
            OpKind::Flatten(_) | OpKind::Reshape(_) => {
                let x = self.act(ni, 0)?;
                let (si, so) = (&self.shapes[node.inputs[0]], &self.shapes[out_v]);
                let logical = if so == si {
                    x.logical
                } else if so.len() == 2 && so[0] == 2 {
                    match x.logical {
                        Logical::Image if x.dims.c > 1 && x.dims.h * x.dims.w > 1 => {
                            Logical::Flat(Some(x.dims))
                        }
                        Logical::Image => Logical::Flat(None),
                        l => l,
                    }
                } else {
                    return Err(self.err(
                        ni,
                        format!("reshape {si:?} -> {so:?}: only flattening to [N, features] is supported"),
                    ));
                };
                self.set(out_v, ActVal { logical, ..x });
            }
            OpKind::Dropout(_) => {
                let x = self.act(ni, 0)?;
                self.set(out_v, x);
            }
            OpKind::Add => {
                let (a, bv) = (self.act(ni, 0)?, self.act(ni, 1)?);
                if a.dims != bv.dims || a.logical != bv.logical {
                    return Err(self.err(
                        ni,
                        "adds tensors of different shapes (broadcasting is not supported)",
                    ));
                }
                let (act, output, last) = self.fuse_after(out_v);
                let dst = self.slot(if output.is_some() {
                    SlotKind::U8
                } else {
                    SlotKind::F32
                });
                self.steps.push(Step::Add {
                    a: a.slot,
                    b: bv.slot,
                    dst,
                    a_grid: a.q,
                    b_grid: bv.q,
                    act,
                    output,
                });
                let r = ActVal {
                    slot: dst,
                    q: output,
                    ..a
                };
                self.set(out_v, r);
                self.set(last, r);
            }
            OpKind::BatchNorm2d(a) => self.batch_norm(ni, a.eps)?,
            op => {
                return Err(self.err(ni, format!("{} has no integer-runtime lowering", op.name())));
            }
        }
        Ok(())
    }
}

fn pool_spec(p: &PoolAttrs) -> PoolSpec {
    PoolSpec {
        kernel: p.kernel,
        stride: p.stride,
        pads: p.pads,
        ceil_mode: p.ceil_mode,
        count_include_pad: p.count_include_pad,
    }
}
