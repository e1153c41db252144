//! One Conv2d/Linear layer made ready to run: integer weights packed once for the int8 GEMM
//! (s8, or int4 unpacked from two-per-byte storage while packing), requantization constants
//! derived from the scales, or f32 weights (fp16 storage converted with F16C, integer storage
//! dequantized exactly as the fake quantizer does) for float layers; and the code that runs it
//! on a chunk of NHWC images.
//!
//! Requantization ([`Requantization::FixedPoint`]): per output channel `c`,
//! `M_c = s_in · s_w[c] · (1/s_out)` (f64, as a 31-bit [`FixedMultiplier`]), bias
//! `round_half_even(b[c] / (s_in · s_w[c]))` in s32, and
//! `u = clamp(zp + round_half_even((acc + bias_q) · M_c), lo, hi)`, fused into the GEMM epilogue
//! when the clamp is one of the kernel's (none, ReLU, ReLU6-style), else applied per row with
//! the same kernel-side `requant_row`. ReLU and Clip become clamps of the output range: since
//! quantization is monotone, `q(relu(y)) = max(q(y), zp)` and `q(clip(y, a, b)) =
//! clamp(q(y), q(a), q(b))` exactly. [`Requantization::Float`] (the default) instead computes
//! `y = acc · (s_in · s_w[c]) + b[c]` in f32 and the fake quantizer's
//! `clamp(round_half_even(y · (1/s_out)) + zp, lo, hi)` (activation as the same exact clamp),
//! in a branch-free loop the compiler vectorizes; the GEMM writes s32 for it.

mod depthwise;
mod float_epilogue;

use super::error::{RuntimeError, invalid};
use super::nhwc::{Unfold, im2row, im2row_banded, im2row_u8};
use super::spec::{Act, Dims, LayerKind, LayerSpec, QGrid, Requantization, WeightStorage};
use super::store::TensorData;
use crate::kernels::int8::{
    Activation, BLayout, FixedMultiplier, FloatRequant, Int4Kind, PackedB, Parallelism, Requant,
    gemm_u8s8_i32_zp, gemm_u8s8_requant, gemm_u8s8_requant_f32, int4, requant_row,
};
use crate::kernels::{MatMut, MatRef, sgemm};
use crate::ops::fake_quant::round_half_even;

/// Scratch buffers a layer uses (per thread, reused across calls).
#[derive(Default)]
pub struct Scratch {
    pub col_u8: Vec<u8>,
    pub col_f32: Vec<f32>,
    pub acc: Vec<i32>,
    pub tmp_f32: Vec<f32>,
    pub tmp_u8: Vec<u8>,
}

/// Integer compute constants.
struct IntParts {
    /// One packed weight matrix per group (`K x cout/groups`).
    packed: Vec<PackedB>,
    zx: u8,
    /// The fused epilogue, when it can express the clamp (one group, u8 output, fixed point).
    fused: Option<Requant>,
    /// The float requantization (u8 output, `Requantization::Float`): fused into the GEMM for
    /// one group and into the depthwise kernel, applied per row to other grouped sums.
    float_rq: Option<FloatRequant>,
    mult: Vec<i32>,
    shift: Vec<u32>,
    bias_q: Vec<i32>,
    /// `s_in · s_w[c]` (float epilogue, f32 output).
    comb: Vec<f32>,
}

enum Compute {
    Int(IntParts),
    /// f32 weights, per group `K x cout/groups` row-major (K-major: the GEMM streams its
    /// weight operand row by row; the `cout x K` order of the model file, read by columns,
    /// costs up to 3x on wide layers).
    Float(Vec<f32>),
}

/// A layer ready to run.
pub struct Layer {
    pub name: String,
    conv: Option<super::spec::ConvGeom>,
    cout: usize,
    groups: usize,
    k: usize,
    input: Dims,
    output: Dims,
    bias: Vec<f32>,
    act: Act,
    /// Output grid with the activation folded into `lo`/`hi` (u8 output), or `None` (f32).
    out: Option<QGrid>,
    compute: Compute,
    /// The direct form of a depthwise convolution (see [`depthwise`]).
    depthwise: Option<depthwise::Depthwise>,
}

/// `groups` blocks of `cg x k` row-major weights, each transposed to `k x cg`.
fn k_major(w: &[f32], groups: usize, cg: usize, k: usize) -> Vec<f32> {
    let w = ndarray::ArrayView3::from_shape((groups, cg, k), w).expect("cout x K weights");
    w.permuted_axes([0, 2, 1]).iter().copied().collect()
}

