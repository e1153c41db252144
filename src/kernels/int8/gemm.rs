//! The blocked, multi-threaded GEMM driver and its public entry points.
//!
//! Loops (BLIS order, per task): for each K slice of `KC_GROUPS` groups, pack the task's A block
//! (`mc` rows of that slice, ≤ ~150 KB: stays in L2); for each B micro-panel of the task's
//! columns (`kc x nr`, 16 KB: stays in L1 while every A micro-panel streams past it), run the
//! micro-kernel on every `mr`-row micro-panel. The s32 results go to a per-thread scratch block
//! (`mc x nc`, tile-padded, so every tile is whole); once all K slices are summed, an epilogue
//! writes the task's rectangle of the output: raw s32, zero-point compensated s32, or
//! requantized u8/s8. Tasks are (row block, column block) pairs run on rayon; block sizes are
//! shrunk for small problems so that every thread gets work.

use super::Int8Error;
use super::dispatch::{MmmKernel, PackFormat};
use super::float_requant::float_requant_row;
use super::pack::{AlignedBytes, PackedB, avx2_available, pack_a_block};
use super::requant::{QuantOutput, Requant, requant_row};
use rayon::prelude::*;
use std::cell::RefCell;

/// K groups per slice: 256 groups = 512 K values (K2I16) or 1024 (K4I8); the B micro-panel of
/// a slice is `256 · nr · 4` bytes = 16 KB for nr = 16.
const KC_GROUPS: usize = 256;
/// K groups per slice for AMX's 32x32 tiles: 128 groups (512 K values) keep the B micro-panel
/// (16 KB) in L1 while the 16 KB A micro-panels stream from L2 (measured 5-12 % faster than
/// 256 on 1024^3 and 2048^3, Sapphire Rapids class Xeon).
const KC_GROUPS_AMX: usize = 128;

/// The K slice length of a kernel, in groups (a multiple of its `k_groups_multiple`).
fn kc_groups(kernel: &MmmKernel) -> usize {
    if kernel.path == super::KernelPath::Amx {
        KC_GROUPS_AMX
    } else {
        KC_GROUPS
    }
}
/// Rows per task block (largest; a multiple of every kernel's mr: 6, 4 and 8).
const MC: usize = 144;
/// Columns per task block (largest; a multiple of every nr).
const NC: usize = 256;
/// Smallest row block when splitting for threads.
const MC_MIN: usize = 48;
/// Below this many multiply-accumulates a GEMM runs on the calling thread.
const PAR_MIN_MACS: usize = 1 << 20;

/// Whether a GEMM may use the rayon pool.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Parallelism {
    /// On the calling thread only (use inside an already parallel loop).
    Sequential,
    /// Split over the current rayon pool when the problem is large enough.
    Rayon,
}

/// `out[i] = Σ_k a[i, k]` for the rows of a row-major `rows x k` u8 matrix (wrapping s32).
#[inline(always)]
pub(crate) fn row_sums(a: &[u8], k: usize, out: &mut [i32]) {
    if k == 0 {
        out.fill(0);
        return;
    }
    for (o, row) in out.iter_mut().zip(a.chunks_exact(k)) {
        // u32 lanes cannot overflow before k = 2^24; past that the sum wraps like the rest.
        *o = row.iter().fold(0u32, |s, &x| s.wrapping_add(x as u32)) as i32;
    }
}

/// One task's rectangle of the output.
#[derive(Clone, Copy, Debug)]
struct Block {
    i0: usize,
    rows: usize,
    j0: usize,
    cols: usize,
    /// With a direct output, the leading `rows_full x cols_full` part (whole tiles) was written
    /// straight into it; everything else is in the scratch block. 0 x 0 otherwise.
    rows_full: usize,
    cols_full: usize,
}

/// What a task does with its finished s32 block.
trait Epilogue: Sync {
    /// An s32 output (and its row length) whole tiles may be written into directly.
    fn direct(&self) -> Option<(&OutPtr<i32>, usize)> {
        None
    }
    /// `acc` holds the block's part of `A·B` not written directly, `ld` apart (block-relative).
    fn finish(&self, blk: Block, acc: &mut [i32], ld: usize);
}

