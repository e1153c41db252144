//! The int8 GEMM family: every micro-kernel the CPU can run is bit-exact against the portable
//! reference (same packed panels), and every path's full GEMM (raw, zero-point compensated,
//! requantized; s8 and int4 weights; both weight layouts) against naive unpacked references, on
//! many shapes including tails that are not multiples of the tiles, M/N/K of 1 and K = 4096.
//! Paths this CPU lacks are skipped with a message.

use proptest::prelude::*;
use qatlas::kernels::int8::portable::{gemm_reference, gemm_zp_reference, tile_reference};
use qatlas::kernels::int8::*;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// Kernels to test: those the CPU runs (the others are reported as skipped), plus the portable
/// twins of the VNNI kernels, which run the VNNI packing layout and tile shapes on any CPU.
fn kernels() -> Vec<&'static MmmKernel> {
    let mut v: Vec<_> = KernelPath::ALL
        .into_iter()
        .flat_map(|p| match p.kernels() {
            Ok(k) => k,
            Err(e) => {
                eprintln!("SKIPPED (not executed on this CPU): {e}");
                vec![]
            }
        })
        .collect();
    v.extend(qatlas::kernels::int8::portable::vnni_format_twins());
    v
}

/// One line per path, straight to stderr (libtest does not capture it): which kernels the tests
/// of this file ran, or why the path was skipped. `QATLAS_REQUIRE_PATHS=avx2,avx512vnni` (what
/// `.ci/run` sets from the CPU's flags) turns a skip of a listed path into a failure.
#[test]
fn kernel_paths_summary() {
    use std::io::Write;
    let required: Vec<String> = std::env::var("QATLAS_REQUIRE_PATHS")
        .unwrap_or_default()
        .split(',')
        .map(|s| s.trim().to_ascii_lowercase())
        .filter(|s| !s.is_empty())
        .collect();
    for r in &required {
        KernelPath::parse(r).unwrap_or_else(|e| panic!("QATLAS_REQUIRE_PATHS: {e}"));
    }
    let mut lines = Vec::new();
    let mut missing = Vec::new();
    for p in KernelPath::ALL {
        match p.kernels() {
            Ok(ks) => {
                let names: Vec<&str> = ks.iter().map(|k| k.name).collect();
                lines.push(format!(
                    "int8 path {:<10} RAN: {}",
                    p.name(),
                    names.join(", ")
                ));
            }
            Err(e) => {
                lines.push(format!("int8 path {:<10} SKIPPED: {e}", p.name()));
                if required.iter().any(|r| r == p.name()) {
                    missing.push(format!("{}: {e}", p.name()));
                }
            }
        }
    }
    let _ = writeln!(std::io::stderr(), "\n{}\n", lines.join("\n"));
    assert!(
        missing.is_empty(),
        "QATLAS_REQUIRE_PATHS lists paths that did not run: {missing:?}"
    );
}

fn rand_u8(r: &mut ChaCha8Rng, n: usize) -> Vec<u8> {
    (0..n).map(|_| r.random()).collect()
}
fn rand_i8(r: &mut ChaCha8Rng, n: usize) -> Vec<i8> {
    (0..n).map(|_| r.random()).collect()
}

/// Random weights within the range `k` is exact for (every s8 for the general kernels).
fn rand_weights(k: &MmmKernel, r: &mut ChaCha8Rng, n: usize) -> Vec<i8> {
    if k.b_abs_max >= 128 {
        return rand_i8(r, n);
    }
    let m = k.b_abs_max as i32;
    (0..n).map(|_| r.random_range(-m..=m) as i8).collect()
}

#[allow(clippy::too_many_arguments)]
fn reference_tile(
    k: &MmmKernel,
    groups: usize,
    a: &[u8],
    lda: usize,
    b: &[u8],
    c: &mut [i32],
    ldc: usize,
    acc: bool,
) {
    match (k.mr, k.nr) {
        (4, 16) => tile_reference::<4, 16>(k.format, groups, a, lda, b, c, ldc, acc),
        (6, 16) => tile_reference::<6, 16>(k.format, groups, a, lda, b, c, ldc, acc),
        (8, 32) => tile_reference::<8, 32>(k.format, groups, a, lda, b, c, ldc, acc),
        (32, 32) => tile_reference::<32, 32>(k.format, groups, a, lda, b, c, ldc, acc),
        s => panic!("no reference instantiated for tile {s:?}"),
    }
}

