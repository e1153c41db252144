//! Requantization of s32 accumulators to u8/s8: `out = clamp(zp + round(acc · mult / 2^rshift))`.
//!
//! **Rounding: round half to even** (ties go to the even integer), computed exactly on the 64-bit
//! product `acc · mult` — the crate's one rounding mode, the one the fake-quant simulation uses
//! (`ops::fake_quant`, PyTorch's `nearbyint`). It is *not* gemmlowp's
//! `SaturatingRoundingDoublingHighMul` + `RoundingDivideByPOT` (which round half away from zero
//! twice). The multiplier is `mult / 2^rshift` with `0 <= mult < 2^31` and `1 <= rshift <= 62`,
//! i.e. any real multiplier in `[2^-62, 2^30)` to 31 significant bits
//! ([`FixedMultiplier::from_real`]).
//!
//! The bias (s32) and the zero-point compensation are added to the accumulator by the GEMM
//! driver before this step; ReLU and ReLU6 are clamps of the output range
//! ([`Activation`]). [`requant_row`] runs the AVX2 version when the CPU has it, and
//! [`requant_row_reference`] is the portable reference it is tested bit-exact against.

use super::Int8Error;

/// A real multiplier as `mult / 2^rshift`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FixedMultiplier {
    /// `0 ..= 2^31 - 1`.
    pub mult: i32,
    /// Right shift of the 64-bit product, `1 ..= 62`.
    pub rshift: u32,
}

impl FixedMultiplier {
    /// Checks the ranges.
    pub fn new(mult: i32, rshift: u32) -> Result<Self, Int8Error> {
        if mult < 0 || !(1..=62).contains(&rshift) {
            return Err(Int8Error::Multiplier {
                value: format!("{mult} / 2^{rshift}"),
                reason: "needs 0 <= mult < 2^31 and 1 <= rshift <= 62",
            });
        }
        Ok(Self { mult, rshift })
    }

    /// The nearest representable multiplier (31 significant bits, half to even) to `x`, which
    /// must be finite and in `[0, 2^30)`; values below `2^-62` lose precision down to 0.
    pub fn from_real(x: f64) -> Result<Self, Int8Error> {
        if !x.is_finite() || !(0.0..(1u64 << 30) as f64).contains(&x) {
            return Err(Int8Error::Multiplier {
                value: x.to_string(),
                reason: "must be finite and in [0, 2^30)",
            });
        }
        if x == 0.0 {
            return Ok(Self {
                mult: 0,
                rshift: 31,
            });
        }
        // x = f · 2^e with f in [0.5, 1); scaling by powers of two is exact.
        let (mut f, mut e) = (x, 0i32);
        while f >= 1.0 {
            f /= 2.0;
            e += 1;
        }
        while f < 0.5 {
            f *= 2.0;
            e -= 1;
        }
        let mut rshift = (31 - e).min(62);
        let mut m = (x * 2f64.powi(rshift)).round_ties_even();
        if m >= (1u64 << 31) as f64 {
            m /= 2.0;
            rshift -= 1;
        }
        Self::new(m as i32, rshift as u32)
    }

    /// The real value `mult / 2^rshift`.
    pub fn to_real(self) -> f64 {
        self.mult as f64 / 2f64.powi(self.rshift as i32)
    }

    /// `round_half_even(acc · mult / 2^rshift)`, exactly (the reference).
    #[inline]
    pub fn apply(self, acc: i32) -> i64 {
        let p = acc as i64 * self.mult as i64;
        let s = self.rshift;
        let q = p >> s;
        let r = p - (q << s);
        let half = 1i64 << (s - 1);
        if r > half || (r == half && q & 1 == 1) {
            q + 1
        } else {
            q
        }
    }
}

/// An 8-bit output type.
pub trait QuantOutput: Copy + Default + Send + Sync + 'static {
    const MIN: i32;
    const MAX: i32;
    const SIGNED: bool;
    /// The value, which must be within `MIN..=MAX`.
    fn from_i32(v: i32) -> Self;
}

impl QuantOutput for u8 {
    const MIN: i32 = 0;
    const MAX: i32 = 255;
    const SIGNED: bool = false;
    fn from_i32(v: i32) -> Self {
        v as u8
    }
}

impl QuantOutput for i8 {
    const MIN: i32 = -128;
    const MAX: i32 = 127;
    const SIGNED: bool = true;
    fn from_i32(v: i32) -> Self {
        v as i8
    }
}

/// Activation fused as a clamp of the quantized output.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Activation {
    /// The output type's full range.
    None,
    /// `max(out, zp)`.
    Relu,
    /// `min(max(out, zp), zp + six)` with `six` = 6.0 quantized at the output scale.
    Relu6 { six: i32 },
}