/// A raw output pointer shared by tasks that write disjoint rectangles of it.
struct OutPtr<T>(*mut T);
// SAFETY: tasks write pairwise disjoint (row block, column block) rectangles of the output,
// each exactly once, and the output borrow outlives the parallel loop (`run` joins it).
unsafe impl<T: Send> Sync for OutPtr<T> {}
// SAFETY: as above.
unsafe impl<T: Send> Send for OutPtr<T> {}

impl<T> OutPtr<T> {
    /// Pointer to element (i, j) of a row-major output with `n` columns.
    ///
    /// SAFETY contract: (i, j) lies inside the output.
    unsafe fn at(&self, n: usize, i: usize, j: usize) -> *mut T {
        // SAFETY: by the contract.
        unsafe { self.0.add(i * n + j) }
    }

    /// Row `i`, columns `j0..j0 + cols` of a row-major output with `n` columns.
    ///
    /// SAFETY contract: the range lies inside the output, and no other live reference covers it.
    #[allow(clippy::mut_from_ref)]
    unsafe fn row(&self, n: usize, i: usize, j0: usize, cols: usize) -> &mut [T] {
        // SAFETY: by the contract.
        unsafe { std::slice::from_raw_parts_mut(self.0.add(i * n + j0), cols) }
    }
}

/// Everything the epilogues add to `A·B`: `Σ (a - za)(b - zb_j) + bias_j =
/// A·B - zb_j · rowsum_i + (bias_j - za · colsum_j + K · za · zb_j)`.
struct Compensation<'a> {
    a: &'a [u8],
    k: usize,
    /// `bias_j - za · colsum_j + K · za · zb_j`, per column.
    col_term: Vec<i32>,
    /// Per-column weight zero points, when any is non-zero.
    zb: Option<&'a [i32]>,
}

impl<'a> Compensation<'a> {
    fn new(a: &'a [u8], k: usize, a_zp: u8, b: &'a PackedB, bias: &[i32]) -> Self {
        let za = a_zp as i32;
        let col_term = (0..b.n)
            .map(|j| {
                let bias = bias.get(j).copied().unwrap_or(0);
                bias.wrapping_sub(za.wrapping_mul(b.col_sums[j]))
                    .wrapping_add((k as i32).wrapping_mul(za).wrapping_mul(b.zero_points[j]))
            })
            .collect();
        let zb = b
            .zero_points
            .iter()
            .any(|&z| z != 0)
            .then_some(&b.zero_points[..]);
        Self { a, k, col_term, zb }
    }

    /// Row sums of A for rows `i0..i0 + rows` (empty when no weight zero point is set).
    fn row_sums(&self, i0: usize, rows: usize) -> Vec<i32> {
        let mut rs = vec![0i32; if self.zb.is_some() { rows } else { 0 }];
        if self.zb.is_some() {
            let a = &self.a[i0 * self.k..(i0 + rows) * self.k];
            #[cfg(target_arch = "x86_64")]
            if avx2_available() {
                // SAFETY: AVX2 is present.
                unsafe { super::avx2::row_sums_avx2(a, self.k, &mut rs) };
            } else {
                row_sums(a, self.k, &mut rs);
            }
            #[cfg(not(target_arch = "x86_64"))]
            row_sums(a, self.k, &mut rs);
        }
        rs
    }

    /// Adds the compensation to one row (columns `j0..j0 + row.len()`) in place; `rs` from
    /// [`Self::row_sums`], `r` the row's index in it.
    fn apply_row(&self, j0: usize, row: &mut [i32], rs: &[i32], r: usize) {
        let cols = row.len();
        let ct = &self.col_term[j0..j0 + cols];
        add_terms(row, ct, self.zb.map(|z| (&z[j0..j0 + cols], rs[r])));
    }
}

/// `row[j] += ct[j] - zb[j] · rowsum` (wrapping), vectorised by the compiler.
#[inline]
fn add_terms(row: &mut [i32], ct: &[i32], zb: Option<(&[i32], i32)>) {
    match zb {
        None => {
            for (x, &c) in row.iter_mut().zip(ct) {
                *x = x.wrapping_add(c);
            }
        }
        Some((z, s)) => {
            for ((x, &c), &zj) in row.iter_mut().zip(ct).zip(z) {
                *x = x.wrapping_add(c).wrapping_sub(zj.wrapping_mul(s));
            }
        }
    }
}

