//! AVX2 micro-kernel `avx2_mmm_u8s8i32_6x16` and AVX2 builds of the packing helpers.
//!
//! Saturation: `vpmaddubsw` (u8 x s8 pairs summed into a *saturating* s16) overflows as soon as
//! two products exceed 32,767 (255·128·2 = 65,280), so it is not used. Both operands are instead
//! widened to s16 once, at packing time (A: u8 zero-extended, per call; B: s8 sign-extended, once
//! per weight matrix), and `vpmaddwd` multiplies s16 pairs into an s32 sum of two products. Each
//! product is at most 32,640 in magnitude, so the pair sum is exact, and `vpaddd` accumulates in
//! s32 with the same wrap-around as the portable reference. On Zen 3 this costs nothing in peak
//! throughput: `vpmaddwd` does 16 MACs like `vpmaddubsw` + `vpmaddwd(·, 1)` do per multiply-pipe
//! instruction, and both run at two per cycle (2 x 16 MACs = 64 int ops / cycle / core).
//!
//! Tile: 6 rows x 16 columns = 12 ymm accumulators, 2 ymm of B, 1 broadcast of A per row: 15 of
//! the 16 ymm registers. Per K pair: 2 B loads + 6 A broadcasts (`vpbroadcastd m32`), 12
//! `vpmaddwd`, 12 `vpaddd` (the multiplies on the 2 multiply pipes, the adds on the other 2).

#[cfg(target_arch = "x86_64")]
pub(crate) use x86::*;

#[cfg(target_arch = "x86_64")]
mod x86 {
    use crate::kernels::int8::dispatch::{KernelPath, MmmKernel, PackFormat};
    use std::arch::x86_64::*;

    /// The AVX2 micro-kernel (format K2I16).
    pub static AVX2_MMM_U8S8I32_6X16: MmmKernel = MmmKernel {
        name: "avx2_mmm_u8s8i32_6x16",
        path: KernelPath::Avx2,
        mr: 6,
        nr: 16,
        format: PackFormat::K2I16,
        k_groups_multiple: 1,
        b_abs_max: 128,
        tile: avx2_mmm_u8s8i32_6x16,
    };

    /// SAFETY contract: the raw micro-kernel contract of `TileFn`, on a CPU with AVX2.
    #[target_feature(enable = "avx2")]
    unsafe fn avx2_mmm_u8s8i32_6x16(
        groups: usize,
        a: *const u8,
        lda: usize,
        b: *const u8,
        c: *mut i32,
        ldc: usize,
        accumulate: bool,
    ) {
        // SAFETY: every pointer below stays within the extents the raw contract guarantees:
        // A rows r < 6 at `a + r*lda`, bytes `4g..4g+4` for g < groups; B bytes `64g..64g+64`;
        // C rows r < 6 at `c + r*ldc`, 16 s32 each. Loads and stores are unaligned forms.
        unsafe {
            let z = _mm256_setzero_si256();
            let (mut c00, mut c01, mut c10, mut c11, mut c20, mut c21) = (z, z, z, z, z, z);
            let (mut c30, mut c31, mut c40, mut c41, mut c50, mut c51) = (z, z, z, z, z, z);
            let a0 = a;
            let a1 = a.add(lda);
            let a2 = a.add(2 * lda);
            let a3 = a.add(3 * lda);
            let a4 = a.add(4 * lda);
            let a5 = a.add(5 * lda);
            let mut bp = b;
            for g in 0..groups {
                let off = g * 4;
                let b0 = _mm256_loadu_si256(bp as *const __m256i);
                let b1 = _mm256_loadu_si256(bp.add(32) as *const __m256i);
                bp = bp.add(64);
                macro_rules! row {
                    ($ar:ident, $x0:ident, $x1:ident) => {
                        let x = _mm256_set1_epi32(($ar.add(off) as *const i32).read_unaligned());
                        $x0 = _mm256_add_epi32($x0, _mm256_madd_epi16(x, b0));
                        $x1 = _mm256_add_epi32($x1, _mm256_madd_epi16(x, b1));
                    };
                }
                row!(a0, c00, c01);
                row!(a1, c10, c11);
                row!(a2, c20, c21);
                row!(a3, c30, c31);
                row!(a4, c40, c41);
                row!(a5, c50, c51);
            }
            macro_rules! store {
                ($r:expr, $x0:ident, $x1:ident) => {
                    let p = c.add($r * ldc) as *mut __m256i;
                    let q = c.add($r * ldc + 8) as *mut __m256i;
                    if accumulate {
                        $x0 = _mm256_add_epi32($x0, _mm256_loadu_si256(p));
                        $x1 = _mm256_add_epi32($x1, _mm256_loadu_si256(q));
                    }
                    _mm256_storeu_si256(p, $x0);
                    _mm256_storeu_si256(q, $x1);
                };
            }
            store!(0, c00, c01);
            store!(1, c10, c11);
            store!(2, c20, c21);
            store!(3, c30, c31);
            store!(4, c40, c41);
            store!(5, c50, c51);
        }
    }