#[test]
fn micro_kernels_match_reference_on_arbitrary_panels() {
    let mut r = ChaCha8Rng::seed_from_u64(1);
    for k in kernels() {
        for &groups in &[0usize, 1, 2, 3, 7, 64, 255, 256, 1000] {
            for acc in [false, true] {
                let lda = groups * 4 + 12;
                let ldc = k.nr + 5;
                // Arbitrary bytes: for K2I16 this includes every s16, even the -32768 · -32768
                // pair whose doubled product wraps in vpmaddwd.
                let mut a = rand_u8(&mut r, k.mr * lda);
                let mut b: Vec<u8> = if k.b_abs_max >= 128 {
                    rand_u8(&mut r, groups * k.nr * 4)
                } else {
                    rand_weights(k, &mut r, groups * k.nr * 4)
                        .into_iter()
                        .map(|x| x as u8)
                        .collect()
                };
                if groups > 0 && k.b_abs_max >= 128 {
                    a[..4].copy_from_slice(&[0, 0x80, 0, 0x80]);
                    b[..4].copy_from_slice(&[0, 0x80, 0, 0x80]);
                } else if groups > 0 {
                    // The restricted kernels' worst case: 255 x -max in every lane.
                    a.fill(255);
                    b.fill((-(k.b_abs_max as i32)) as i8 as u8);
                }
                let c0: Vec<i32> = (0..k.mr * ldc).map(|_| r.random()).collect();
                let (mut got, mut want) = (c0.clone(), c0.clone());
                k.run_tile(groups, &a, lda, &b, &mut got, ldc, acc);
                reference_tile(k, groups, &a, lda, &b, &mut want, ldc, acc);
                assert_eq!(got, want, "{} groups {groups} acc {acc}", k.name);
            }
        }
    }
}

fn check_gemm(k: &'static MmmKernel, m: usize, kk: usize, n: usize, seed: u64, par: Parallelism) {
    let mut r = ChaCha8Rng::seed_from_u64(seed);
    let a = rand_u8(&mut r, m * kk);
    let b = rand_weights(k, &mut r, kk * n);
    let pb = PackedB::pack(k, Weights::S8(&b), kk, n, BLayout::KxN).unwrap();
    let mut c = vec![7i32; m * n];
    gemm_u8s8_i32(&a, m, &pb, &mut c, par).unwrap();
    assert_eq!(
        c,
        gemm_reference(&a, &b, m, kk, n),
        "{} {m}x{kk}x{n}",
        k.name
    );
}

#[test]
fn gemm_edge_shapes_all_paths() {
    let shapes = [
        (1, 1, 1),
        (1, 1, 17),
        (1, 37, 1),
        (5, 1, 1),
        (6, 2, 16),
        (7, 3, 17),
        (13, 511, 33),
        (12, 512, 32),
        (11, 513, 31),
        (25, 1025, 47),
        (3, 4096, 19),
        (1, 4096, 1),
        (64, 4096, 64),
        (145, 9, 257),
    ];
    for k in kernels() {
        for (s, &(m, kk, n)) in shapes.iter().enumerate() {
            // Miri interprets every instruction: the largest shapes would take hours there.
            if cfg!(miri) && m * kk * n > 200_000 {
                continue;
            }
            check_gemm(k, m, kk, n, s as u64, Parallelism::Sequential);
            check_gemm(k, m, kk, n, s as u64, Parallelism::Rayon);
        }
    }
}

#[test]
fn gemm_large_parallel_shapes_all_paths() {
    for k in kernels() {
        for (s, &(m, kk, n)) in [(300, 200, 300), (627, 144, 32), (97, 700, 530)]
            .iter()
            .enumerate()
        {
            check_gemm(k, m, kk, n, 100 + s as u64, Parallelism::Rayon);
        }
    }
}

