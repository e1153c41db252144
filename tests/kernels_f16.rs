//! fp16 <-> f32 conversion: F16C (when present) and the portable fallback are bit-exact with
//! the `half` crate's conversions, exhaustively for f16 -> f32 and on a dense sweep of f32 bit
//! patterns (plus the rounding edge cases) for f32 -> f16.

use half::f16;
use qatlas::kernels::f16::*;

#[test]
fn f16_to_f32_exhaustive() {
    let src: Vec<f16> = (0..=u16::MAX).map(f16::from_bits).collect();
    let mut fast = vec![0f32; src.len()];
    f16_to_f32(&src, &mut fast);
    for (i, h) in src.iter().enumerate() {
        let want = h.to_f32().to_bits();
        assert_eq!(fast[i].to_bits(), want, "fast {:#06x}", h.to_bits());
        assert_eq!(
            f16_to_f32_portable(h.to_bits()).to_bits(),
            want,
            "portable {:#06x}",
            h.to_bits()
        );
    }
    eprintln!("F16C path used: {}", f16c_available());
}

#[test]
fn f32_to_f16_sweep_and_edges() {
    let mut src: Vec<f32> = (0..=u32::MAX / 997)
        .map(|i| f32::from_bits(i.wrapping_mul(997)))
        .collect();
    // Ties and carries: halfway between f16 neighbours, the largest finite, subnormal edges.
    for h in [
        0x0000u16, 0x0001, 0x03ff, 0x0400, 0x3c00, 0x3c01, 0x7bff, 0x8001, 0xfbff,
    ] {
        let x = f16::from_bits(h).to_f32();
        let next = f16::from_bits(h + 1).to_f32();
        let mid = (x as f64 + next as f64) / 2.0;
        src.extend([
            x,
            next,
            mid as f32,
            f32::from_bits((mid as f32).to_bits() + 1),
        ]);
        src.extend([
            f32::from_bits((mid as f32).to_bits() - 1),
            -x,
            -(mid as f32),
        ]);
    }
    src.extend([
        65504.0,
        65519.99,
        65520.0,
        1e-8,
        2.9802322e-8,
        2.9802326e-8,
        f32::INFINITY,
    ]);
    let mut fast = vec![f16::ZERO; src.len()];
    f32_to_f16(&src, &mut fast);
    for (i, &x) in src.iter().enumerate() {
        let want = f16::from_f32(x).to_bits();
        assert_eq!(
            fast[i].to_bits(),
            want,
            "fast {x:e} ({:#010x})",
            x.to_bits()
        );
        assert_eq!(
            f32_to_f16_portable(x),
            want,
            "portable {x:e} ({:#010x})",
            x.to_bits()
        );
    }
}

#[test]
fn tails_shorter_than_a_vector() {
    for len in [0usize, 1, 7, 9, 13] {
        let src: Vec<f16> = (0..len)
            .map(|i| f16::from_f32(i as f32 * -1.25 + 0.1))
            .collect();
        let mut out = vec![0f32; len];
        f16_to_f32(&src, &mut out);
        let back: Vec<f32> = src.iter().map(|h| h.to_f32()).collect();
        assert_eq!(out, back);
        let mut h = vec![f16::ZERO; len];
        f32_to_f16(&out, &mut h);
        assert_eq!(h, src);
    }
}
