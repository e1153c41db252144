//! Benchmarks as a library: the int8 GEMM kernel benchmark ([`gemm`]), the end-to-end seed-cnn
//! benchmark ([`e2e`]) and a plan's per-layer latency against float ([`latency`]), shared by
//! `qatlas bench` (which prints them) and the studio (which shows them live). Each takes a plain
//! configuration, honours a stop flag and returns serializable result structs; the long ones
//! report results through a callback as they complete.
//!
//! Shared machines are noisy: only ratios measured in the same run mean much, so every figure
//! comes with a baseline measured alongside it. Nothing here prints, parses flags or knows egui.

pub mod e2e;
pub mod gemm;
pub mod latency;
pub mod timing;

pub use e2e::{E2eConfig, E2eProgress, E2eResult, run_e2e};
pub use gemm::{GemmConfig, GemmMachine, GemmReport, GemmRow, GemmStep, run_gemm};
pub use latency::{LatencyConfig, LayerLatency, PlanLatency, plan_latency};

use crate::kernels::int8::amx;
use serde::Serialize;

/// Why a benchmark could not run.
#[derive(Debug, thiserror::Error)]
pub enum BenchError {
    /// A configuration value is out of range.
    #[error("invalid benchmark setting: {0}")]
    Config(String),
    #[error(transparent)]
    Kernel(#[from] crate::kernels::int8::Int8Error),
    /// A step of the end-to-end pipeline failed.
    #[error("{step}: {message}")]
    Step { step: &'static str, message: String },
    /// The stop flag was raised (benchmarks that return no partial result).
    #[error("the benchmark was stopped")]
    Stopped,
}

/// Median of `v` (the upper one for an even count; NaN when empty), as the CLI has always used.
pub fn median(v: &mut [f64]) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v.get(v.len() / 2).copied().unwrap_or(f64::NAN)
}

/// The `q`-quantile of `v` (0..=1) by nearest rank on the sorted values (NaN when empty):
/// the value at rank `round((len - 1) · q)`.
pub fn percentile(v: &mut [f64], q: f64) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    if v.is_empty() {
        return f64::NAN;
    }
    v[((v.len() - 1) as f64 * q.clamp(0.0, 1.0)).round() as usize]
}

/// The CPU this process runs on, for a person reading a figure later: `/proc/cpuinfo`'s model
/// name with its family and model numbers ("AMD EPYC (family 26, model 2)"), or "unknown CPU".
pub fn cpu_name() -> String {
    static NAME: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    NAME.get_or_init(read_cpu_name).clone()
}

fn read_cpu_name() -> String {
    let info = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let field = |key: &str| {
        info.lines()
            .find(|l| l.split(':').next().is_some_and(|k| k.trim() == key))
            .and_then(|l| l.split_once(':'))
            .map(|(_, v)| v.trim().to_string())
    };
    match (field("model name"), field("cpu family"), field("model")) {
        (Some(n), Some(f), Some(m)) => format!("{n} (family {f}, model {m})"),
        (Some(n), _, _) => n,
        _ => "unknown CPU".to_string(),
    }
}

/// The CPU features that decide which int8 paths exist, detected at run time.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct CpuFeatures {
    pub avx2: bool,
    pub fma: bool,
    pub avx512_vnni: bool,
    pub avx_vnni: bool,
    /// AMX-TILE + AMX-INT8 with the OS's tile state enabled.
    pub amx: bool,
    /// What CPUID/XCR0 said about AMX, for a person.
    pub amx_detail: String,
    /// The int8 path GEMMs use (the fastest available, or `QATLAS_KERNEL`), or why none.
    pub kernel_in_use: String,
    /// Each path this CPU cannot run, with the reason.
    pub unavailable_paths: Vec<String>,
}

impl CpuFeatures {
    /// Reads CPUID (cheap; no measurement).
    pub fn detect() -> CpuFeatures {
        use crate::kernels::int8::{KernelPath, selected_kernel};
        #[cfg(target_arch = "x86_64")]
        let (avx2, fma, avx512_vnni, avx_vnni) = (
            std::is_x86_feature_detected!("avx2"),
            std::is_x86_feature_detected!("fma"),
            std::is_x86_feature_detected!("avx512f")
                && std::is_x86_feature_detected!("avx512bw")
                && std::is_x86_feature_detected!("avx512vnni"),
            std::is_x86_feature_detected!("avxvnni"),
        );
        #[cfg(not(target_arch = "x86_64"))]
        let (avx2, fma, avx512_vnni, avx_vnni) = (false, false, false, false);
        let a = amx::detect();
        CpuFeatures {
            avx2,
            fma,
            avx512_vnni,
            avx_vnni,
            amx: a.present(),
            amx_detail: a.to_string(),
            kernel_in_use: match selected_kernel() {
                Ok(k) => format!("{} ({})", k.path.name(), k.name),
                Err(e) => format!("none: {e}"),
            },
            unavailable_paths: KernelPath::ALL
                .into_iter()
                .filter_map(|p| p.kernel().err().map(|e| e.to_string()))
                .collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn median_takes_the_upper_middle() {
        assert_eq!(median(&mut [3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(&mut [4.0, 1.0, 3.0, 2.0]), 3.0);
        assert!(median(&mut []).is_nan());
    }

    #[test]
    fn features_name_the_kernel_in_use() {
        let f = CpuFeatures::detect();
        assert!(!f.kernel_in_use.is_empty());
        // The portable path always runs, so at most four paths are unavailable.
        assert!(f.unavailable_paths.len() <= 4);
        assert!(f.unavailable_paths.iter().any(|p| p.contains("amx")) || f.amx);
    }
}