#[test]
fn extreme_operands_that_saturate_vpmaddubsw_stay_exact() {
    // 255 · -128 · 2 = -65,280 per pair would saturate an s16 sum; K = 4096 sums to -133,693,440.
    for k in kernels() {
        let lim = k.b_abs_max.min(127) as i8;
        for (av, bv) in [
            (255u8, -lim - (k.b_abs_max >= 128) as i8),
            (255, lim),
            (0, -lim),
        ] {
            // (Under Miri a shorter K: the portable kernel it runs has no s16 sums to saturate.)
            let (m, kk, n) = (7, if cfg!(miri) { 256 } else { 4096 }, 18);
            let a = vec![av; m * kk];
            let b = vec![bv; kk * n];
            let pb = PackedB::pack(k, Weights::S8(&b), kk, n, BLayout::KxN).unwrap();
            let mut c = vec![0i32; m * n];
            gemm_u8s8_i32(&a, m, &pb, &mut c, Parallelism::Rayon).unwrap();
            assert!(
                c.iter().all(|&x| x == av as i32 * bv as i32 * kk as i32),
                "{}",
                k.name
            );
        }
    }
}

#[test]
fn hand_computed_zero_point_gemm() {
    // A = [[10, 20], [30, 40]], za = 10; B = [[1, -2], [3, 4]], zb = [1, -2]:
    // (A - 10) = [[0, 10], [20, 30]], (B - zb) = [[0, 0], [2, 6]] -> [[20, 60], [60, 180]].
    for k in kernels() {
        let pb = PackedB::pack(k, Weights::S8(&[1, -2, 3, 4]), 2, 2, BLayout::KxN)
            .unwrap()
            .with_zero_points(&[1, -2])
            .unwrap();
        let mut c = [0i32; 4];
        gemm_u8s8_i32_zp(
            &[10, 20, 30, 40],
            2,
            10,
            &pb,
            &mut c,
            Parallelism::Sequential,
        )
        .unwrap();
        assert_eq!(c, [20, 60, 60, 180], "{}", k.name);
    }
}

fn requant_reference<T: QuantOutput>(
    acc: &[i32],
    n: usize,
    rq: &Requant,
    lo: i32,
    hi: i32,
) -> Vec<T> {
    let mult: Vec<i32> = (0..n)
        .map(|j| rq.multipliers[j % rq.multipliers.len()].mult)
        .collect();
    let shift: Vec<u32> = (0..n)
        .map(|j| rq.multipliers[j % rq.multipliers.len()].rshift)
        .collect();
    let mut out = vec![T::default(); acc.len()];
    for (row, o) in acc.chunks(n).zip(out.chunks_mut(n)) {
        let biased: Vec<i32> = row
            .iter()
            .enumerate()
            .map(|(j, &x)| x.wrapping_add(rq.bias.get(j).copied().unwrap_or(0)))
            .collect();
        requant_row_reference(&biased, &mult, &shift, rq.out_zero_point, lo, hi, o);
    }
    out
}