struct RawEpilogue<'a> {
    out: OutPtr<i32>,
    n: usize,
    comp: Option<Compensation<'a>>,
}

impl Epilogue for RawEpilogue<'_> {
    fn direct(&self) -> Option<(&OutPtr<i32>, usize)> {
        Some((&self.out, self.n))
    }

    fn finish(&self, blk: Block, acc: &mut [i32], ld: usize) {
        let rs = self.comp.as_ref().map(|c| c.row_sums(blk.i0, blk.rows));
        for r in 0..blk.rows {
            // SAFETY: row i0 + r, columns j0..j0 + cols belong to this task's rectangle only,
            // and no tile kernel runs on it any more.
            let dst = unsafe { self.out.row(self.n, blk.i0 + r, blk.j0, blk.cols) };
            let from = if r < blk.rows_full { blk.cols_full } else { 0 };
            dst[from..].copy_from_slice(&acc[r * ld + from..r * ld + blk.cols]);
            if let (Some(c), Some(rs)) = (&self.comp, &rs) {
                c.apply_row(blk.j0, dst, rs, r);
            }
        }
    }
}

struct RequantEpilogue<'a, T> {
    out: OutPtr<T>,
    n: usize,
    comp: Compensation<'a>,
    mult: Vec<i32>,
    shift: Vec<u32>,
    zp: i32,
    lo: i32,
    hi: i32,
}

impl<T: QuantOutput> Epilogue for RequantEpilogue<'_, T> {
    fn finish(&self, blk: Block, acc: &mut [i32], ld: usize) {
        let (j0, cols) = (blk.j0, blk.cols);
        let rs = self.comp.row_sums(blk.i0, blk.rows);
        for r in 0..blk.rows {
            let row = &mut acc[r * ld..r * ld + cols];
            self.comp.apply_row(j0, row, &rs, r);
            // SAFETY: row i0 + r, columns j0..j0 + cols belong to this task's rectangle only.
            let dst = unsafe { self.out.row(self.n, blk.i0 + r, j0, cols) };
            requant_row(
                row,
                &self.mult[j0..j0 + cols],
                &self.shift[j0..j0 + cols],
                self.zp,
                self.lo,
                self.hi,
                dst,
            );
        }
    }
}

/// Float requantization to u8, the fake-quant simulation's arithmetic (see [`FloatRequant`]).
struct FloatRequantEpilogue<'a> {
    out: OutPtr<u8>,
    n: usize,
    comp: Compensation<'a>,
    rq: &'a FloatRequant,
    /// The AVX2 row (off on the portable path, so `QATLAS_KERNEL=portable` tests the other).
    simd: bool,
}

impl Epilogue for FloatRequantEpilogue<'_> {
    fn finish(&self, blk: Block, acc: &mut [i32], ld: usize) {
        let (j0, cols) = (blk.j0, blk.cols);
        let rs = self.comp.row_sums(blk.i0, blk.rows);
        let (scale, bias) = (&self.rq.scale[j0..j0 + cols], &self.rq.bias[j0..j0 + cols]);
        let (inv, zp, lo, hi) = (self.rq.inv_out, self.rq.zero_point, self.rq.lo, self.rq.hi);
        for r in 0..blk.rows {
            let row = &mut acc[r * ld..r * ld + cols];
            self.comp.apply_row(j0, row, &rs, r);
            // SAFETY: row i0 + r, columns j0..j0 + cols belong to this task's rectangle only.
            let dst = unsafe { self.out.row(self.n, blk.i0 + r, j0, cols) };
            float_requant_row(self.simd, row, scale, bias, inv, zp, lo, hi, dst);
        }
    }
}

/// Per-thread scratch: the packed A block and the s32 block.
#[derive(Default)]
struct Scratch {
    a: AlignedBytes,
    c: Vec<i32>,
}

thread_local! {
    static SCRATCH: RefCell<Scratch> = RefCell::new(Scratch::default());
}

/// Block sizes for one GEMM.
#[derive(Clone, Copy, Debug)]
struct Plan {
    mc: usize,
    nc: usize,
    blocks_m: usize,
    blocks_n: usize,
}

