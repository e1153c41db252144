//! int8 GEMM throughput per kernel path versus the f32 GEMM on the same shapes, same run.
//! `cargo bench --no-default-features --bench int8_gemm` (the same measurement with options and
//! % of peak: `qatlas bench gemm`).

use qatlas::kernels::int8::{BLayout, KernelPath, PackedB, Parallelism, Weights, gemm_u8s8_i32};
use qatlas::kernels::{MatMut, MatRef, sgemm};
use std::time::Instant;

fn median_gops(ops: f64, mut f: impl FnMut()) -> f64 {
    f();
    let t = Instant::now();
    f();
    let inner = (0.1 / t.elapsed().as_secs_f64()).ceil().max(1.0) as usize;
    let mut v: Vec<f64> = (0..5)
        .map(|_| {
            let t = Instant::now();
            for _ in 0..inner {
                f();
            }
            ops * inner as f64 / t.elapsed().as_secs_f64() / 1e9
        })
        .collect();
    v.sort_by(|a, b| a.total_cmp(b));
    v[2]
}

fn main() {
    let threads = rayon::current_num_threads();
    for (m, k, n) in [
        (256, 256, 256),
        (512, 512, 512),
        (1024, 1024, 1024),
        (6272, 144, 32),
    ] {
        let a: Vec<u8> = (0..m * k).map(|i| (i * 7 % 251) as u8).collect();
        let b: Vec<i8> = (0..k * n).map(|i| (i * 13 % 255) as i8).collect();
        let af: Vec<f32> = a.iter().map(|&x| x as f32 / 255.0).collect();
        let bf: Vec<f32> = b.iter().map(|&x| x as f32 / 128.0).collect();
        let ops = 2.0 * (m * n * k) as f64;
        let mut cf = vec![0f32; m * n];
        let f32_gops = median_gops(ops, || {
            sgemm(
                MatRef::row_major(&af, m, k),
                MatRef::row_major(&bf, k, n),
                MatMut::row_major(&mut cf, m, n),
                false,
                true,
            )
        });
        println!("{m}x{k}x{n}, {threads} threads: f32 (gemm crate) {f32_gops:.1} GOP/s");
        for path in [
            KernelPath::Avx2,
            KernelPath::AvxVnni,
            KernelPath::Avx512Vnni,
        ] {
            let Ok(kernel) = path.kernel() else {
                println!("  {}: not available on this CPU, skipped", path.name());
                continue;
            };
            let pb = PackedB::pack(kernel, Weights::S8(&b), k, n, BLayout::KxN).expect("pack");
            let mut c = vec![0i32; m * n];
            let g = median_gops(ops, || {
                gemm_u8s8_i32(&a, m, &pb, &mut c, Parallelism::Rayon).expect("gemm")
            });
            println!("  {}: {g:.1} GOP/s, {:.2}x f32", kernel.name, g / f32_gops);
        }
    }
}