fn check_requant<T: QuantOutput + PartialEq + std::fmt::Debug>(
    k: &'static MmmKernel,
    m: usize,
    kk: usize,
    n: usize,
    seed: u64,
) {
    let mut r = ChaCha8Rng::seed_from_u64(seed);
    let a = rand_u8(&mut r, m * kk);
    let b = rand_weights(k, &mut r, kk * n);
    let za: u8 = r.random();
    let zb: Vec<i32> = if seed.is_multiple_of(2) {
        vec![0; n]
    } else {
        (0..n).map(|_| r.random_range(-20..20)).collect()
    };
    let pb = PackedB::pack(k, Weights::S8(&b), kk, n, BLayout::KxN)
        .unwrap()
        .with_zero_points(&zb)
        .unwrap();
    // Multipliers so outputs spread over the grid: about 1 / (64 · sqrt(K) · 8).
    let base = 1.0 / (64.0 * (kk as f64).sqrt() * 8.0);
    let multipliers: Vec<FixedMultiplier> = (0..if seed.is_multiple_of(3) { 1 } else { n })
        .map(|_| FixedMultiplier::from_real(base * r.random_range(0.5..2.0)).unwrap())
        .collect();
    let activation = match seed % 3 {
        0 => Activation::None,
        1 => Activation::Relu,
        _ => Activation::Relu6 { six: 40 },
    };
    let rq = Requant {
        multipliers,
        bias: (0..n).map(|_| r.random_range(-5000..5000)).collect(),
        out_zero_point: if T::SIGNED { -3 } else { 120 },
        activation,
    };
    let (lo, hi) = rq.clamp_range::<T>().unwrap();
    let acc = gemm_zp_reference(&a, &b, m, kk, n, za as i32, &zb);
    let want = requant_reference::<T>(&acc, n, &rq, lo, hi);
    for par in [Parallelism::Sequential, Parallelism::Rayon] {
        let mut got = vec![T::default(); m * n];
        gemm_u8s8_requant(&a, m, za, &pb, &rq, &mut got, par).unwrap();
        assert_eq!(got, want, "{} {m}x{kk}x{n} seed {seed}", k.name);
    }
    let mut c = vec![0i32; m * n];
    gemm_u8s8_i32_zp(&a, m, za, &pb, &mut c, Parallelism::Rayon).unwrap();
    assert_eq!(c, acc, "{} zp {m}x{kk}x{n}", k.name);
}

#[test]
fn requantized_gemm_matches_reference_all_paths() {
    for k in kernels() {
        for (s, &(m, kk, n)) in [
            (1, 1, 1),
            (9, 70, 23),
            (40, 600, 40),
            (200, 144, 32),
            (33, 4096, 9),
        ]
        .iter()
        .enumerate()
        {
            for t in 0..3u64 {
                check_requant::<u8>(k, m, kk, n, s as u64 * 3 + t);
                check_requant::<i8>(k, m, kk, n, s as u64 * 3 + t + 100);
            }
        }
    }
}

#[test]
fn int4_weights_and_nxk_layout_match_s8() {
    let mut r = ChaCha8Rng::seed_from_u64(9);
    for k in kernels() {
        for kind in [Int4Kind::S4, Int4Kind::U4] {
            let (lo, hi) = kind.range();
            if lo.unsigned_abs().max(hi.unsigned_abs()) > k.b_abs_max {
                continue;
            }
            for &(m, kk, n) in &[(5usize, 7usize, 3usize), (13, 300, 29), (1, 1, 1)] {
                let (lo, hi) = kind.range();
                let vals: Vec<i8> = (0..kk * n).map(|_| r.random_range(lo..=hi)).collect();
                let packed = int4::pack(&vals, kind).unwrap();
                assert_eq!(packed.len(), (kk * n).div_ceil(2));
                let a = rand_u8(&mut r, m * kk);
                let p4 = PackedB::pack(
                    k,
                    Weights::Int4 {
                        data: &packed,
                        kind,
                    },
                    kk,
                    n,
                    BLayout::KxN,
                )
                .unwrap();
                let mut c = vec![0i32; m * n];
                gemm_u8s8_i32(&a, m, &p4, &mut c, Parallelism::Sequential).unwrap();
                assert_eq!(
                    c,
                    gemm_reference(&a, &vals, m, kk, n),
                    "{} {kind:?}",
                    k.name
                );
                // The same weights stored N x K.
                let mut t = vec![0i8; kk * n];
                for p in 0..kk {
                    for j in 0..n {
                        t[j * kk + p] = vals[p * n + j];
                    }
                }
                let pt = PackedB::pack(k, Weights::S8(&t), kk, n, BLayout::NxK).unwrap();
                let mut ct = vec![0i32; m * n];
                gemm_u8s8_i32(&a, m, &pt, &mut ct, Parallelism::Sequential).unwrap();
                assert_eq!(ct, c, "{} NxK", k.name);
                assert_eq!(pt.col_sums(), p4.col_sums());
            }
        }
    }
}