impl Activation {
    /// ReLU6 for an output scale: `six = round_half_even(6 · (1 / scale))`, the fake-quant formula.
    pub fn relu6_for_scale(out_scale: f32) -> Self {
        let inv = 1.0 / out_scale.abs().max(f32::EPSILON);
        Activation::Relu6 {
            six: (6.0f32 * inv).round_ties_even() as i32,
        }
    }
}

/// Requantization parameters of one GEMM's output.
#[derive(Clone, Debug, PartialEq)]
pub struct Requant {
    /// One per tensor, or one per output column.
    pub multipliers: Vec<FixedMultiplier>,
    /// Empty (no bias), or one s32 per output column (at scale `a_scale · b_scale[j]`).
    pub bias: Vec<i32>,
    pub out_zero_point: i32,
    pub activation: Activation,
}

impl Requant {
    /// The final output range `[lo, hi]` for output type `T`.
    pub fn clamp_range<T: QuantOutput>(&self) -> Result<(i32, i32), Int8Error> {
        let zp = self.out_zero_point;
        let (lo, hi) = match self.activation {
            Activation::None => (T::MIN, T::MAX),
            Activation::Relu => (zp.max(T::MIN), T::MAX),
            Activation::Relu6 { six } => (zp.max(T::MIN), zp.saturating_add(six).min(T::MAX)),
        };
        if lo > hi || !(T::MIN..=T::MAX).contains(&zp) {
            return Err(Int8Error::Clamp {
                lo,
                hi,
                min: T::MIN,
                max: T::MAX,
            });
        }
        Ok((lo, hi))
    }
}

/// Portable reference: `out[j] = clamp(zp + round_half_even(acc[j] · mult[j] / 2^shift[j]),
/// lo, hi)`. All slices have the same length; `shift` values in `1..=62`, `mult` in
/// `0..2^31`.
pub fn requant_row_reference<T: QuantOutput>(
    acc: &[i32],
    mult: &[i32],
    shift: &[u32],
    zp: i32,
    lo: i32,
    hi: i32,
    out: &mut [T],
) {
    for j in 0..acc.len() {
        let q = FixedMultiplier {
            mult: mult[j],
            rshift: shift[j],
        }
        .apply(acc[j])
            + zp as i64;
        out[j] = T::from_i32(q.clamp(lo as i64, hi as i64) as i32);
    }
}

