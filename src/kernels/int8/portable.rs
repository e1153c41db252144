//! Portable references: generic tile kernels over both packed formats (the reference of every
//! SIMD micro-kernel, compared on identical packed inputs), the portable path's own kernel, and
//! naive unpacked GEMMs (the reference of the whole driver).
//!
//! All s32 arithmetic wraps, exactly as `vpaddd`/`vpdpbusd` do, so the paths agree bit for bit
//! even where a huge K would overflow s32 (beyond K = 65,793 for full-range operands).

use super::dispatch::{KernelPath, MmmKernel, PackFormat};

/// The portable path's micro-kernel (format K2I16).
pub static PORTABLE_MMM_U8S8I32_4X16: MmmKernel = MmmKernel {
    name: "portable_mmm_u8s8i32_4x16",
    path: KernelPath::Portable,
    mr: 4,
    nr: 16,
    format: PackFormat::K2I16,
    k_groups_multiple: 1,
    b_abs_max: 128,
    tile: portable_tile::<4, 16, false>,
};

/// Portable twin of `avxvnni_mmm_u8s8i32_6x16` (same K4I8 format and 6x16 tile). Not a
/// selectable path: it lets the VNNI packing layout and driver paths run, and be tested, on
/// CPUs without VNNI, leaving only the VNNI micro-kernel bodies unexecuted there.
pub static PORTABLE_K4I8_MMM_U8S8I32_6X16: MmmKernel = MmmKernel {
    name: "portable_k4i8_mmm_u8s8i32_6x16",
    path: KernelPath::Portable,
    mr: 6,
    nr: 16,
    format: PackFormat::K4I8,
    k_groups_multiple: 1,
    b_abs_max: 128,
    tile: portable_tile::<6, 16, true>,
};

/// Portable twin of `avx512vnni_mmm_u8s8i32_8x32` (K4I8, 8x32); see above.
pub static PORTABLE_K4I8_MMM_U8S8I32_8X32: MmmKernel = MmmKernel {
    name: "portable_k4i8_mmm_u8s8i32_8x32",
    path: KernelPath::Portable,
    mr: 8,
    nr: 32,
    format: PackFormat::K4I8,
    k_groups_multiple: 1,
    b_abs_max: 128,
    tile: portable_tile::<8, 32, true>,
};

/// Portable twin of `amx_mmm_u8s8i32_32x32` (K4I8, 32x32); see above.
pub static PORTABLE_K4I8_MMM_U8S8I32_32X32: MmmKernel = MmmKernel {
    name: "portable_k4i8_mmm_u8s8i32_32x32",
    path: KernelPath::Portable,
    mr: 32,
    nr: 32,
    format: PackFormat::K4I8,
    k_groups_multiple: 16,
    b_abs_max: 128,
    tile: portable_tile::<32, 32, true>,
};

/// The portable twins of the VNNI and AMX kernels.
pub fn vnni_format_twins() -> [&'static MmmKernel; 3] {
    [
        &PORTABLE_K4I8_MMM_U8S8I32_6X16,
        &PORTABLE_K4I8_MMM_U8S8I32_8X32,
        &PORTABLE_K4I8_MMM_U8S8I32_32X32,
    ]
}

/// One `MR x NR` tile in plain Rust, format K4I8 if `K4` else K2I16.
///
/// SAFETY contract: the raw micro-kernel contract of [`super::TileFn`].
unsafe fn portable_tile<const MR: usize, const NR: usize, const K4: bool>(
    groups: usize,
    a: *const u8,
    lda: usize,
    b: *const u8,
    c: *mut i32,
    ldc: usize,
    accumulate: bool,
) {
    // SAFETY: the raw contract guarantees these input extents are readable. The output is
    // written element by element through the pointer: the tile's rows are `ldc` apart and other
    // tasks may write the columns in between, so no `&mut` slice may span them.
    let (a, b) = unsafe {
        (
            std::slice::from_raw_parts(a, (MR - 1) * lda + groups * 4),
            std::slice::from_raw_parts(b, groups * NR * 4),
        )
    };
    let format = if K4 {
        PackFormat::K4I8
    } else {
        PackFormat::K2I16
    };
    let acc = tile_accumulators::<MR, NR>(format, groups, a, lda, b);
    // SAFETY: every `c + r * ldc + j` (r < MR, j < NR) is inside the tile the contract hands
    // to this call alone.
    unsafe { store_tile(&acc, c, ldc, accumulate) };
}