#[test]
fn bad_lengths_are_errors() {
    let k = KernelPath::Portable.kernel().unwrap();
    assert!(matches!(
        PackedB::pack(k, Weights::S8(&[1, 2, 3]), 2, 2, BLayout::KxN),
        Err(Int8Error::Length {
            expected: 4,
            found: 3,
            ..
        })
    ));
    let pb = PackedB::pack(k, Weights::S8(&[1, 2, 3, 4]), 2, 2, BLayout::KxN).unwrap();
    let mut c = [0i32; 4];
    assert!(gemm_u8s8_i32(&[1, 2, 3], 2, &pb, &mut c, Parallelism::Sequential).is_err());
    assert!(pb.clone().with_zero_points(&[1, 2, 3]).is_err());
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn prop_gemm_all_paths(m in 1usize..40, kk in 1usize..1100, n in 1usize..70, seed: u64) {
        for k in kernels() {
            check_gemm(k, m, kk, n, seed, Parallelism::Rayon);
        }
    }

    #[test]
    fn prop_requant_row_avx2_matches_reference(
        acc in proptest::collection::vec(any::<i32>(), 0..70),
        mult in 0i32..=i32::MAX,
        per_col in any::<bool>(),
        shift in 1u32..=62,
        zp in -128i32..=127,
        seed: u64,
    ) {
        let mut r = ChaCha8Rng::seed_from_u64(seed);
        let n = acc.len();
        let (mults, shifts): (Vec<i32>, Vec<u32>) = if per_col {
            (0..n).map(|_| (r.random_range(0..=i32::MAX), r.random_range(1..=62))).unzip()
        } else {
            (vec![mult; n], vec![shift; n])
        };
        let lo = r.random_range(-128..=127);
        let hi = r.random_range(lo..=127);
        let mut got = vec![0i8; n];
        let mut want = vec![0i8; n];
        requant_row(&acc, &mults, &shifts, zp, lo, hi, &mut got);
        requant_row_reference(&acc, &mults, &shifts, zp, lo, hi, &mut want);
        prop_assert_eq!(got, want);
        let (lo, hi) = (lo + 128, hi + 128);
        let mut got = vec![0u8; n];
        let mut want = vec![0u8; n];
        requant_row(&acc, &mults, &shifts, zp + 128, lo, hi, &mut got);
        requant_row_reference(&acc, &mults, &shifts, zp + 128, lo, hi, &mut want);
        prop_assert_eq!(got, want);
    }

    #[test]
    fn prop_int4_round_trip(vals in proptest::collection::vec(-8i8..=7, 0..100)) {
        let p = int4::pack(&vals, Int4Kind::S4).unwrap();
        prop_assert_eq!(int4::unpack(&p, vals.len(), Int4Kind::S4), vals.clone());
        let u: Vec<i8> = vals.iter().map(|v| v + 8).collect();
        let p = int4::pack(&u, Int4Kind::U4).unwrap();
        prop_assert_eq!(int4::unpack(&p, u.len(), Int4Kind::U4), u);
    }
}

#[test]
fn forced_unavailable_path_is_a_clear_error() {
    for p in [KernelPath::AvxVnni, KernelPath::Avx512Vnni, KernelPath::Amx] {
        if let Err(e) = select_kernel(Some(p.name())) {
            let msg = e.to_string();
            assert!(msg.contains("lacks"), "{msg}");
            eprintln!("forcing {}: {msg}", p.name());
        }
    }
}

