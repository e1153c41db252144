//! The float requantization of one row of s32 sums to u8 (the epilogue of
//! [`super::gemm_u8s8_requant_f32`]): `clamp(round_half_even((acc·scale + bias)·inv) + zp, lo,
//! hi)`, the fake quantizer's formula operation for operation. Three builds give identical
//! results: portable (vectorized by the compiler), AVX2 intrinsics, and the portable body
//! compiled for AVX-512.

use super::pack::avx2_available;
use crate::kernels::round::round_half_even;

/// `dst[j] = clamp(round_half_even((acc[j]·scale[j] + bias[j])·inv) + zp, lo, hi)` as u8.
#[allow(clippy::too_many_arguments)]
#[inline]
pub(super) fn float_requant_row(
    simd: bool,
    acc: &[i32],
    scale: &[f32],
    bias: &[f32],
    inv: f32,
    zp: f32,
    lo: f32,
    hi: f32,
    dst: &mut [u8],
) {
    #[cfg(target_arch = "x86_64")]
    if simd && std::is_x86_feature_detected!("avx512f") && std::is_x86_feature_detected!("avx512bw")
    {
        // SAFETY: the CPU has the features the function is compiled for.
        unsafe { float_requant_row_avx512(acc, scale, bias, inv, zp, lo, hi, dst) };
        return;
    }
    #[cfg(target_arch = "x86_64")]
    if simd && avx2_available() {
        // SAFETY: AVX2 instructions only; the CPU has AVX2 (checked).
        unsafe { float_requant_row_avx2(acc, scale, bias, inv, zp, lo, hi, dst) };
        return;
    }
    float_requant_row_portable(acc, scale, bias, inv, zp, lo, hi, dst);
}

/// [`float_requant_row_portable`] compiled for AVX-512 (the compiler vectorizes it 16 columns
/// at a time; the same operation sequence, so the same results).
#[cfg(target_arch = "x86_64")]
#[allow(clippy::too_many_arguments)]
#[target_feature(enable = "avx512f,avx512bw")]
fn float_requant_row_avx512(
    acc: &[i32],
    scale: &[f32],
    bias: &[f32],
    inv: f32,
    zp: f32,
    lo: f32,
    hi: f32,
    dst: &mut [u8],
) {
    float_requant_row_portable(acc, scale, bias, inv, zp, lo, hi, dst)
}

/// The portable body of [`float_requant_row`] (written so that it vectorizes: no `clamp`,
/// whose bounds check keeps loops scalar).
#[allow(clippy::too_many_arguments)]
#[inline(always)]
pub(crate) fn float_requant_row_portable(
    acc: &[i32],
    scale: &[f32],
    bias: &[f32],
    inv: f32,
    zp: f32,
    lo: f32,
    hi: f32,
    dst: &mut [u8],
) {
    for (((o, &a), &s), &b) in dst.iter_mut().zip(acc).zip(scale).zip(bias) {
        let y = a as f32 * s + b;
        let q = (round_half_even(y * inv) + zp).max(lo).min(hi);
        // q is an integer in 0..=255: adding 2^23 puts it in the mantissa's low bits.
        *o = (q + 8_388_608.0).to_bits() as u8;
    }
}