/// Grows `v` to at least `n` elements (never shrinks: buffers are shared by layers of
/// different sizes, and shrinking then growing would refill them every call).
fn grow<T: Copy + Default>(v: &mut Vec<T>, n: usize) {
    if v.len() < n {
        v.resize(n, T::default());
    }
}

/// An integral f32 in `[0, 255]` as u8, branch-free: adding 2^23 leaves the integer in the low
/// mantissa bits (vectorizes, unlike the saturating `as` cast).
#[inline(always)]
pub(crate) fn to_u8(v: f32) -> u8 {
    (v + 8_388_608.0).to_bits() as u8
}

/// The quantized value of `v` on `g` (before clamping), as the fake quantizer computes it.
fn q_of(v: f32, g: &QGrid) -> i64 {
    (round_half_even(v * g.inv_scale()) + g.zero_point as f32) as i64
}

/// The output grid with the activation applied as a clamp.
fn clamp_grid(g: QGrid, act: Act) -> QGrid {
    let (mut lo, mut hi) = (g.lo as i64, g.hi as i64);
    match act {
        Act::None => {}
        Act::Relu => lo = lo.max(g.zero_point as i64),
        Act::Clip { min, max } => {
            lo = lo.max(q_of(min, &g));
            hi = hi.min(q_of(max, &g));
        }
        // Not clamps: a layer never fuses them (`ModelSpec::shapes` rejects it).
        Act::Sigmoid | Act::HardSigmoid { .. } | Act::HardSwish => {}
    }
    let lo = lo.clamp(0, 255) as i32;
    QGrid {
        lo,
        hi: hi.clamp(lo as i64, 255) as i32,
        ..g
    }
}

/// The kernel activation whose clamp range for u8 is exactly `[g.lo, g.hi]`, if any.
fn kernel_activation(g: &QGrid) -> Option<Activation> {
    match (g.lo, g.hi) {
        (0, 255) => Some(Activation::None),
        (lo, 255) if lo == g.zero_point => Some(Activation::Relu),
        (lo, hi) if lo == g.zero_point => Some(Activation::Relu6 { six: hi - lo }),
        _ => None,
    }
}

fn tensor<'a>(
    tensors: &'a std::collections::BTreeMap<String, TensorData>,
    name: &str,
    layer: &str,
) -> Result<&'a TensorData, RuntimeError> {
    tensors
        .get(name)
        .ok_or_else(|| invalid(format!("layer '{layer}': tensor '{name}' is missing")))
}

/// Integer weights as s8 values, `cout x K` (unpacked from int4 if needed).
fn int_values(l: &LayerSpec, data: &TensorData, len: usize) -> Result<Vec<i8>, RuntimeError> {
    let bad = |what: &str| {
        invalid(format!(
            "layer '{}': weight tensor '{}' must be {what}",
            l.name, l.weight
        ))
    };
    match (l.storage, data) {
        (WeightStorage::S8, TensorData::I8(v)) if v.len() == len => Ok(v.clone()),
        (WeightStorage::S8, _) => Err(bad(&format!("{len} s8 values"))),
        (WeightStorage::Int4 { signed }, TensorData::U8(v)) if v.len() == int4::packed_len(len) => {
            Ok(int4::unpack(v, len, int4_kind(signed)))
        }
        (WeightStorage::Int4 { .. }, _) => Err(bad(&format!(
            "{} bytes of packed int4",
            int4::packed_len(len)
        ))),
        _ => Err(bad("integer")),
    }
}

fn int4_kind(signed: bool) -> Int4Kind {
    if signed { Int4Kind::S4 } else { Int4Kind::U4 }
}

/// `cout x K` f32 weights of a float layer.
fn float_weights(l: &LayerSpec, data: &TensorData, len: usize) -> Result<Vec<f32>, RuntimeError> {
    let per = |v: &[f32], c: usize| v[if v.len() == 1 { 0 } else { c }];
    match (l.storage, data) {
        (WeightStorage::F32, TensorData::F32(v)) if v.len() == len => Ok(v.clone()),
        (WeightStorage::F16, TensorData::F16(v)) if v.len() == len => {
            let mut out = vec![0.0f32; len];
            crate::kernels::f16::f16_to_f32(v, &mut out);
            Ok(out)
        }
        (WeightStorage::S8 | WeightStorage::Int4 { .. }, _) => {
            let q = int_values(l, data, len)?;
            let k = len / l.cout;
            let zp: Vec<f32> = l.weight_zero_point.iter().map(|&z| z as f32).collect();
            Ok(q.iter()
                .enumerate()
                .map(|(i, &v)| {
                    let c = i / k;
                    // The fake quantizer's dequantization: (q − zp) · scale, in f32.
                    (v as f32 - per(&zp, c)) * per(&l.weight_scale, c)
                })
                .collect())
        }
        _ => Err(invalid(format!(
            "layer '{}': weight tensor '{}' does not match storage {:?} ({len} values)",
            l.name, l.weight, l.storage
        ))),
    }
}

