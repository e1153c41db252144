//! The executor: a validated [`ModelSpec`] with its layers built ([`Layer`]), run on a batch
//! split into chunks of images that rayon processes in parallel. Each worker thread keeps its
//! slot buffers and scratch between calls (nothing is allocated per call once warm); within a
//! chunk the steps run in order on the calling thread, and when the whole batch is a single
//! chunk the GEMMs may use the pool instead. The profiler (`super::profile`) runs a whole batch
//! as one chunk with a [`StepTimer`] told as each step ends; the normal path passes `()`.
//!
//! Elementwise steps reproduce the fake-quant simulation's float arithmetic exactly:
//! dequantization is `(u − zp) · s` in f32 (the simulation's `(q − zp) · scale`), quantization
//! `clamp(round_half_even(x · (1/s)) + zp)`, Add sums the two dequantized values in f32, and
//! average pools sum dequantized values in the float op's order (so they are bit-identical too).

use super::error::{RuntimeError, invalid};
use super::layer::{Layer, Scratch, to_u8};
use super::nhwc::{
    Window, avg_pool, chw_to_hwc, hwc_to_chw, max_pool, max_pool_2x2_u8, max_pool_u8, pool_windows,
};
use super::spec::{Act, Dims, ModelSpec, QGrid, SlotKind, Step};
use super::store::TensorData;
use crate::kernels::int8::Parallelism;
use crate::ops::fake_quant::round_half_even;
use crate::ops::par::fast_sum;
use rayon::prelude::*;
use std::cell::RefCell;
use std::collections::BTreeMap;

/// A step with what it needs precomputed.
enum Op {
    Step(Step),
    Pool {
        step: Step,
        windows: Vec<Window>,
        two_by_two: bool,
    },
}

/// A model ready to run.
pub struct Engine {
    ops: Vec<Op>,
    layers: Vec<Layer>,
    dims: Vec<Dims>,
    kinds: Vec<SlotKind>,
    output: usize,
}

/// Per-thread buffers: one per slot, plus layer scratch.
#[derive(Default)]
struct Workspace {
    u8s: Vec<Vec<u8>>,
    f32s: Vec<Vec<f32>>,
    scratch: Scratch,
}

thread_local! {
    static WORKSPACE: RefCell<Workspace> = RefCell::new(Workspace::default());
}

/// Told when each step of a chunk finishes (the profiler's clock). The normal path passes `()`,
/// whose empty inlined method compiles away: `run` carries no timing overhead.
pub(super) trait StepTimer {
    /// Called once before the first step.
    fn start(&mut self);
    /// Called after step `step` (its index in the program) has run.
    fn done(&mut self, step: usize);
}

impl StepTimer for () {
    #[inline(always)]
    fn start(&mut self) {}
    #[inline(always)]
    fn done(&mut self, _: usize) {}
}

#[inline]
fn quantize(v: f32, inv: f32, g: &QGrid) -> u8 {
    // max/min, not `clamp`: its bounds check keeps loops over this scalar. A NaN input gives lo.
    to_u8(
        (round_half_even(v * inv) + g.zero_point as f32)
            .max(g.lo as f32)
            .min(g.hi as f32),
    )
}

#[inline]
fn dequantize(u: u8, g: &QGrid) -> f32 {
    (u as i32 - g.zero_point) as f32 * g.scale
}

/// The destination of an Add step: u8 on `grid`, or f32 when `grid` is `None`.
struct AddOut<'a> {
    grid: Option<&'a QGrid>,
    du: &'a mut [u8],
    df: &'a mut [f32],
    len: usize,
}

/// `out[i] = act(a(i) + b(i))`, quantized when the output is u8: the float Add's formula,
/// with the activation matched here, outside the element loop.
#[inline(always)]
fn add_step<A: Fn(usize) -> f32, B: Fn(usize) -> f32>(a: A, b: B, act: Act, out: AddOut<'_>) {
    match act {
        Act::None => add_loop(a, b, |v| v, out),
        Act::Relu => add_loop(a, b, |v: f32| v.max(0.0), out),
        other => add_loop(a, b, |v| other.apply(v), out),
    }
}