fn plan(kernel: &MmmKernel, m: usize, n: usize, k: usize, threads: usize) -> Plan {
    let (mr, nr) = (kernel.mr, kernel.nr);
    let mut bm = m.div_ceil(MC).max(1);
    let mut bn = n.div_ceil(NC).max(1);
    if threads > 1 && m * n * k >= PAR_MIN_MACS {
        let want = threads * 2;
        while bm * bn < want {
            if m.div_ceil(bm + 1) >= MC_MIN {
                bm += 1;
            } else if n.div_ceil(bn + 1) >= 2 * nr {
                bn += 1;
            } else {
                break;
            }
        }
    }
    let mc = m.div_ceil(bm).div_ceil(mr).max(1) * mr;
    let nc = n.div_ceil(bn).div_ceil(nr).max(1) * nr;
    Plan {
        mc,
        nc,
        blocks_m: m.div_ceil(mc),
        blocks_n: n.div_ceil(nc),
    }
}

/// Runs `A·B` block by block and hands each finished block to `epi`.
fn run(a: &[u8], m: usize, b: &PackedB, epi: &dyn Epilogue, par: Parallelism) {
    let (kernel, k, n) = (b.kernel, b.k, b.n);
    if m == 0 || n == 0 {
        return;
    }
    let threads = match par {
        Parallelism::Rayon => rayon::current_num_threads(),
        Parallelism::Sequential => 1,
    };
    let p = plan(kernel, m, n, k, threads);
    let (mr, nr, kg) = (kernel.mr, kernel.nr, kernel.format.k_group());
    let task = |t: usize| {
        let (bi, bj) = (t / p.blocks_n, t % p.blocks_n);
        let (i0, j0) = (bi * p.mc, bj * p.nc);
        let rows = p.mc.min(m - i0);
        let cols = p.nc.min(n - j0);
        let rows_p = rows.div_ceil(mr) * mr;
        let panels = cols.div_ceil(nr);
        let ldc = panels * nr;
        let direct = epi.direct();
        let blk = Block {
            i0,
            rows,
            j0,
            cols,
            rows_full: if direct.is_some() { rows / mr * mr } else { 0 },
            cols_full: if direct.is_some() { cols / nr * nr } else { 0 },
        };
        SCRATCH.with_borrow_mut(|s| {
            // Every element is written by the first K slice (no accumulate), so no zero fill.
            if s.c.len() < rows_p * ldc {
                s.c.resize(rows_p * ldc, 0);
            }
            if b.groups == 0 {
                s.c.fill(0);
                let blk = Block {
                    rows_full: 0,
                    cols_full: 0,
                    ..blk
                };
                epi.finish(blk, &mut s.c, ldc);
                return;
            }
            // A row block read in place: with K4I8 (bytes as they come), K a whole number of
            // groups and no padding rows, the packed block would be a plain copy of it. Done
            // where A is read by at most two column panels (narrow layers: the copy would cost
            // as much as the products); wider blocks keep the packed copy, whose short rows
            // stay in cache while every panel reads them.
            // (`k_groups_multiple == 1`: the kernel wants no K padding beyond whole groups;
            // AMX pads K to whole tiles.)
            let in_place = kernel.format == PackFormat::K4I8
                && kernel.k_groups_multiple == 1
                && k % kg == 0
                && rows == rows_p
                && panels <= 2;
            let kc = kc_groups(kernel);
            for g0 in (0..b.groups).step_by(kc) {
                let gl = kc.min(b.groups - g0);
                let (k0, kl) = (g0 * kg, (gl * kg).min(k.saturating_sub(g0 * kg)));
                let (ap, lda) = if in_place {
                    (&a[i0 * k + k0..], k)
                } else {
                    let lda = gl * 4;
                    s.a.resize(rows_p * lda);
                    pack_a_block(
                        kernel.format,
                        a,
                        k,
                        i0,
                        rows,
                        rows_p,
                        k0,
                        kl,
                        lda,
                        s.a.as_mut_slice(),
                    );
                    (s.a.as_slice(), lda)
                };
                for jp in 0..panels {
                    let bp = b.panel(j0 / nr + jp, g0, gl);
                    for ip in 0..rows_p / mr {
                        let a_panel = &ap[ip * mr * lda..];
                        match direct {
                            Some((out, n_out))
                                if (ip + 1) * mr <= blk.rows_full
                                    && (jp + 1) * nr <= blk.cols_full =>
                            {
                                // SAFETY: the tile, rows i0 + ip*mr .. +mr and columns
                                // j0 + jp*nr .. +nr, lies inside this task's rectangle of the
                                // m x n output (rows_full <= rows, cols_full <= cols), which no
                                // other task touches; the row length n_out >= nr.
                                unsafe {
                                    let c = out.at(n_out, i0 + ip * mr, j0 + jp * nr);
                                    kernel.run_tile_ptr(gl, a_panel, lda, bp, c, n_out, g0 > 0);
                                }
                            }
                            _ => kernel.run_tile(
                                gl,
                                a_panel,
                                lda,
                                bp,
                                &mut s.c[ip * mr * ldc + jp * nr..],
                                ldc,
                                g0 > 0,
                            ),
                        }
                    }
                }
            }
            epi.finish(blk, &mut s.c, ldc);
        });
    };
    let tasks = p.blocks_m * p.blocks_n;
    // Small problems stay on this thread even when they span several blocks: handing a few
    // microseconds of work to the pool costs more than it saves (batch-1 inference).
    if threads > 1 && tasks > 1 && m * n * k >= PAR_MIN_MACS {
        (0..tasks).into_par_iter().for_each(task);
    } else {
        (0..tasks).for_each(task);
    }
}

