//! VNNI micro-kernels: `avxvnni_mmm_u8s8i32_6x16` (VEX `vpdpbusd` on ymm) and
//! `avx512vnni_mmm_u8s8i32_8x32` (EVEX `vpdpbusd` on zmm). Both use format K4I8: A bytes as they
//! come (u8), B bytes as they come (s8), four K values per dword. `vpdpbusd` multiplies the four
//! u8 x s8 pairs of each dword and adds the exact sum (at most 4·32,640) to the s32 accumulator
//! with wrap-around: no intermediate saturation, so no widening is needed.
//!
//! Both are selected only after `is_x86_feature_detected!`; their bit-exactness tests ran on AMD
//! Zen 4 / Zen 5 (AVX-512 VNNI) and an Intel Xeon with AVX-VNNI and AMX, and skip with a message
//! (a failure under `.ci/run`'s `QATLAS_REQUIRE_PATHS`) on CPUs without the feature.

#[cfg(target_arch = "x86_64")]
pub(crate) use x86::*;

#[cfg(target_arch = "x86_64")]
mod x86 {
    use crate::kernels::int8::dispatch::{KernelPath, MmmKernel, PackFormat};
    use std::arch::x86_64::*;

    /// AVX-VNNI micro-kernel (format K4I8).
    pub static AVXVNNI_MMM_U8S8I32_6X16: MmmKernel = MmmKernel {
        name: "avxvnni_mmm_u8s8i32_6x16",
        path: KernelPath::AvxVnni,
        mr: 6,
        nr: 16,
        format: PackFormat::K4I8,
        k_groups_multiple: 1,
        b_abs_max: 128,
        tile: avxvnni_mmm_u8s8i32_6x16,
    };

    /// AVX-512 VNNI micro-kernel (format K4I8).
    pub static AVX512VNNI_MMM_U8S8I32_8X32: MmmKernel = MmmKernel {
        name: "avx512vnni_mmm_u8s8i32_8x32",
        path: KernelPath::Avx512Vnni,
        mr: 8,
        nr: 32,
        format: PackFormat::K4I8,
        k_groups_multiple: 1,
        b_abs_max: 128,
        tile: avx512vnni_mmm_u8s8i32_8x32,
    };

    /// SAFETY contract: the raw micro-kernel contract of `TileFn`, on a CPU with AVX-VNNI.
    #[target_feature(enable = "avx2,avxvnni")]
    unsafe fn avxvnni_mmm_u8s8i32_6x16(
        groups: usize,
        a: *const u8,
        lda: usize,
        b: *const u8,
        c: *mut i32,
        ldc: usize,
        accumulate: bool,
    ) {
        // SAFETY: as for the AVX2 kernel: A rows r < 6, bytes 4g..4g+4; B bytes 64g..64g+64;
        // C rows r < 6, 16 s32 each; all accesses unaligned forms.
        unsafe {
            let z = _mm256_setzero_si256();
            let (mut c00, mut c01, mut c10, mut c11, mut c20, mut c21) = (z, z, z, z, z, z);
            let (mut c30, mut c31, mut c40, mut c41, mut c50, mut c51) = (z, z, z, z, z, z);
            let rows = [
                a,
                a.add(lda),
                a.add(2 * lda),
                a.add(3 * lda),
                a.add(4 * lda),
                a.add(5 * lda),
            ];
            let mut bp = b;
            for g in 0..groups {
                let off = g * 4;
                let b0 = _mm256_loadu_si256(bp as *const __m256i);
                let b1 = _mm256_loadu_si256(bp.add(32) as *const __m256i);
                bp = bp.add(64);
                macro_rules! row {
                    ($r:expr, $x0:ident, $x1:ident) => {
                        let x =
                            _mm256_set1_epi32((rows[$r].add(off) as *const i32).read_unaligned());
                        $x0 = _mm256_dpbusd_avx_epi32($x0, x, b0);
                        $x1 = _mm256_dpbusd_avx_epi32($x1, x, b1);
                    };
                }
                row!(0, c00, c01);
                row!(1, c10, c11);
                row!(2, c20, c21);
                row!(3, c30, c31);
                row!(4, c40, c41);
                row!(5, c50, c51);
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

    /// SAFETY contract: the raw micro-kernel contract of `TileFn`, on a CPU with AVX-512 F, BW
    /// and VNNI.
    #[target_feature(enable = "avx512f,avx512bw,avx512vnni")]
    unsafe fn avx512vnni_mmm_u8s8i32_8x32(
        groups: usize,
        a: *const u8,
        lda: usize,
        b: *const u8,
        c: *mut i32,
        ldc: usize,
        accumulate: bool,
    ) {
        // SAFETY: A rows r < 8 at `a + r*lda`, bytes 4g..4g+4; B bytes 128g..128g+128; C rows
        // r < 8 at `c + r*ldc`, 32 s32 each; all accesses unaligned forms.
        unsafe {
            let mut acc = [[_mm512_setzero_si512(); 2]; 8];
            let mut bp = b;
            for g in 0..groups {
                let off = g * 4;
                let b0 = _mm512_loadu_si512(bp as *const __m512i);
                let b1 = _mm512_loadu_si512(bp.add(64) as *const __m512i);
                bp = bp.add(128);
                for (r, acc_r) in acc.iter_mut().enumerate() {
                    let x =
                        _mm512_set1_epi32((a.add(r * lda + off) as *const i32).read_unaligned());
                    acc_r[0] = _mm512_dpbusd_epi32(acc_r[0], x, b0);
                    acc_r[1] = _mm512_dpbusd_epi32(acc_r[1], x, b1);
                }
            }
            for (r, acc_r) in acc.iter_mut().enumerate() {
                let p = c.add(r * ldc) as *mut __m512i;
                let q = c.add(r * ldc + 16) as *mut __m512i;
                if accumulate {
                    acc_r[0] = _mm512_add_epi32(acc_r[0], _mm512_loadu_si512(p));
                    acc_r[1] = _mm512_add_epi32(acc_r[1], _mm512_loadu_si512(q));
                }
                _mm512_storeu_si512(p, acc_r[0]);
                _mm512_storeu_si512(q, acc_r[1]);
            }
        }
    }
}