#[inline(always)]
fn add_loop<A: Fn(usize) -> f32, B: Fn(usize) -> f32, F: Fn(f32) -> f32>(
    a: A,
    b: B,
    f: F,
    out: AddOut<'_>,
) {
    match out.grid {
        Some(go) => {
            let inv = go.inv_scale();
            for (i, o) in out.du[..out.len].iter_mut().enumerate() {
                *o = quantize(f(a(i) + b(i)), inv, go);
            }
        }
        None => {
            for (i, o) in out.df[..out.len].iter_mut().enumerate() {
                *o = f(a(i) + b(i));
            }
        }
    }
}

impl Engine {
    /// Validates `spec` against `tensors` and builds every layer.
    pub fn build(
        spec: &ModelSpec,
        tensors: &BTreeMap<String, TensorData>,
    ) -> Result<Self, RuntimeError> {
        let dims = spec.shapes()?;
        let mut layers = Vec::with_capacity(spec.layers.len());
        let mut io = vec![None; spec.layers.len()];
        for s in &spec.steps {
            if let Step::Layer { src, dst, layer } = *s {
                if io[layer].is_some() {
                    return Err(invalid(format!("layer {layer} is used twice")));
                }
                io[layer] = Some((dims[src], dims[dst]));
            }
        }
        for (l, io) in spec.layers.iter().zip(io) {
            let (i, o) = io.ok_or_else(|| invalid(format!("layer '{}' is never used", l.name)))?;
            layers.push(Layer::build(l, tensors, i, o, spec.requantization)?);
        }
        let ops = spec
            .steps
            .iter()
            .map(|s| match s {
                Step::MaxPool { src, dst, pool } | Step::AvgPool { src, dst, pool, .. } => {
                    let (d, o) = (dims[*src], dims[*dst]);
                    let two_by_two = matches!(s, Step::MaxPool { .. })
                        && spec.slots[*src] == SlotKind::U8
                        && pool.kernel == [2, 2]
                        && pool.stride == [2, 2]
                        && pool.pads == [0; 4]
                        && (o.h, o.w) == (d.h / 2, d.w / 2);
                    Op::Pool {
                        step: s.clone(),
                        windows: pool_windows(pool, d, o),
                        two_by_two,
                    }
                }
                _ => Op::Step(s.clone()),
            })
            .collect();
        Ok(Engine {
            ops,
            layers,
            dims,
            kinds: spec.slots.clone(),
            output: spec.output,
        })
    }

    /// Per-image input and output element counts.
    pub fn io_elems(&self) -> (usize, usize) {
        (self.dims[0].elems(), self.dims[self.output].elems())
    }

    /// The layers, in program order.
    pub fn layers(&self) -> &[Layer] {
        &self.layers
    }

    /// Images per parallel chunk for a batch of `n`.
    fn chunk(n: usize) -> usize {
        let t = rayon::current_num_threads().max(1);
        n.div_ceil(t * 2).clamp(1, 8)
    }

    /// Runs `n` images: `x` is `n x input` f32 (NCHW per image), `out` `n x output` f32.
    pub fn run(&self, x: &[f32], n: usize, out: &mut [f32]) -> Result<(), RuntimeError> {
        let (ie, oe) = self.io_elems();
        if x.len() != n * ie || out.len() != n * oe {
            return Err(invalid("input or output buffer has the wrong length"));
        }
        if n == 0 {
            return Ok(());
        }
        let chunk = Self::chunk(n);
        let par = if n <= chunk {
            Parallelism::Rayon
        } else {
            Parallelism::Sequential
        };
        let work = |(xc, oc): (&[f32], &mut [f32])| self.with_workspace(xc, oc, par, &mut ());
        if n <= chunk {
            work((x, out))
        } else {
            x.par_chunks(chunk * ie)
                .zip(out.par_chunks_mut(chunk * oe))
                .try_for_each(work)
        }
    }

    /// Runs all `n` images as one chunk on the calling thread (the GEMMs may use the pool, as
    /// for a batch that fits one chunk), telling `timer` when each step ends. For profiling:
    /// the step times then add up to the run's.
    pub(super) fn run_one_chunk<T: StepTimer>(
        &self,
        x: &[f32],
        n: usize,
        out: &mut [f32],
        timer: &mut T,
    ) -> Result<(), RuntimeError> {
        let (ie, oe) = self.io_elems();
        if n.checked_mul(ie) != Some(x.len()) || n.checked_mul(oe) != Some(out.len()) {
            return Err(invalid("input or output buffer has the wrong length"));
        }
        if n == 0 {
            return Ok(());
        }
        self.with_workspace(x, out, Parallelism::Rayon, timer)
    }