fn check_a(a: &[u8], m: usize, b: &PackedB) -> Result<(), Int8Error> {
    if a.len() != m * b.k {
        return Err(Int8Error::Length {
            what: "A (m x k u8)",
            expected: m * b.k,
            found: a.len(),
        });
    }
    Ok(())
}

fn check_out(len: usize, m: usize, n: usize) -> Result<(), Int8Error> {
    if len != m * n {
        return Err(Int8Error::Length {
            what: "C (m x n)",
            expected: m * n,
            found: len,
        });
    }
    Ok(())
}

/// `C = A · B`: `a` is `m x K` row-major u8, `c` is `m x N` row-major s32 (K, N from `b`).
/// Exact; sums past s32 wrap around (only possible for K > 65,793).
pub fn gemm_u8s8_i32(
    a: &[u8],
    m: usize,
    b: &PackedB,
    c: &mut [i32],
    par: Parallelism,
) -> Result<(), Int8Error> {
    check_a(a, m, b)?;
    check_out(c.len(), m, b.n)?;
    let epi = RawEpilogue {
        out: OutPtr(c.as_mut_ptr()),
        n: b.n,
        comp: None,
    };
    run(a, m, b, &epi, par);
    Ok(())
}

/// `C = (A - a_zp) · (B - b_zp)` with `b_zp` from [`PackedB::with_zero_points`], computed as
/// `A·B - b_zp[j] · rowsum_i(A) - a_zp · colsum_j(B) + K · a_zp · b_zp[j]` (wrapping s32).
pub fn gemm_u8s8_i32_zp(
    a: &[u8],
    m: usize,
    a_zp: u8,
    b: &PackedB,
    c: &mut [i32],
    par: Parallelism,
) -> Result<(), Int8Error> {
    check_a(a, m, b)?;
    check_out(c.len(), m, b.n)?;
    let epi = RawEpilogue {
        out: OutPtr(c.as_mut_ptr()),
        n: b.n,
        comp: Some(Compensation::new(a, b.k, a_zp, b, &[])),
    };
    run(a, m, b, &epi, par);
    Ok(())
}

/// Per-column float requantization, the arithmetic of the fake-quant simulation: for output
/// column j, `u = clamp(round_half_even((acc·scale[j] + bias[j])·inv_out) + zero_point, lo, hi)`
/// with `acc` the exact s32 `(A − a_zp)·(B − b_zp)` (round half to even as `x + 1.5·2^23 −
/// 1.5·2^23`). An activation (ReLU/ReLU6) is expressed through `lo`/`hi`.
#[derive(Clone, Debug, PartialEq)]
pub struct FloatRequant {
    /// `a_scale · b_scale[j]`, one per output column.
    pub scale: Vec<f32>,
    /// f32 bias, one per output column.
    pub bias: Vec<f32>,
    /// `1 / out_scale`.
    pub inv_out: f32,
    pub zero_point: f32,
    pub lo: f32,
    pub hi: f32,
}