/// [`requant_row_reference`], on AVX2 when the CPU has it (bit-exact).
pub fn requant_row<T: QuantOutput>(
    acc: &[i32],
    mult: &[i32],
    shift: &[u32],
    zp: i32,
    lo: i32,
    hi: i32,
    out: &mut [T],
) {
    let n = acc.len();
    assert!(
        mult.len() == n && shift.len() == n && out.len() == n,
        "requant_row lengths"
    );
    assert!(
        T::MIN <= lo && lo <= hi && hi <= T::MAX,
        "requant_row clamp"
    );
    debug_assert!(shift.iter().all(|s| (1..=62).contains(s)) && mult.iter().all(|&m| m >= 0));
    #[cfg(target_arch = "x86_64")]
    if super::pack::avx2_available() {
        // SAFETY: AVX2 is present; all slices have length n (checked above).
        unsafe { x86::requant_row_avx2(acc, mult, shift, zp, lo, hi, out) };
        return;
    }
    requant_row_reference(acc, mult, shift, zp, lo, hi, out)
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use super::QuantOutput;
    use std::arch::x86_64::*;

    /// SAFETY contract: the CPU has AVX2; `mult`, `shift`, `out` are at least as long as `acc`;
    /// shifts in 1..=62, multipliers non-negative, `T::MIN <= lo <= hi <= T::MAX`.
    #[target_feature(enable = "avx2")]
    pub(super) unsafe fn requant_row_avx2<T: QuantOutput>(
        acc: &[i32],
        mult: &[i32],
        shift: &[u32],
        zp: i32,
        lo: i32,
        hi: i32,
        out: &mut [T],
    ) {
        let n = acc.len();
        let body = n / 8 * 8;
        // SAFETY: lanes i..i+8 with i + 8 <= n are in bounds of every slice (contract); loads
        // and stores are unaligned forms; T is one byte, so 8 outputs are 8 bytes.
        unsafe {
            let one = _mm256_set1_epi64x(1);
            let zero = _mm256_setzero_si256();
            let zp64 = _mm256_set1_epi64x(zp as i64);
            let lo64 = _mm256_set1_epi64x(lo as i64);
            let hi64 = _mm256_set1_epi64x(hi as i64);
            let low32 = _mm256_set1_epi64x(0xffff_ffff);
            // round_half_even(p / 2^s) on 4 x i64: floor((p + 2^(s-1) - 1 + bit_s(p)) / 2^s),
            // the floor done as a logical shift of the one's complement for negative values.
            macro_rules! rne {
                ($p:expr, $s:expr) => {{
                    let (p, s) = ($p, $s);
                    let half_m1 = _mm256_sub_epi64(_mm256_sllv_epi64(one, _mm256_sub_epi64(s, one)), one);
                    let odd = _mm256_and_si256(_mm256_srlv_epi64(p, s), one);
                    let t = _mm256_add_epi64(_mm256_add_epi64(p, half_m1), odd);
                    let sign = _mm256_cmpgt_epi64(zero, t);
                    let q = _mm256_xor_si256(_mm256_srlv_epi64(_mm256_xor_si256(t, sign), s), sign);
                    let q = _mm256_add_epi64(q, zp64);
                    let q = _mm256_blendv_epi8(q, lo64, _mm256_cmpgt_epi64(lo64, q));
                    _mm256_blendv_epi8(q, hi64, _mm256_cmpgt_epi64(q, hi64))
                }};
            }
            let mut i = 0;
            while i < body {
                let v = _mm256_loadu_si256(acc.as_ptr().add(i) as *const __m256i);
                let m = _mm256_loadu_si256(mult.as_ptr().add(i) as *const __m256i);
                let s = _mm256_loadu_si256(shift.as_ptr().add(i) as *const __m256i);
                let pe = _mm256_mul_epi32(v, m);
                let po = _mm256_mul_epi32(_mm256_srli_epi64(v, 32), _mm256_srli_epi64(m, 32));
                let qe = rne!(pe, _mm256_and_si256(s, low32));
                let qo = rne!(po, _mm256_srli_epi64(s, 32));
                let r = _mm256_blend_epi32(qe, _mm256_slli_epi64(qo, 32), 0b1010_1010);
                let w = _mm_packs_epi32(_mm256_castsi256_si128(r), _mm256_extracti128_si256(r, 1));
                let b = if T::SIGNED {
                    _mm_packs_epi16(w, w)
                } else {
                    _mm_packus_epi16(w, w)
                };
                _mm_storel_epi64(out.as_mut_ptr().add(i) as *mut __m128i, b);
                i += 8;
            }
        }
        super::requant_row_reference(
            &acc[body..],
            &mult[body..n],
            &shift[body..n],
            zp,
            lo,
            hi,
            &mut out[body..n],
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hand_computed_rounding() {
        // mult / 2^rshift = 0.5: ties go to even.
        let half = FixedMultiplier::new(1 << 30, 31).unwrap();
        let got: Vec<i64> = [5, 7, -5, -7, 4, -3, 1, -1].map(|a| half.apply(a)).to_vec();
        assert_eq!(got, vec![2, 4, -2, -4, 2, -2, 0, 0]);
        // 0.25: 6/4 = 1.5 -> 2, 10/4 = 2.5 -> 2, -6/4 -> -2, 7/4 = 1.75 -> 2, 5/4 = 1.25 -> 1.
        let q = FixedMultiplier::new(1 << 29, 31).unwrap();
        assert_eq!([6, 10, -6, 7, 5].map(|a| q.apply(a)), [2, 2, -2, 2, 1]);
        // 1000 · 0.0123: from_real, 12.3 -> 12 after zp 0.
        let m = FixedMultiplier::from_real(0.0123).unwrap();
        assert!((m.to_real() - 0.0123).abs() < 1e-11, "{m:?}");
        assert_eq!(m.apply(1000), 12);
        assert_eq!(m.apply(-1000), -12);
        assert!(FixedMultiplier::from_real(2f64.powi(30)).is_err());
        assert_eq!(FixedMultiplier::from_real(1.0).unwrap().apply(77), 77);
    }

    #[test]
    fn requant_rows_hand_computed_with_clamps() {
        let acc = [100, -100, 300, 2, 10_000, -10_000, 51, 49, 50, 150];
        let n = acc.len();
        let mult = vec![1 << 30; n]; // 0.5 with rshift 31
        let shift = vec![31u32; n];
        let mut out = vec![0u8; n];
        requant_row(&acc, &mult, &shift, 10, 0, 255, &mut out);
        // 50+10, -50+10 -> 0 (clamped), 150+10, 1+10, 5000 -> 255, -> 0, 25.5 -> 26 (+10) = 36,
        // 24.5 -> 24 (+10) = 34, 25 -> 35, 75 -> 85.
        assert_eq!(out, vec![60, 0, 160, 11, 255, 0, 36, 34, 35, 85]);
        // ReLU6 as a clamp [zp, zp + six] on s8.
        let rq = Requant {
            multipliers: vec![],
            bias: vec![],
            out_zero_point: -20,
            activation: Activation::Relu6 { six: 60 },
        };
        let (lo, hi) = rq.clamp_range::<i8>().unwrap();
        assert_eq!((lo, hi), (-20, 40));
        let mut o8 = vec![0i8; n];
        requant_row(&acc, &mult, &shift, -20, lo, hi, &mut o8);
        assert_eq!(o8, vec![30, -20, 40, -19, 40, -20, 6, 4, 5, 40]);
        assert_eq!(
            Activation::relu6_for_scale(0.05),
            Activation::Relu6 { six: 120 }
        );
    }
}