impl Layer {
    /// Builds a layer for input `input` / output `output` per-image shapes (validated by
    /// `ModelSpec::shapes`).
    pub fn build(
        l: &LayerSpec,
        tensors: &std::collections::BTreeMap<String, TensorData>,
        input: Dims,
        output: Dims,
        mode: Requantization,
    ) -> Result<Self, RuntimeError> {
        let len = l
            .weight_len()
            .ok_or_else(|| invalid("weight size overflows"))?;
        let k = l.k();
        let (conv, groups) = match &l.kind {
            LayerKind::Conv(g) => (Some(g.clone()), g.groups),
            LayerKind::Linear { .. } => (None, 1),
        };
        let data = tensor(tensors, &l.weight, &l.name)?;
        let bias = match &l.bias {
            Some(b) => match tensor(tensors, b, &l.name)? {
                TensorData::F32(v) if v.len() == l.cout && v.iter().all(|x| x.is_finite()) => {
                    v.clone()
                }
                _ => {
                    return Err(invalid(format!(
                        "layer '{}': bias '{b}' must be {} finite f32 values",
                        l.name, l.cout
                    )));
                }
            },
            None => vec![0.0; l.cout],
        };
        let out = l.output.map(|g| clamp_grid(g, l.act));
        let per_i = |v: &[i32], c: usize| v[if v.len() == 1 { 0 } else { c }];
        let dw_shape = conv
            .as_ref()
            .and_then(|g| depthwise::shape(g, l.cout, input, output));
        let depthwise;
        let compute = match l.input {
            None => {
                let w = float_weights(l, data, len)?;
                depthwise = dw_shape.map(|sh| depthwise::Depthwise::float(sh, &w));
                Compute::Float(k_major(&w, groups, l.cout / groups, k))
            }
            Some(gi) => {
                let q = int_values(l, data, len)?;
                let zp = |c: usize| per_i(&l.weight_zero_point, c);
                depthwise = dw_shape.map(|sh| depthwise::Depthwise::int(sh, &q, zp));
                let per_f = |v: &[f32], c: usize| v[if v.len() == 1 { 0 } else { c }];
                let cg = l.cout / groups;
                let mut packed = Vec::with_capacity(groups);
                // A depthwise layer runs on its direct kernel: no per-channel GEMM packs.
                let gemm_groups = if depthwise.is_some() { 0 } else { groups };
                for g in 0..gemm_groups {
                    let zp: Vec<i32> = (g * cg..(g + 1) * cg)
                        .map(|c| per_i(&l.weight_zero_point, c))
                        .collect();
                    let rows = &q[g * cg * k..(g + 1) * cg * k];
                    let p = match (l.storage, data, groups) {
                        // int4 goes to the packer in its stored two-per-byte form.
                        (WeightStorage::Int4 { signed }, TensorData::U8(bytes), 1) => {
                            PackedB::from_int4(bytes, int4_kind(signed), k, cg, BLayout::NxK)?
                        }
                        _ => PackedB::new(rows, k, cg, BLayout::NxK)?,
                    };
                    packed.push(p.with_zero_points(&zp)?);
                }
                let sx = gi.scale as f64;
                let comb64: Vec<f64> = (0..l.cout)
                    .map(|c| sx * per_f(&l.weight_scale, c) as f64)
                    .collect();
                let (mut mult, mut shift) = (Vec::new(), Vec::new());
                let mut bias_q = Vec::new();
                if let Some(go) = out {
                    let inv = go.inv_scale() as f64;
                    for &cb in &comb64 {
                        let fm = FixedMultiplier::from_real(cb * inv).map_err(|e| {
                            invalid(format!(
                                "layer '{}': requantization multiplier: {e}",
                                l.name
                            ))
                        })?;
                        mult.push(fm.mult);
                        shift.push(fm.rshift);
                    }
                    bias_q = bias
                        .iter()
                        .zip(&comb64)
                        .map(|(&b, &cb)| {
                            let v = (b as f64 / cb).round_ties_even();
                            v.clamp(-1073741824.0, 1073741824.0) as i32
                        })
                        .collect();
                }
                let fused = match (out, mode, groups) {
                    (Some(go), Requantization::FixedPoint, 1) => {
                        kernel_activation(&go).map(|activation| Requant {
                            multipliers: mult
                                .iter()
                                .zip(&shift)
                                .map(|(&m, &s)| FixedMultiplier { mult: m, rshift: s })
                                .collect(),
                            bias: bias_q.clone(),
                            out_zero_point: go.zero_point,
                            activation,
                        })
                    }
                    _ => None,
                };
                let float_rq = match (out, mode) {
                    (Some(go), Requantization::Float) => Some(FloatRequant {
                        scale: comb64.iter().map(|&c| c as f32).collect(),
                        bias: bias.clone(),
                        inv_out: go.inv_scale(),
                        zero_point: go.zero_point as f32,
                        lo: go.lo as f32,
                        hi: go.hi as f32,
                    }),
                    _ => None,
                };
                Compute::Int(IntParts {
                    packed,
                    zx: gi.zero_point as u8,
                    fused,
                    float_rq,
                    mult,
                    shift,
                    bias_q,
                    comb: comb64.iter().map(|&c| c as f32).collect(),
                })
            }
        };
        Ok(Layer {
            name: l.name.clone(),
            conv,
            cout: l.cout,
            groups,
            k,
            input,
            output,
            bias,
            act: l.act,
            out,
            compute,
            depthwise,
        })
    }