impl FloatRequant {
    /// Requantizes one row of s32 sums of columns `j0..j0 + acc.len()` to u8 (the fused
    /// epilogue's row, with the fastest build the CPU runs), for callers that computed the sums
    /// themselves (grouped convolutions).
    pub fn requant_row(&self, j0: usize, acc: &[i32], dst: &mut [u8]) {
        let j1 = j0 + acc.len();
        float_requant_row(
            true,
            acc,
            &self.scale[j0..j1],
            &self.bias[j0..j1],
            self.inv_out,
            self.zero_point,
            self.lo,
            self.hi,
            dst,
        );
    }
}

/// `out = float_requant((A - a_zp) · (B - b_zp))` to u8 (see [`FloatRequant`]), fused into the
/// GEMM's epilogue (the s32 block is requantized while it is in cache).
pub fn gemm_u8s8_requant_f32(
    a: &[u8],
    m: usize,
    a_zp: u8,
    b: &PackedB,
    rq: &FloatRequant,
    out: &mut [u8],
    par: Parallelism,
) -> Result<(), Int8Error> {
    check_a(a, m, b)?;
    check_out(out.len(), m, b.n)?;
    let n = b.n;
    for (what, len) in [("scales", rq.scale.len()), ("bias", rq.bias.len())] {
        if len != n {
            return Err(Int8Error::PerColumn {
                what,
                n,
                found: len,
            });
        }
    }
    if !(0.0 <= rq.lo && rq.lo <= rq.hi && rq.hi <= 255.0) {
        return Err(Int8Error::Clamp {
            lo: rq.lo as i32,
            hi: rq.hi as i32,
            min: 0,
            max: 255,
        });
    }
    let epi = FloatRequantEpilogue {
        out: OutPtr(out.as_mut_ptr()),
        n,
        comp: Compensation::new(a, b.k, a_zp, b, &[]),
        rq,
        simd: b.path() != super::KernelPath::Portable,
    };
    run(a, m, b, &epi, par);
    Ok(())
}

/// `out = requant((A - a_zp) · (B - b_zp) + bias)` to u8 or s8 (see [`Requant`]).
pub fn gemm_u8s8_requant<T: QuantOutput>(
    a: &[u8],
    m: usize,
    a_zp: u8,
    b: &PackedB,
    rq: &Requant,
    out: &mut [T],
    par: Parallelism,
) -> Result<(), Int8Error> {
    check_a(a, m, b)?;
    check_out(out.len(), m, b.n)?;
    let n = b.n;
    let per_col = |what: &'static str, len: usize, allow_empty: bool| {
        if len == 1 || len == n || (allow_empty && len == 0) {
            Ok(())
        } else {
            Err(Int8Error::PerColumn {
                what,
                n,
                found: len,
            })
        }
    };
    per_col("multipliers", rq.multipliers.len(), false)?;
    per_col("bias", rq.bias.len(), true)?;
    let (lo, hi) = rq.clamp_range::<T>()?;
    let at = |j: usize| rq.multipliers[if rq.multipliers.len() == 1 { 0 } else { j }];
    let bias: Vec<i32> = match rq.bias.len() {
        0 => vec![],
        1 => vec![rq.bias[0]; n],
        _ => rq.bias.clone(),
    };
    for j in 0..rq.multipliers.len() {
        let fm = rq.multipliers[j];
        super::FixedMultiplier::new(fm.mult, fm.rshift)?;
    }
    let epi = RequantEpilogue {
        out: OutPtr(out.as_mut_ptr()),
        n,
        comp: Compensation::new(a, b.k, a_zp, b, &bias),
        mult: (0..n).map(|j| at(j).mult).collect(),
        shift: (0..n).map(|j| at(j).rshift).collect(),
        zp: rq.out_zero_point,
        lo,
        hi,
    };
    run(a, m, b, &epi, par);
    Ok(())
}