    /// AVX2 micro-kernel for weights with |b| <= 8 (int4 S4), format K4I8: `vpmaddubsw` sums
    /// accumulated in s16 over 8 K groups (at most 8 · 2 · 255 · 8 = 32,640: no saturation),
    /// then widened with `vpmaddwd(·, 1)` and added to the s32 tile.
    pub static AVX2_MMM_U8S4I32_6X16: MmmKernel = MmmKernel {
        name: "avx2_mmm_u8s4i32_6x16",
        path: KernelPath::Avx2,
        mr: 6,
        nr: 16,
        format: PackFormat::K4I8,
        k_groups_multiple: 1,
        b_abs_max: 8,
        tile: avx2_mmm_u8s4i32_6x16,
    };

    /// AVX2 micro-kernel for 7-bit weights, |b| <= 64 (e.g. quantized with a reduced range),
    /// format K4I8: the `vpmaddubsw` → `vpmaddwd(·, 1)` → `vpaddd` chain, exact because a pair
    /// sum is at most 2 · 255 · 64 = 32,640 (no saturation).
    pub static AVX2_MMM_U8S7I32_6X16: MmmKernel = MmmKernel {
        name: "avx2_mmm_u8s7i32_6x16",
        path: KernelPath::Avx2,
        mr: 6,
        nr: 16,
        format: PackFormat::K4I8,
        k_groups_multiple: 1,
        b_abs_max: 64,
        tile: avx2_mmm_u8s7i32_6x16,
    };

