//! Measured per-core peaks: for each int8 path, the throughput of its multiply instruction in
//! independent register chains (AMX: `tdpbusd` on tiles zeroed once), and for f32 the widest FMA
//! this CPU has (zmm with AVX-512, the `gemm` crate uses it), so that "% of peak" compares a
//! GEMM with what this CPU's path can do, not with an assumed figure for another CPU.

use super::KernelPath;
use super::peak::{measure_avx2_int8_ops, measure_fma_f32_flops};

/// A measured per-core peak.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct MeasuredPeak {
    /// What was timed.
    pub instruction: &'static str,
    /// Operations per second (2 per multiply-accumulate).
    pub ops_per_s: f64,
}

/// The measured peak of an int8 path on one core, `None` for the portable path or a path the
/// CPU cannot run.
pub fn measure_path_peak(path: KernelPath) -> Option<MeasuredPeak> {
    path.kernel().ok()?;
    let (instruction, ops_per_s) = match path {
        KernelPath::Portable => return None,
        KernelPath::Avx2 => ("vpmaddwd + vpaddd ymm", measure_avx2_int8_ops()?),
        #[cfg(target_arch = "x86_64")]
        // SAFETY: `kernel()` succeeded, so the CPU has AVX-VNNI.
        KernelPath::AvxVnni => ("{vex} vpdpbusd ymm", best_rate(|n| unsafe { vnni_ymm(n) })),
        #[cfg(target_arch = "x86_64")]
        // SAFETY: `kernel()` succeeded, so the CPU has AVX-512 VNNI.
        KernelPath::Avx512Vnni => ("vpdpbusd zmm", best_rate(|n| unsafe { vnni_zmm(n) })),
        #[cfg(target_arch = "x86_64")]
        // SAFETY: `kernel()` succeeded: AMX-INT8 present and the tile permission granted.
        KernelPath::Amx => (
            "tdpbusd 16x16x64",
            best_rate(|n| unsafe { super::amx::peak_loop(n / 64) }),
        ),
        #[cfg(not(target_arch = "x86_64"))]
        _ => return None,
    };
    Some(MeasuredPeak {
        instruction,
        ops_per_s,
    })
}

/// The measured f32 FMA peak of one core with the widest vectors this CPU has.
pub fn measure_f32_peak() -> Option<MeasuredPeak> {
    #[cfg(target_arch = "x86_64")]
    if std::is_x86_feature_detected!("avx512f") {
        return Some(MeasuredPeak {
            instruction: "vfmadd231ps zmm",
            // SAFETY: AVX-512 F is present.
            ops_per_s: best_rate(|n| unsafe { fma_zmm(n) }),
        });
    }
    Some(MeasuredPeak {
        instruction: "vfmadd231ps ymm",
        ops_per_s: measure_fma_f32_flops()?,
    })
}

fn best_rate(run: impl FnMut(u64) -> f64) -> f64 {
    super::peak::best_rate(run, 2_000_000, 7)
}

/// 12 independent chains of one register-only instruction, `n` times; returns the ops done.
macro_rules! chains {
    ($name:ident, $feat:literal, $zero:literal, $op:literal, $reg:literal, $ops:expr) => {
        /// SAFETY contract: the CPU has the target features.
        #[cfg(target_arch = "x86_64")]
        #[target_feature(enable = $feat)]
        unsafe fn $name(n: u64) -> f64 {
            // SAFETY: register-only arithmetic; every vector register written is clobbered.
            unsafe {
                std::arch::asm!(
                    concat!($zero, " ", $reg, "0, ", $reg, "0, ", $reg, "0"),
                    concat!($zero, " ", $reg, "1, ", $reg, "1, ", $reg, "1"),
                    "2:",
                    concat!($op, " ", $reg, "4, ", $reg, "0, ", $reg, "1"),
                    concat!($op, " ", $reg, "5, ", $reg, "0, ", $reg, "1"),
                    concat!($op, " ", $reg, "6, ", $reg, "0, ", $reg, "1"),
                    concat!($op, " ", $reg, "7, ", $reg, "0, ", $reg, "1"),
                    concat!($op, " ", $reg, "8, ", $reg, "0, ", $reg, "1"),
                    concat!($op, " ", $reg, "9, ", $reg, "0, ", $reg, "1"),
                    concat!($op, " ", $reg, "10, ", $reg, "0, ", $reg, "1"),
                    concat!($op, " ", $reg, "11, ", $reg, "0, ", $reg, "1"),
                    concat!($op, " ", $reg, "12, ", $reg, "0, ", $reg, "1"),
                    concat!($op, " ", $reg, "13, ", $reg, "0, ", $reg, "1"),
                    concat!($op, " ", $reg, "14, ", $reg, "0, ", $reg, "1"),
                    concat!($op, " ", $reg, "15, ", $reg, "0, ", $reg, "1"),
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
            n as f64 * 12.0 * $ops
        }
    };
}

// Ops per instruction: lanes x 4 MACs x 2 (VNNI), lanes x 2 (FMA).
chains!(
    vnni_ymm,
    "avx2,avxvnni",
    "vpxor",
    "{{vex}} vpdpbusd",
    "ymm",
    8.0 * 4.0 * 2.0
);
chains!(
    vnni_zmm,
    "avx512f,avx512vnni",
    "vpxord",
    "vpdpbusd",
    "zmm",
    16.0 * 4.0 * 2.0
);
chains!(
    fma_zmm,
    "avx512f",
    "vpxord",
    "vfmadd231ps",
    "zmm",
    16.0 * 2.0
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_runnable_path_has_a_positive_measured_peak() {
        for p in KernelPath::ALL {
            let peak = measure_path_peak(p);
            match (p, p.kernel()) {
                (KernelPath::Portable, _) | (_, Err(_)) => assert!(peak.is_none(), "{p:?}"),
                _ => {
                    let m = peak.expect("a runnable SIMD path has a peak");
                    assert!(m.ops_per_s > 1e9, "{p:?} {m:?}");
                    eprintln!(
                        "{}: {} {:.1} GOP/s",
                        p.name(),
                        m.instruction,
                        m.ops_per_s / 1e9
                    );
                }
            }
        }
        assert!(measure_f32_peak().is_some_and(|m| m.ops_per_s > 1e9));
    }
}
