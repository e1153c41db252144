//! The one rounding rule of qatlas: round half to even by the 1.5·2^23 trick. Defined here, at
//! the bottom of the crate, so that the fake quantizer (`ops::fake_quant`, which re-exports it)
//! and the integer kernels' requantization round with literally the same function. No `unsafe`.

/// 1.5 · 2^23: adding and subtracting it rounds an f32 of magnitude at most 2^22 to an integer,
/// ties to even (IEEE default rounding), without a libm call on CPUs lacking SSE4.1.
const ROUND_MAGIC: f32 = 12_582_912.0;
/// 2^22, the largest magnitude [`round_half_even`] rounds exactly; larger inputs are first
/// clamped to it, which no grid (at most 16 bits) can tell apart.
const ROUND_LIMIT: f32 = 4_194_304.0;

/// Round half to even: equals `f32::round_ties_even` for `|v| <= 2^22` except that it never
/// returns −0, and saturates at ±2^22 beyond. NaN stays NaN.
#[inline]
pub fn round_half_even(v: f32) -> f32 {
    (v.clamp(-ROUND_LIMIT, ROUND_LIMIT) + ROUND_MAGIC) - ROUND_MAGIC
}