    /// SAFETY contract: the raw micro-kernel contract of `TileFn`, on a CPU with AVX2, and
    /// every B byte in -64..=64.
    #[target_feature(enable = "avx2")]
    unsafe fn avx2_mmm_u8s7i32_6x16(
        groups: usize,
        a: *const u8,
        lda: usize,
        b: *const u8,
        c: *mut i32,
        ldc: usize,
        accumulate: bool,
    ) {
        // SAFETY: A rows r < 6 at `a + r*lda`, bytes 4g..4g+4; B bytes 64g..64g+64; C rows
        // r < 6 at `c + r*ldc`, 16 s32 each (raw contract); unaligned forms. With |b| <= 64
        // each `vpmaddubsw` pair sum is exact, and `vpmaddwd(·, 1)` sums two of them in s32.
        unsafe {
            let z = _mm256_setzero_si256();
            let ones = _mm256_set1_epi16(1);
            let (mut c00, mut c01, mut c10, mut c11, mut c20, mut c21) = (z, z, z, z, z, z);
            let (mut c30, mut c31, mut c40, mut c41, mut c50, mut c51) = (z, z, z, z, z, z);
            let a0 = a;
            let a1 = a.add(lda);
            let a2 = a.add(2 * lda);
            let a3 = a.add(3 * lda);
            let a4 = a.add(4 * lda);
            let a5 = a.add(5 * lda);
            let mut bp = b;
            for g in 0..groups {
                let off = g * 4;
                let b0 = _mm256_loadu_si256(bp as *const __m256i);
                let b1 = _mm256_loadu_si256(bp.add(32) as *const __m256i);
                bp = bp.add(64);
                macro_rules! row {
                    ($ar:ident, $x0:ident, $x1:ident) => {
                        let x = _mm256_set1_epi32(($ar.add(off) as *const i32).read_unaligned());
                        let p0 = _mm256_madd_epi16(_mm256_maddubs_epi16(x, b0), ones);
                        let p1 = _mm256_madd_epi16(_mm256_maddubs_epi16(x, b1), ones);
                        $x0 = _mm256_add_epi32($x0, p0);
                        $x1 = _mm256_add_epi32($x1, p1);
                    };
                }
                row!(a0, c00, c01);
                row!(a1, c10, c11);
                row!(a2, c20, c21);
                row!(a3, c30, c31);
                row!(a4, c40, c41);
                row!(a5, c50, c51);
            }
            macro_rules! store {
                ($r:expr, $x0:ident, $x1:ident) => {
                    let p = c.add($r * ldc) as *mut __m256i;
                    let q = c.add($r * ldc + 8) as *mut __m256i;
                    if accumulate {
                        $x0 = _mm256_add_epi32($x0, _mm256_loadu_si256(p));
                        $x1 = _mm256_add_epi32($x1, _mm256_loadu_si256(q));
                    }
                    _mm256_storeu_si256(p, $x0);
                    _mm256_storeu_si256(q, $x1);
                };
            }
            store!(0, c00, c01);
            store!(1, c10, c11);
            store!(2, c20, c21);
            store!(3, c30, c31);
            store!(4, c40, c41);
            store!(5, c50, c51);
        }
    }

    /// As [`AVX2_MMM_U8S4I32_6X16`] for |b| <= 16 (int4 U4 0..15): s16 sums over 4 groups
    /// (at most 4 · 2 · 255 · 16 = 32,640).
    pub static AVX2_MMM_U8S5I32_6X16: MmmKernel = MmmKernel {
        name: "avx2_mmm_u8s5i32_6x16",
        path: KernelPath::Avx2,
        mr: 6,
        nr: 16,
        format: PackFormat::K4I8,
        k_groups_multiple: 1,
        b_abs_max: 16,
        tile: avx2_mmm_u8s5i32_6x16,
    };

    /// SAFETY contract: the raw micro-kernel contract of `TileFn`, on a CPU with AVX2, and
    /// every B byte in -8..=8.
    #[target_feature(enable = "avx2")]
    unsafe fn avx2_mmm_u8s4i32_6x16(
        groups: usize,
        a: *const u8,
        lda: usize,
        b: *const u8,
        c: *mut i32,
        ldc: usize,
        accumulate: bool,
    ) {
        // SAFETY: forwarded contract.
        unsafe { ubs_s16_tile::<8>(groups, a, lda, b, c, ldc, accumulate) }
    }

    /// SAFETY contract: the raw micro-kernel contract of `TileFn`, on a CPU with AVX2, and
    /// every B byte in -16..=16.
    #[target_feature(enable = "avx2")]
    unsafe fn avx2_mmm_u8s5i32_6x16(
        groups: usize,
        a: *const u8,
        lda: usize,
        b: *const u8,
        c: *mut i32,
        ldc: usize,
        accumulate: bool,
    ) {
        // SAFETY: forwarded contract.
        unsafe { ubs_s16_tile::<4>(groups, a, lda, b, c, ldc, accumulate) }
    }

