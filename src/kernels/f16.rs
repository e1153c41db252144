//! fp16 weights: conversion between `half::f16` storage and f32 compute, with F16C
//! (`vcvtph2ps` / `vcvtps2ph`, 8 values per instruction) when the CPU has it and a portable
//! bit-level fallback otherwise. Both directions are bit-exact with `half`'s conversions:
//! f16 -> f32 is exact (NaNs keep sign and payload, quiet bit set); f32 -> f16 rounds to
//! nearest even, overflows to infinity, and keeps NaNs NaN (payload truncated, quiet bit set).

use half::f16;

/// Portable f16 -> f32 (exact).
#[inline]
pub fn f16_to_f32_portable(h: u16) -> f32 {
    let sign = ((h & 0x8000) as u32) << 16;
    let exp = ((h >> 10) & 0x1f) as u32;
    let man = (h & 0x3ff) as u32;
    let bits = match exp {
        0 if man == 0 => sign,
        0 => {
            // Subnormal: value = man · 2^-24; normalise the mantissa.
            let shift = man.leading_zeros() - 21; // bring the leading 1 to bit 10
            let m = (man << shift) & 0x3ff;
            let e = 127 - 15 + 1 - shift;
            sign | (e << 23) | (m << 13)
        }
        0x1f if man == 0 => sign | 0x7f80_0000,
        0x1f => sign | 0x7fc0_0000 | (man << 13),
        _ => sign | ((exp + 127 - 15) << 23) | (man << 13),
    };
    f32::from_bits(bits)
}

/// Portable f32 -> f16, round to nearest even.
#[inline]
pub fn f32_to_f16_portable(x: f32) -> u16 {
    let b = x.to_bits();
    let sign = ((b >> 16) & 0x8000) as u16;
    let exp = ((b >> 23) & 0xff) as i32;
    let man = b & 0x7f_ffff;
    if exp == 0xff {
        return if man == 0 {
            sign | 0x7c00
        } else {
            sign | 0x7e00 | (man >> 13) as u16
        };
    }
    let e = exp - 127 + 15;
    if e >= 0x1f {
        return sign | 0x7c00;
    }
    if e <= 0 {
        // Subnormal or zero in f16: value = full · 2^(exp - 150); f16 unit is 2^-24.
        if e < -10 {
            return sign; // below half the smallest subnormal (ties to 0 handled: < 2^-25)
        }
        let full = man | 0x80_0000;
        let shift = (14 - e) as u32; // 150 - exp - 24 + 1 ... = 1 - e + 13
        let q = full >> shift;
        let rem = full & ((1 << shift) - 1);
        let half = 1 << (shift - 1);
        let q = if rem > half || (rem == half && q & 1 == 1) {
            q + 1
        } else {
            q
        };
        return sign | q as u16;
    }
    let q = ((e as u32) << 10) | (man >> 13);
    let rem = man & 0x1fff;
    // A carry out of the mantissa correctly bumps the exponent (up to infinity).
    let q = if rem > 0x1000 || (rem == 0x1000 && q & 1 == 1) {
        q + 1
    } else {
        q
    };
    sign | q as u16
}

/// `dst[i] = f32(src[i])`; F16C when available. Panics if the lengths differ.
pub fn f16_to_f32(src: &[f16], dst: &mut [f32]) {
    assert_eq!(src.len(), dst.len(), "f16_to_f32 lengths");
    #[cfg(target_arch = "x86_64")]
    if f16c_available() {
        // SAFETY: F16C and AVX are present; lengths are equal (checked above).
        unsafe { x86::f16_to_f32_f16c(src, dst) };
        return;
    }
    for (d, s) in dst.iter_mut().zip(src) {
        *d = f16_to_f32_portable(s.to_bits());
    }
}

/// `dst[i] = f16(src[i])`, round to nearest even; F16C when available.
pub fn f32_to_f16(src: &[f32], dst: &mut [f16]) {
    assert_eq!(src.len(), dst.len(), "f32_to_f16 lengths");
    #[cfg(target_arch = "x86_64")]
    if f16c_available() {
        // SAFETY: F16C and AVX are present; lengths are equal (checked above).
        unsafe { x86::f32_to_f16_f16c(src, dst) };
        return;
    }
    for (d, s) in dst.iter_mut().zip(src) {
        *d = f16::from_bits(f32_to_f16_portable(*s));
    }
}

/// Whether the F16C path runs on this CPU.
pub fn f16c_available() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        std::is_x86_feature_detected!("f16c") && std::is_x86_feature_detected!("avx")
    }
    #[cfg(not(target_arch = "x86_64"))]
    false
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use half::f16;
    use std::arch::x86_64::*;

    /// SAFETY contract: the CPU has F16C and AVX; `dst.len() == src.len()`.
    #[target_feature(enable = "avx,f16c")]
    pub(super) unsafe fn f16_to_f32_f16c(src: &[f16], dst: &mut [f32]) {
        let body = src.len() / 8 * 8;
        // SAFETY: i + 8 <= body <= len for both slices; `f16` is a transparent u16; unaligned
        // load and store forms.
        unsafe {
            for i in (0..body).step_by(8) {
                let h = _mm_loadu_si128(src.as_ptr().add(i) as *const __m128i);
                _mm256_storeu_ps(dst.as_mut_ptr().add(i), _mm256_cvtph_ps(h));
            }
        }
        for i in body..src.len() {
            dst[i] = super::f16_to_f32_portable(src[i].to_bits());
        }
    }

    /// SAFETY contract: the CPU has F16C and AVX; `dst.len() == src.len()`.
    #[target_feature(enable = "avx,f16c")]
    pub(super) unsafe fn f32_to_f16_f16c(src: &[f32], dst: &mut [f16]) {
        let body = src.len() / 8 * 8;
        // SAFETY: as above.
        unsafe {
            for i in (0..body).step_by(8) {
                let x = _mm256_loadu_ps(src.as_ptr().add(i));
                let h = _mm256_cvtps_ph::<{ _MM_FROUND_TO_NEAREST_INT }>(x);
                _mm_storeu_si128(dst.as_mut_ptr().add(i) as *mut __m128i, h);
            }
        }
        for i in body..src.len() {
            dst[i] = f16::from_bits(super::f32_to_f16_portable(src[i]));
        }
    }
}