#[test]
fn weight_range_selects_restricted_kernels_and_rejects_misuse() {
    for path in KernelPath::ALL {
        let Ok(ks) = path.kernels() else { continue };
        // Full-range s8 weights always get the general kernel.
        assert_eq!(path.kernel_for_weights(128).unwrap().name, ks[0].name);
        for k in &ks[1..] {
            let picked = path.kernel_for_weights(k.b_abs_max as u32).unwrap();
            assert!(picked.b_abs_max <= k.b_abs_max, "{}", picked.name);
            let too_big = vec![k.b_abs_max as i8 + 1; 4];
            assert!(matches!(
                PackedB::pack(k, Weights::S8(&too_big), 2, 2, BLayout::KxN),
                Err(Int8Error::WeightRange { .. })
            ));
        }
        if path == KernelPath::Avx2 {
            let pick = |b| path.kernel_for_weights(b).unwrap().name;
            assert_eq!(pick(8), "avx2_mmm_u8s4i32_6x16");
            assert_eq!(pick(15), "avx2_mmm_u8s5i32_6x16");
            assert_eq!(pick(64), "avx2_mmm_u8s7i32_6x16");
            assert_eq!(pick(65), "avx2_mmm_u8s8i32_6x16");
            assert_eq!(pick(128), "avx2_mmm_u8s8i32_6x16");
        }
        eprintln!(
            "{}: int4 S4 -> {}, U4 -> {}, s8 -> {}",
            path.name(),
            path.kernel_for_weights(8).unwrap().name,
            path.kernel_for_weights(15).unwrap().name,
            path.kernel_for_weights(127).unwrap().name
        );
    }
}

/// Float requantization fused into the GEMM (the runtime's default) equals the s32 GEMM followed
/// by the fake quantizer's arithmetic written out here, on every path (the AVX2 epilogue uses
/// `vroundps`, the portable one the 1.5·2^23 trick), including ties and clamped values.
#[test]
fn float_requantized_gemm_matches_the_fake_quant_formula() {
    use qatlas::ops::fake_quant::round_half_even;
    for k in kernels() {
        for (seed, &(m, kk, n)) in [
            (1, 1, 1),
            (9, 70, 23),
            (200, 144, 32),
            (37, 9, 16),
            (5, 600, 70),
        ]
        .iter()
        .enumerate()
        {
            let mut r = ChaCha8Rng::seed_from_u64(seed as u64 + 40);
            let a = rand_u8(&mut r, m * kk);
            let b = rand_weights(k, &mut r, kk * n);
            let zp: Vec<i32> = (0..n).map(|_| r.random_range(-3..=3)).collect();
            let pb = PackedB::pack(k, Weights::S8(&b), kk, n, BLayout::KxN)
                .unwrap()
                .with_zero_points(&zp)
                .unwrap();
            let za = r.random_range(0..=255u8);
            let mut acc = vec![0i32; m * n];
            gemm_u8s8_i32_zp(&a, m, za, &pb, &mut acc, Parallelism::Sequential).unwrap();
            // Scales that put many values on exact .5 ties (powers of two), others not.
            let scale: Vec<f32> = (0..n)
                .map(|j| {
                    if j % 2 == 0 {
                        0.5f32.powi(j as i32 % 5 + 1)
                    } else {
                        r.random_range(1e-4..1e-2)
                    }
                })
                .collect();
            let bias: Vec<f32> = (0..n).map(|_| r.random_range(-2.0..2.0)).collect();
            let rq = FloatRequant {
                scale: scale.clone(),
                bias: bias.clone(),
                inv_out: 1.0 / 0.25,
                zero_point: 37.0,
                lo: 37.0,
                hi: 250.0,
            };
            let mut got = vec![0u8; m * n];
            gemm_u8s8_requant_f32(&a, m, za, &pb, &rq, &mut got, Parallelism::Rayon).unwrap();
            for (i, (&g, &c)) in got.iter().zip(&acc).enumerate() {
                let j = i % n;
                let y = c as f32 * scale[j] + bias[j];
                let want = (round_half_even(y * 4.0) + 37.0).clamp(37.0, 250.0) as u8;
                assert_eq!(g, want, "{} m{m} k{kk} n{n} at {i}", k.name);
            }
        }
    }
    let pb = PackedB::new(&[1, 2], 1, 2, BLayout::KxN).unwrap();
    let bad = FloatRequant {
        scale: vec![1.0],
        bias: vec![0.0, 0.0],
        inv_out: 1.0,
        zero_point: 0.0,
        lo: 0.0,
        hi: 255.0,
    };
    let mut out = [0u8; 2];
    assert!(
        gemm_u8s8_requant_f32(&[1], 1, 0, &pb, &bad, &mut out, Parallelism::Sequential).is_err()
    );
}
