//! Machine figures for "percentage of peak": the core clock (from `/proc/cpuinfo`, and measured
//! with a chain of dependent `imul`s) and the measured throughput of the AVX2 int8 instruction
//! mix (`vpmaddwd` + `vpaddd`) and of ymm f32 FMA, timed without memory operands (the other
//! paths' peaks are in `path_peak`).

use std::time::Instant;

/// The first `cpu MHz` of `/proc/cpuinfo` in Hz (a VM may report the nominal clock).
pub fn cpuinfo_hz() -> Option<f64> {
    let s = std::fs::read_to_string("/proc/cpuinfo").ok()?;
    let line = s.lines().find(|l| l.starts_with("cpu MHz"))?;
    let mhz: f64 = line.split(':').nth(1)?.trim().parse().ok()?;
    Some(mhz * 1e6)
}

pub(super) fn best_rate(mut run: impl FnMut(u64) -> f64, iters: u64, reps: usize) -> f64 {
    run(iters / 10 + 1); // warm up the clock
    (0..reps)
        .map(|_| {
            let t = Instant::now();
            let work = run(iters);
            work / t.elapsed().as_secs_f64()
        })
        .fold(0.0, f64::max)
}

/// The core clock in Hz, measured: 32 dependent `imul`s (3 cycles each on every x86_64 core
/// since Nehalem and Zen) per loop iteration. A chain of `add reg, 1` would be wrong on Golden
/// Cove and later Intel cores, whose renamer folds immediate adds (it read ~19 GHz there).
pub fn measure_clock_hz() -> Option<f64> {
    #[cfg(target_arch = "x86_64")]
    {
        Some(best_rate(
            |n| {
                let mut x = 3u64;
                // SAFETY: register-only arithmetic on declared operands; no memory, no stack.
                unsafe {
                    std::arch::asm!(
                        "2:",
                        ".rept 32",
                        "imul {x}, {x}",
                        ".endr",
                        "dec {n}",
                        "jnz 2b",
                        x = inout(reg) x,
                        n = inout(reg) n => _,
                        options(nomem, nostack),
                    );
                }
                std::hint::black_box(x);
                n as f64 * 32.0 * 3.0
            },
            1_000_000,
            7,
        ))
    }
    #[cfg(not(target_arch = "x86_64"))]
    None
}

/// Measured int8 ops/s (2 per multiply-accumulate) of 12 independent `vpmaddwd` + `vpaddd`
/// chains on one core: the ceiling of the AVX2 micro-kernel's instruction mix.
pub fn measure_avx2_int8_ops() -> Option<f64> {
    #[cfg(target_arch = "x86_64")]
    if std::is_x86_feature_detected!("avx2") {
        // SAFETY: AVX2 is present.
        return Some(best_rate(|n| unsafe { madd_loop(n) }, 2_000_000, 7));
    }
    None
}

/// Measured f32 flop/s (2 per FMA) of 12 independent `vfmadd231ps` ymm chains on one core.
pub fn measure_fma_f32_flops() -> Option<f64> {
    #[cfg(target_arch = "x86_64")]
    if std::is_x86_feature_detected!("avx2") && std::is_x86_feature_detected!("fma") {
        // SAFETY: AVX2 and FMA are present.
        return Some(best_rate(|n| unsafe { fma_loop(n) }, 2_000_000, 7));
    }
    None
}