    /// [`Engine::run_chunk`] on this thread's workspace.
    fn with_workspace<T: StepTimer>(
        &self,
        x: &[f32],
        out: &mut [f32],
        par: Parallelism,
        timer: &mut T,
    ) -> Result<(), RuntimeError> {
        WORKSPACE.with(|cell| match cell.try_borrow_mut() {
            Ok(mut ws) => self.run_chunk(&mut ws, x, out, par, timer),
            // Re-entered through rayon work stealing while this thread's workspace is in
            // use (a GEMM waiting on the pool): use a fresh one.
            Err(_) => self.run_chunk(&mut Workspace::default(), x, out, par, timer),
        })
    }

    fn run_chunk<T: StepTimer>(
        &self,
        ws: &mut Workspace,
        x: &[f32],
        out: &mut [f32],
        par: Parallelism,
        timer: &mut T,
    ) -> Result<(), RuntimeError> {
        let nb = x.len() / self.dims[0].elems();
        let slots = self.kinds.len();
        if ws.u8s.len() < slots {
            ws.u8s.resize_with(slots, Vec::new);
            ws.f32s.resize_with(slots, Vec::new);
        }
        timer.start();
        for (i, op) in self.ops.iter().enumerate() {
            let step = match op {
                Op::Step(s) | Op::Pool { step: s, .. } => s,
            };
            let dst = step.dst();
            let len = nb * self.dims[dst].elems();
            let (mut du, mut df) = (Vec::new(), Vec::new());
            match self.kinds[dst] {
                // Grow only (a short last chunk must not make the next call refill).
                SlotKind::U8 => {
                    du = std::mem::take(&mut ws.u8s[dst]);
                    if du.len() < len {
                        du.resize(len, 0);
                    }
                }
                SlotKind::F32 => {
                    df = std::mem::take(&mut ws.f32s[dst]);
                    if df.len() < len {
                        df.resize(len, 0.0);
                    }
                }
            }
            let (lu, lf) = (du.len().min(len), df.len().min(len));
            let res = self.exec(op, step, nb, x, ws, &mut du[..lu], &mut df[..lf], par);
            match self.kinds[dst] {
                SlotKind::U8 => ws.u8s[dst] = du,
                SlotKind::F32 => ws.f32s[dst] = df,
            }
            res?;
            timer.done(i);
        }
        let o = if self.output == 0 {
            x
        } else {
            &ws.f32s[self.output][..out.len()]
        };
        out.copy_from_slice(o);
        Ok(())
    }