    /// 6x16 tile, K4I8: s16 accumulators flushed to the s32 C tile every `G` groups.
    ///
    /// SAFETY contract: the raw micro-kernel contract, AVX2, and |b| <= 32,767 / (510 · G) for
    /// every B byte (so G groups of pair sums cannot leave s16).
    #[target_feature(enable = "avx2")]
    #[inline]
    unsafe fn ubs_s16_tile<const G: usize>(
        groups: usize,
        a: *const u8,
        lda: usize,
        b: *const u8,
        c: *mut i32,
        ldc: usize,
        accumulate: bool,
    ) {
        // SAFETY: A rows r < 6 at `a + r*lda`, bytes 4g..4g+4 for g < groups; B bytes
        // 64g..64g+64; C rows r < 6 at `c + r*ldc`, 16 s32 each (raw contract). With the
        // weight bound, every s16 lane holds at most G pair sums of magnitude <= 510·|b|, so
        // `vpmaddubsw` never saturates and `vpaddw` never wraps: the sums are exact.
        unsafe {
            let z = _mm256_setzero_si256();
            if !accumulate {
                for r in 0..6 {
                    _mm256_storeu_si256(c.add(r * ldc) as *mut __m256i, z);
                    _mm256_storeu_si256(c.add(r * ldc + 8) as *mut __m256i, z);
                }
            }
            let ones = _mm256_set1_epi16(1);
            let a0 = a;
            let a1 = a.add(lda);
            let a2 = a.add(2 * lda);
            let a3 = a.add(3 * lda);
            let a4 = a.add(4 * lda);
            let a5 = a.add(5 * lda);
            let mut g = 0;
            while g < groups {
                let end = (g + G).min(groups);
                let (mut c00, mut c01, mut c10, mut c11, mut c20, mut c21) = (z, z, z, z, z, z);
                let (mut c30, mut c31, mut c40, mut c41, mut c50, mut c51) = (z, z, z, z, z, z);
                for gg in g..end {
                    let off = gg * 4;
                    let bp = b.add(gg * 64);
                    let b0 = _mm256_loadu_si256(bp as *const __m256i);
                    let b1 = _mm256_loadu_si256(bp.add(32) as *const __m256i);
                    macro_rules! row {
                        ($ar:ident, $x0:ident, $x1:ident) => {
                            let x =
                                _mm256_set1_epi32(($ar.add(off) as *const i32).read_unaligned());
                            $x0 = _mm256_add_epi16($x0, _mm256_maddubs_epi16(x, b0));
                            $x1 = _mm256_add_epi16($x1, _mm256_maddubs_epi16(x, b1));
                        };
                    }
                    row!(a0, c00, c01);
                    row!(a1, c10, c11);
                    row!(a2, c20, c21);
                    row!(a3, c30, c31);
                    row!(a4, c40, c41);
                    row!(a5, c50, c51);
                }
                macro_rules! flush {
                    ($r:expr, $x0:ident, $x1:ident) => {
                        let p = c.add($r * ldc) as *mut __m256i;
                        let q = c.add($r * ldc + 8) as *mut __m256i;
                        let s0 = _mm256_madd_epi16($x0, ones);
                        let s1 = _mm256_madd_epi16($x1, ones);
                        _mm256_storeu_si256(p, _mm256_add_epi32(_mm256_loadu_si256(p), s0));
                        _mm256_storeu_si256(q, _mm256_add_epi32(_mm256_loadu_si256(q), s1));
                    };
                }
                flush!(0, c00, c01);
                flush!(1, c10, c11);
                flush!(2, c20, c21);
                flush!(3, c30, c31);
                flush!(4, c40, c41);
                flush!(5, c50, c51);
                g = end;
            }
        }
    }

    /// `dst[i] = src[i] as i16` (little-endian bytes), compiled for AVX2 (`vpmovzxbw`).
    ///
    /// SAFETY contract: the CPU has AVX2.
    #[target_feature(enable = "avx2")]
    pub(crate) unsafe fn widen_u8_avx2(src: &[u8], dst: &mut [u8]) {
        crate::kernels::int8::pack::widen_u8(src, dst)
    }

    /// Row sums of a row-major u8 matrix, compiled for AVX2.
    ///
    /// SAFETY contract: the CPU has AVX2.
    #[target_feature(enable = "avx2")]
    pub(crate) unsafe fn row_sums_avx2(a: &[u8], k: usize, out: &mut [i32]) {
        crate::kernels::int8::gemm::row_sums(a, k, out)
    }
}