/// SAFETY contract: the CPU has AVX2.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn madd_loop(n: u64) -> f64 {
    // SAFETY: register-only AVX2 arithmetic; every ymm register it writes is declared clobbered.
    unsafe {
        std::arch::asm!(
            "vpxor ymm0, ymm0, ymm0",
            "vpxor ymm1, ymm1, ymm1",
            "2:",
            "vpmaddwd ymm2, ymm0, ymm1", "vpaddd ymm4, ymm4, ymm2",
            "vpmaddwd ymm3, ymm0, ymm1", "vpaddd ymm5, ymm5, ymm3",
            "vpmaddwd ymm2, ymm0, ymm1", "vpaddd ymm6, ymm6, ymm2",
            "vpmaddwd ymm3, ymm0, ymm1", "vpaddd ymm7, ymm7, ymm3",
            "vpmaddwd ymm2, ymm0, ymm1", "vpaddd ymm8, ymm8, ymm2",
            "vpmaddwd ymm3, ymm0, ymm1", "vpaddd ymm9, ymm9, ymm3",
            "vpmaddwd ymm2, ymm0, ymm1", "vpaddd ymm10, ymm10, ymm2",
            "vpmaddwd ymm3, ymm0, ymm1", "vpaddd ymm11, ymm11, ymm3",
            "vpmaddwd ymm2, ymm0, ymm1", "vpaddd ymm12, ymm12, ymm2",
            "vpmaddwd ymm3, ymm0, ymm1", "vpaddd ymm13, ymm13, ymm3",
            "vpmaddwd ymm2, ymm0, ymm1", "vpaddd ymm14, ymm14, ymm2",
            "vpmaddwd ymm3, ymm0, ymm1", "vpaddd ymm15, ymm15, ymm3",
            "dec {n}",
            "jnz 2b",
            "vzeroupper",
            n = inout(reg) n => _,
            out("ymm0") _, out("ymm1") _, out("ymm2") _, out("ymm3") _,
            out("ymm4") _, out("ymm5") _, out("ymm6") _, out("ymm7") _,
            out("ymm8") _, out("ymm9") _, out("ymm10") _, out("ymm11") _,
            out("ymm12") _, out("ymm13") _, out("ymm14") _, out("ymm15") _,
            options(nomem, nostack),
        );
    }
    n as f64 * 12.0 * 16.0 * 2.0
}

/// SAFETY contract: the CPU has AVX2 and FMA.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn fma_loop(n: u64) -> f64 {
    // SAFETY: register-only FMA arithmetic; every ymm register it writes is declared clobbered.
    unsafe {
        std::arch::asm!(
            "vxorps ymm0, ymm0, ymm0",
            "vxorps ymm1, ymm1, ymm1",
            "vxorps ymm4, ymm4, ymm4", "vxorps ymm5, ymm5, ymm5",
            "vxorps ymm6, ymm6, ymm6", "vxorps ymm7, ymm7, ymm7",
            "vxorps ymm8, ymm8, ymm8", "vxorps ymm9, ymm9, ymm9",
            "vxorps ymm10, ymm10, ymm10", "vxorps ymm11, ymm11, ymm11",
            "vxorps ymm12, ymm12, ymm12", "vxorps ymm13, ymm13, ymm13",
            "vxorps ymm14, ymm14, ymm14", "vxorps ymm15, ymm15, ymm15",
            "2:",
            "vfmadd231ps ymm4, ymm0, ymm1", "vfmadd231ps ymm5, ymm0, ymm1",
            "vfmadd231ps ymm6, ymm0, ymm1", "vfmadd231ps ymm7, ymm0, ymm1",
            "vfmadd231ps ymm8, ymm0, ymm1", "vfmadd231ps ymm9, ymm0, ymm1",
            "vfmadd231ps ymm10, ymm0, ymm1", "vfmadd231ps ymm11, ymm0, ymm1",
            "vfmadd231ps ymm12, ymm0, ymm1", "vfmadd231ps ymm13, ymm0, ymm1",
            "vfmadd231ps ymm14, ymm0, ymm1", "vfmadd231ps ymm15, ymm0, ymm1",
            "dec {n}",
            "jnz 2b",
            "vzeroupper",
            n = inout(reg) n => _,
            out("ymm0") _, out("ymm1") _,
            out("ymm4") _, out("ymm5") _, out("ymm6") _, out("ymm7") _,
            out("ymm8") _, out("ymm9") _, out("ymm10") _, out("ymm11") _,
            out("ymm12") _, out("ymm13") _, out("ymm14") _, out("ymm15") _,
            options(nomem, nostack),
        );
    }
    n as f64 * 12.0 * 8.0 * 2.0
}

/// Measured int8 ops/s of one micro-kernel on L1-resident panels (K slice of 256 groups,
/// accumulating into one tile): the kernel's own ceiling, without packing or the driver.
pub fn measure_kernel_l1_ops(kernel: &super::MmmKernel) -> f64 {
    let groups = 256;
    let lda = groups * 4;
    let a = vec![1u8; kernel.mr * lda];
    let b = vec![1u8; groups * kernel.nr * 4];
    let mut c = vec![0i32; kernel.mr * kernel.nr];
    let ops = 2.0 * (kernel.mr * kernel.nr * groups * kernel.format.k_group()) as f64;
    best_rate(
        |n| {
            for _ in 0..n {
                kernel.run_tile(groups, &a, lda, &b, &mut c, kernel.nr, true);
            }
            std::hint::black_box(&mut c);
            n as f64 * ops
        },
        2_000,
        7,
    )
}