    /// The kernel the weights were packed for (integer layers).
    pub fn kernel_name(&self) -> Option<&'static str> {
        match &self.compute {
            Compute::Int(_) if self.depthwise.is_some() => Some("direct depthwise u8 (SIMD)"),
            Compute::Int(p) => p.packed.first().map(|b| b.kernel().name),
            Compute::Float(_) => None,
        }
    }

    /// Rows of the GEMM for `nb` images.
    fn rows(&self, nb: usize) -> usize {
        nb * self.output.h * self.output.w
    }

    /// The GEMM's A operand for group `g`: `rows x K`, from `x` (im2row, or `x` itself for a
    /// Linear or a 1x1 stride-1 unpadded one-group convolution).
    #[allow(clippy::type_complexity)]
    #[allow(clippy::too_many_arguments)]
    fn operand<'a, T: Copy + Send + Sync>(
        &self,
        x: &'a [T],
        nb: usize,
        g: usize,
        pad: T,
        col: &'a mut Vec<T>,
        unfold: Unfold<T>,
        par: Parallelism,
    ) -> &'a [T] {
        let Some(cg) = &self.conv else {
            return x;
        };
        let direct = self.groups == 1
            && cg.kh == 1
            && cg.kw == 1
            && cg.stride == [1, 1]
            && cg.pads == [0; 4];
        if direct {
            return x;
        }
        let (ie, oe) = (self.input.elems(), self.output.h * self.output.w * self.k);
        // Grow only: the buffer is shared by layers of different sizes, and im2row writes
        // every element it hands out.
        if col.len() < nb * oe {
            col.resize(nb * oe, pad);
        }
        let col = &mut col[..nb * oe];
        // One image with the pool at hand (batch 1): its im2row in bands on the pool, as the
        // GEMM after it (below ~256 KB the hand-off costs more than the copy).
        if nb == 1 && par == Parallelism::Rayon && oe * size_of::<T>() >= 1 << 18 {
            im2row_banded(unfold, x, self.input, cg, g, self.output, pad, col);
            return col;
        }
        for i in 0..nb {
            unfold(
                &x[i * ie..(i + 1) * ie],
                self.input,
                cg,
                g,
                self.output,
                pad,
                &mut col[i * oe..(i + 1) * oe],
            );
        }
        col
    }

    /// Runs the layer on `nb` images: `x` is u8 (integer layer) or f32, `out_u8`/`out_f32` the
    /// destination of the output's kind (the other is empty).
    pub fn run(
        &self,
        nb: usize,
        x_u8: &[u8],
        x_f32: &[f32],
        out_u8: &mut [u8],
        out_f32: &mut [f32],
        s: &mut Scratch,
        par: Parallelism,
    ) -> Result<(), RuntimeError> {
        if let Some(dw) = &self.depthwise {
            self.run_depthwise(dw, nb, x_u8, x_f32, out_u8, out_f32, s, par);
            return Ok(());
        }
        let m = self.rows(nb);
        let cg = self.cout / self.groups;
        match &self.compute {
            Compute::Int(p) => {
                for g in 0..self.groups {
                    let a = self.operand(x_u8, nb, g, p.zx, &mut s.col_u8, im2row_u8, par);
                    if let Some(rq) = &p.fused {
                        gemm_u8s8_requant(a, m, p.zx, &p.packed[g], rq, out_u8, par)?;
                        continue;
                    }
                    if let Some(rq) = p.float_rq.as_ref().filter(|_| self.groups == 1) {
                        gemm_u8s8_requant_f32(a, m, p.zx, &p.packed[g], rq, out_u8, par)?;
                        continue;
                    }
                    grow(&mut s.acc, m * cg);
                    let acc = &mut s.acc[..m * cg];
                    gemm_u8s8_i32_zp(a, m, p.zx, &p.packed[g], acc, par)?;
                    self.int_epilogue(p, g * cg, cg, m, acc, out_u8, out_f32, &mut s.tmp_u8);
                }
            }
            Compute::Float(w) => {
                for g in 0..self.groups {
                    let a = self.operand(x_f32, nb, g, 0.0, &mut s.col_f32, im2row::<f32>, par);
                    grow(&mut s.tmp_f32, m * cg);
                    let tmp = &mut s.tmp_f32[..m * cg];
                    sgemm(
                        MatRef::row_major(a, m, self.k),
                        MatRef::row_major(&w[g * cg * self.k..(g + 1) * cg * self.k], self.k, cg),
                        MatMut::row_major(tmp, m, cg),
                        false,
                        par == Parallelism::Rayon,
                    );
                    self.float_epilogue(g * cg, cg, m, tmp, out_u8, out_f32);
                }
            }
        }
        Ok(())
    }

    /// s32 accumulators of output channels `c0..c0 + cg` (`m x cg`) to the output.
    #[allow(clippy::too_many_arguments)]
    fn int_epilogue(
        &self,
        p: &IntParts,
        c0: usize,
        cg: usize,
        m: usize,
        acc: &mut [i32],
        out_u8: &mut [u8],
        out_f32: &mut [f32],
        tmp: &mut Vec<u8>,
    ) {
        for r in 0..m {
            let row = &mut acc[r * cg..(r + 1) * cg];
            let dst = r * self.cout + c0;
            match (self.out, &p.float_rq) {
                // The activation is already in the grid's lo/hi (exact, see the module doc).
                (Some(_), Some(rq)) => rq.requant_row(c0, row, &mut out_u8[dst..dst + cg]),
                // Fixed point (the float mode always carries `float_rq`).
                (Some(go), None) => {
                    row.iter_mut()
                        .zip(&p.bias_q[c0..c0 + cg])
                        .for_each(|(a, &b)| *a = a.wrapping_add(b));
                    tmp.resize(cg, 0);
                    requant_row(
                        row,
                        &p.mult[c0..c0 + cg],
                        &p.shift[c0..c0 + cg],
                        go.zero_point,
                        go.lo,
                        go.hi,
                        &mut tmp[..],
                    );
                    out_u8[dst..dst + cg].copy_from_slice(tmp);
                }
                (None, _) => {
                    for (j, &a) in row.iter().enumerate() {
                        let c = c0 + j;
                        out_f32[dst + j] = self.act.apply(a as f32 * p.comb[c] + self.bias[c]);
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn activation_clamps_match_kernel_forms() {
        let g = QGrid {
            scale: 0.05,
            zero_point: 10,
            lo: 0,
            hi: 255,
        };
        let relu = clamp_grid(g, Act::Relu);
        assert_eq!((relu.lo, relu.hi), (10, 255));
        assert_eq!(kernel_activation(&relu), Some(Activation::Relu));
        // ReLU6 at scale 0.05: 6 / 0.05 = 120 steps above the zero point.
        let r6 = clamp_grid(g, Act::Clip { min: 0.0, max: 6.0 });
        assert_eq!((r6.lo, r6.hi), (10, 130));
        assert_eq!(kernel_activation(&r6), Some(Activation::Relu6 { six: 120 }));
        assert_eq!(kernel_activation(&g), Some(Activation::None));
        let odd = clamp_grid(
            g,
            Act::Clip {
                min: -0.2,
                max: 1.0,
            },
        );
        assert_eq!((odd.lo, odd.hi), (6, 30));
        assert_eq!(kernel_activation(&odd), None);
    }
}