    #[allow(clippy::too_many_arguments)]
    fn exec(
        &self,
        op: &Op,
        step: &Step,
        nb: usize,
        x: &[f32],
        ws: &mut Workspace,
        du: &mut [u8],
        df: &mut [f32],
        par: Parallelism,
    ) -> Result<(), RuntimeError> {
        let Workspace { u8s, f32s, scratch } = ws;
        let fsrc = |s: usize| -> &[f32] {
            if s == 0 {
                x
            } else {
                &f32s[s][..nb * self.dims[s].elems()]
            }
        };
        let usrc = |s: usize| -> &[u8] { &u8s[s][..nb * self.dims[s].elems()] };
        match step {
            Step::ToHwc { src, .. } => {
                let d = self.dims[*src];
                let e = d.elems();
                for i in 0..nb {
                    chw_to_hwc(
                        &fsrc(*src)[i * e..(i + 1) * e],
                        d,
                        &mut df[i * e..(i + 1) * e],
                    );
                }
            }
            Step::ToChw { src, .. } => {
                let d = self.dims[*src];
                let e = d.elems();
                for i in 0..nb {
                    hwc_to_chw(
                        &fsrc(*src)[i * e..(i + 1) * e],
                        d,
                        &mut df[i * e..(i + 1) * e],
                    );
                }
            }
            Step::Quantize { src, grid, .. } => {
                let inv = grid.inv_scale();
                du.iter_mut()
                    .zip(fsrc(*src))
                    .for_each(|(o, &v)| *o = quantize(v, inv, grid));
            }
            Step::Dequantize { src, grid, .. } => {
                df.iter_mut()
                    .zip(usrc(*src))
                    .for_each(|(o, &u)| *o = dequantize(u, grid));
            }
            Step::Requantize { src, from, to, .. } => {
                let inv = to.inv_scale();
                du.iter_mut()
                    .zip(usrc(*src))
                    .for_each(|(o, &u)| *o = quantize(dequantize(u, from), inv, to));
            }
            Step::Fp16 { src, .. } => {
                df.iter_mut()
                    .zip(fsrc(*src))
                    .for_each(|(o, &v)| *o = half::f16::from_f32(v).to_f32());
            }
            Step::GatherChannels { src, channels, .. } => {
                let (k, c) = (channels.len().max(1), self.dims[*src].c.max(1));
                match self.kinds[*src] {
                    SlotKind::U8 => {
                        for (o, px) in du.chunks_mut(k).zip(usrc(*src).chunks(c)) {
                            for (d, &p) in o.iter_mut().zip(channels) {
                                *d = px[p];
                            }
                        }
                    }
                    SlotKind::F32 => {
                        for (o, px) in df.chunks_mut(k).zip(fsrc(*src).chunks(c)) {
                            for (d, &p) in o.iter_mut().zip(channels) {
                                *d = px[p];
                            }
                        }
                    }
                }
            }
            Step::BatchNorm {
                src,
                mean,
                inv_std,
                gamma,
                beta,
                ..
            } => {
                let c = self.dims[*src].c.max(1);
                for (px_out, px) in df.chunks_mut(c).zip(fsrc(*src).chunks(c)) {
                    for ch in 0..px.len() {
                        let h = (px[ch] - mean[ch]) * inv_std[ch];
                        px_out[ch] = h * gamma[ch] + beta[ch];
                    }
                }
            }
            Step::Activation { src, act, .. } => {
                df.iter_mut()
                    .zip(fsrc(*src))
                    .for_each(|(o, &v)| *o = act.apply(v));
            }
            Step::ClampU8 { src, lo, .. } => {
                du.iter_mut()
                    .zip(usrc(*src))
                    .for_each(|(o, &u)| *o = u.max(*lo));
            }
            Step::Layer { src, layer, .. } => {
                let l = &self.layers[*layer];
                let (xu, xf): (&[u8], &[f32]) = match self.kinds[*src] {
                    SlotKind::U8 => (usrc(*src), &[]),
                    SlotKind::F32 => (&[], fsrc(*src)),
                };
                l.run(nb, xu, xf, du, df, scratch, par)?;
            }
            Step::MaxPool { src, .. } => {
                let Op::Pool {
                    windows,
                    two_by_two,
                    ..
                } = op
                else {
                    unreachable!("pool steps are built as Op::Pool")
                };
                let (d, o) = (self.dims[*src], self.dims[step.dst()]);
                let (ie, oe) = (d.elems(), o.elems());
                for i in 0..nb {
                    match self.kinds[*src] {
                        SlotKind::U8 if *two_by_two => max_pool_2x2_u8(
                            &usrc(*src)[i * ie..(i + 1) * ie],
                            d,
                            &mut du[i * oe..(i + 1) * oe],
                        ),
                        SlotKind::U8 => max_pool_u8(
                            &usrc(*src)[i * ie..(i + 1) * ie],
                            d,
                            windows,
                            &mut du[i * oe..(i + 1) * oe],
                        ),
                        SlotKind::F32 => max_pool(
                            &fsrc(*src)[i * ie..(i + 1) * ie],
                            d,
                            windows,
                            &mut df[i * oe..(i + 1) * oe],
                        ),
                    }
                }
            }
            Step::AvgPool {
                src, pool, input, ..
            } => {
                let Op::Pool { windows, .. } = op else {
                    unreachable!("pool steps are built as Op::Pool")
                };
                let (d, o) = (self.dims[*src], self.dims[step.dst()]);
                let (ie, oe) = (d.elems(), o.elems());
                let tmp = &mut scratch.tmp_f32;
                for i in 0..nb {
                    // Dequantize (or copy) the image, then sum in the float op's order.
                    if tmp.len() < ie {
                        tmp.resize(ie, 0.0);
                    }
                    let tmp = &mut tmp[..ie];
                    match input {
                        Some(g) => tmp
                            .iter_mut()
                            .zip(&usrc(*src)[i * ie..(i + 1) * ie])
                            .for_each(|(t, &u)| *t = dequantize(u, g)),
                        None => tmp.copy_from_slice(&fsrc(*src)[i * ie..(i + 1) * ie]),
                    }
                    avg_pool(tmp, d, pool, windows, &mut df[i * oe..(i + 1) * oe]);
                }
            }
            Step::GlobalAvgPool { src, input, .. } => {
                let d = self.dims[*src];
                let (ie, hw) = (d.elems(), d.h * d.w);
                let tmp = &mut scratch.tmp_f32;
                if tmp.len() < hw {
                    tmp.resize(hw, 0.0);
                }
                let tmp = &mut tmp[..hw];
                for i in 0..nb {
                    for ch in 0..d.c {
                        // One channel's plane in CHW order, then the float op's `fast_sum`.
                        match input {
                            Some(g) => {
                                let xs = &usrc(*src)[i * ie..(i + 1) * ie];
                                for (t, px) in tmp.iter_mut().zip(xs.chunks_exact(d.c)) {
                                    *t = dequantize(px[ch], g);
                                }
                            }
                            None => {
                                let xs = &fsrc(*src)[i * ie..(i + 1) * ie];
                                for (t, px) in tmp.iter_mut().zip(xs.chunks_exact(d.c)) {
                                    *t = px[ch];
                                }
                            }
                        }
                        df[i * d.c + ch] = fast_sum(&tmp[..]) / hw as f32;
                    }
                }
            }
            Step::Add {
                a,
                b,
                a_grid,
                b_grid,
                act,
                output,
                ..
            } => {
                let len = nb * self.dims[*a].elems();
                // One monomorphised, branch-free loop per input kind pair and activation.
                let out = AddOut {
                    grid: output.as_ref(),
                    du: &mut du[..],
                    df: &mut df[..],
                    len,
                };
                match (a_grid, b_grid) {
                    (Some(ga), Some(gb)) => {
                        let (x, y) = (&usrc(*a)[..len], &usrc(*b)[..len]);
                        add_step(
                            |i| dequantize(x[i], ga),
                            |i| dequantize(y[i], gb),
                            *act,
                            out,
                        )
                    }
                    (Some(ga), None) => {
                        let (x, y) = (&usrc(*a)[..len], &fsrc(*b)[..len]);
                        add_step(|i| dequantize(x[i], ga), |i| y[i], *act, out)
                    }
                    (None, Some(gb)) => {
                        let (x, y) = (&fsrc(*a)[..len], &usrc(*b)[..len]);
                        add_step(|i| x[i], |i| dequantize(y[i], gb), *act, out)
                    }
                    (None, None) => {
                        let (x, y) = (&fsrc(*a)[..len], &fsrc(*b)[..len]);
                        add_step(|i| x[i], |i| y[i], *act, out)
                    }
                }
            }
            Step::Mul { a, b, .. } => {
                let (da, db) = (self.dims[*a], self.dims[*b]);
                let (x, y) = (fsrc(*a), fsrc(*b));
                let len = nb * da.elems();
                if da == db {
                    for (i, o) in df[..len].iter_mut().enumerate() {
                        *o = x[i] * y[i];
                    }
                } else {
                    // y is 1 x 1 x c per image: the same gate for every pixel.
                    let (c, per) = (da.c, da.elems());
                    for ((out, img), gate) in df[..len]
                        .chunks_mut(per)
                        .zip(x.chunks(per))
                        .zip(y.chunks(c))
                    {
                        for (o, px) in out.chunks_mut(c).zip(img.chunks(c)) {
                            for ((o, &v), &s) in o.iter_mut().zip(px).zip(gate) {
                                *o = v * s;
                            }
                        }
                    }
                }
            }
            Step::Concat { a, b, more, .. } => {
                let parts: Vec<(usize, &[f32])> = [*a, *b]
                    .iter()
                    .chain(more)
                    .map(|&s| (self.dims[s].c, fsrc(s)))
                    .collect();
                let pixels = nb * self.dims[*a].h * self.dims[*a].w;
                let mut o = 0;
                for px in 0..pixels {
                    for &(c, x) in &parts {
                        df[o..o + c].copy_from_slice(&x[px * c..(px + 1) * c]);
                        o += c;
                    }
                }
            }
        }
        Ok(())
    }
}