/// [`float_requant_row_portable`] with AVX2 intrinsics, 8 columns at a time. The same IEEE
/// single-precision sequence (convert, multiply, add, multiply, round half to even, add, clamp;
/// no FMA contraction), so the results are identical: `vroundps` with round-to-nearest equals the
/// 1.5·2^23 trick for |v| ≤ 2^22, and beyond that both end at `lo` or `hi` after the clamp.
#[cfg(target_arch = "x86_64")]
#[allow(clippy::too_many_arguments)]
#[target_feature(enable = "avx2")]
unsafe fn float_requant_row_avx2(
    acc: &[i32],
    scale: &[f32],
    bias: &[f32],
    inv: f32,
    zp: f32,
    lo: f32,
    hi: f32,
    dst: &mut [u8],
) {
    use std::arch::x86_64::*;
    let n = acc.len().min(scale.len()).min(bias.len()).min(dst.len());
    let full = n / 8 * 8;
    let (vinv, vzp, vlo, vhi) = (
        _mm256_set1_ps(inv),
        _mm256_set1_ps(zp),
        _mm256_set1_ps(lo),
        _mm256_set1_ps(hi),
    );
    let mut j = 0;
    while j < full {
        // SAFETY: j + 8 <= n, and n is at most every slice's length.
        unsafe {
            let a = _mm256_cvtepi32_ps(_mm256_loadu_si256(acc.as_ptr().add(j).cast()));
            let y = _mm256_add_ps(
                _mm256_mul_ps(a, _mm256_loadu_ps(scale.as_ptr().add(j))),
                _mm256_loadu_ps(bias.as_ptr().add(j)),
            );
            let r = _mm256_round_ps::<{ _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC }>(
                _mm256_mul_ps(y, vinv),
            );
            let q = _mm256_min_ps(_mm256_max_ps(_mm256_add_ps(r, vzp), vlo), vhi);
            let i = _mm256_cvtps_epi32(q);
            // 8 x i32 in 0..=255 -> 8 bytes: pack to i16 within lanes, then to u8.
            let w = _mm_packus_epi32(_mm256_castsi256_si128(i), _mm256_extracti128_si256::<1>(i));
            let b = _mm_packus_epi16(w, w);
            _mm_storel_epi64(dst.as_mut_ptr().add(j).cast(), b);
        }
        j += 8;
    }
    float_requant_row_portable(
        &acc[full..n],
        &scale[full..n],
        &bias[full..n],
        inv,
        zp,
        lo,
        hi,
        &mut dst[full..n],
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every build the CPU can run gives the portable result, including ties, clamps and
    /// sums too large for the rounding trick's range.
    #[test]
    fn every_build_matches_the_portable_row() {
        let n = 77;
        let mut seed = 11u32;
        let mut next = || {
            seed = seed.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
            seed
        };
        let mut acc: Vec<i32> = (0..n).map(|_| next() as i32 >> 12).collect();
        acc[0] = i32::MAX;
        acc[1] = i32::MIN;
        acc[2] = 5; // 5 · 0.5 = 2.5: a tie
        let mut scale: Vec<f32> = (0..n).map(|i| 1e-3 * (1 + i % 7) as f32).collect();
        scale[2] = 0.5;
        let bias: Vec<f32> = (0..n).map(|i| i as f32 * 0.25 - 9.0).collect();
        let mut bias = bias;
        bias[2] = 0.0;
        let (inv, zp, lo, hi) = (1.0, 7.0, 0.0, 255.0);
        let mut want = vec![0u8; n];
        float_requant_row_portable(&acc, &scale, &bias, inv, zp, lo, hi, &mut want);
        assert_eq!(want[2], 9, "2.5 rounds to 2, plus the zero point");
        assert_eq!((want[0], want[1]), (255, 0));
        let mut ran = vec!["portable"];
        #[cfg(target_arch = "x86_64")]
        {
            if avx2_available() {
                let mut got = vec![0u8; n];
                // SAFETY: AVX2 is present.
                unsafe { float_requant_row_avx2(&acc, &scale, &bias, inv, zp, lo, hi, &mut got) };
                assert_eq!(got, want, "avx2");
                ran.push("avx2");
            }
            if std::is_x86_feature_detected!("avx512f") && std::is_x86_feature_detected!("avx512bw")
            {
                let mut got = vec![0u8; n];
                // SAFETY: the CPU has the features.
                unsafe { float_requant_row_avx512(&acc, &scale, &bias, inv, zp, lo, hi, &mut got) };
                assert_eq!(got, want, "avx512");
                ran.push("avx512");
            }
        }
        eprintln!("float requantization builds run: {ran:?}");
    }
}