#[inline]
fn i16_at(s: &[u8], i: usize) -> i32 {
    i16::from_le_bytes([s[i], s[i + 1]]) as i32
}

/// The `MR x NR` accumulators of one tile from packed panels, in plain Rust (wrapping s32).
fn tile_accumulators<const MR: usize, const NR: usize>(
    format: PackFormat,
    groups: usize,
    a: &[u8],
    lda: usize,
    b: &[u8],
) -> [[i32; NR]; MR] {
    let mut acc = [[0i32; NR]; MR];
    for g in 0..groups {
        let bg = &b[g * NR * 4..(g + 1) * NR * 4];
        for (r, acc_r) in acc.iter_mut().enumerate() {
            let ag = &a[r * lda + g * 4..r * lda + g * 4 + 4];
            for (j, acc_rj) in acc_r.iter_mut().enumerate() {
                let bj = &bg[j * 4..j * 4 + 4];
                let dot = match format {
                    // vpmaddwd: two s16 x s16 products, summed with wrap-around.
                    PackFormat::K2I16 => {
                        (i16_at(ag, 0) * i16_at(bj, 0)).wrapping_add(i16_at(ag, 2) * i16_at(bj, 2))
                    }
                    // vpdpbusd: four u8 x s8 products (the sum cannot overflow).
                    PackFormat::K4I8 => (0..4).map(|t| ag[t] as i32 * bj[t] as i8 as i32).sum(),
                };
                *acc_rj = acc_rj.wrapping_add(dot);
            }
        }
    }
    acc
}

/// Writes (or adds) a tile at `c`, rows `ldc` apart, one element at a time.
///
/// # Safety
/// `c + r * ldc + j` must be valid for reads and writes for every `r < MR`, `j < NR`, and no
/// other thread may access those elements during the call.
unsafe fn store_tile<const MR: usize, const NR: usize>(
    acc: &[[i32; NR]; MR],
    c: *mut i32,
    ldc: usize,
    accumulate: bool,
) {
    for (r, acc_r) in acc.iter().enumerate() {
        for (j, &v) in acc_r.iter().enumerate() {
            // SAFETY: in the tile, by the function's contract.
            unsafe {
                let d = c.add(r * ldc + j);
                *d = if accumulate { (*d).wrapping_add(v) } else { v };
            }
        }
    }
}

/// One `MR x NR` tile from packed panels, in plain Rust: the reference for every micro-kernel
/// (same arguments as [`MmmKernel::run_tile`]).
#[allow(clippy::too_many_arguments)]
pub fn tile_reference<const MR: usize, const NR: usize>(
    format: PackFormat,
    groups: usize,
    a: &[u8],
    lda: usize,
    b: &[u8],
    c: &mut [i32],
    ldc: usize,
    accumulate: bool,
) {
    let acc = tile_accumulators::<MR, NR>(format, groups, a, lda, b);
    for (r, acc_r) in acc.iter().enumerate() {
        for (j, &v) in acc_r.iter().enumerate() {
            let d = &mut c[r * ldc + j];
            *d = if accumulate { d.wrapping_add(v) } else { v };
        }
    }
}

/// `C = A · B` with A `m x k` row-major u8 and B `k x n` row-major s8, naively, wrapping s32.
pub fn gemm_reference(a: &[u8], b: &[i8], m: usize, k: usize, n: usize) -> Vec<i32> {
    let mut c = vec![0i32; m * n];
    for i in 0..m {
        for p in 0..k {
            let x = a[i * k + p] as i32;
            for j in 0..n {
                c[i * n + j] = c[i * n + j].wrapping_add(x * b[p * n + j] as i32);
            }
        }
    }
    c
}

/// `C = (A - a_zp) · (B - b_zp[j])`, naively, wrapping s32 (`b_zp` has one value per column).
pub fn gemm_zp_reference(
    a: &[u8],
    b: &[i8],
    m: usize,
    k: usize,
    n: usize,
    a_zp: i32,
    b_zp: &[i32],
) -> Vec<i32> {
    let mut c = vec![0i32; m * n];
    for i in 0..m {
        for p in 0..k {
            let x = a[i * k + p] as i32 - a_zp;
            for j in 0..n {
                let w = (b[p * n + j] as i32).wrapping_sub(b_zp[j]);
                c[i * n + j] = c[i * n + j].wrapping_add(x.wrapping_mul(w));
            }
        }
    }
    c
}
