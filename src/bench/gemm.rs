//! The int8 GEMM kernel benchmark: GOP/s (2·M·N·K / time) of every int8 GEMM path this CPU runs
//! (u8 x s8 -> s32, B pre-packed, A packed per call) and of the f32 GEMM (`kernels::sgemm`, the
//! `gemm` crate) on the same shapes in the same run, interleaved, medians reported; the int8/f32
//! ratio; and the percentage of each path's peak measured on this CPU in the same run (its
//! multiply instruction in independent register chains, `kernels::int8::path_peak`, times the
//! threads; f32: the widest FMA the CPU has). The clock (dependent `imul` chain, and
//! `/proc/cpuinfo`) is reported for reference only.
//!
//! Also, unless `int4` is off: the AVX2 kernels for int4-range weights (`vpmaddubsw` sums kept
//! in s16 over several K groups, exact because |b| <= 8 or 16), on the same shapes.
//!
//! `QATLAS_KERNEL` set to a path benchmarks only that path (and fails if it cannot run here).
//! Runs on the calling thread (the GEMMs use the rayon pool); knows nothing of printing or egui.

use super::{BenchError, median};
use crate::kernels::int8::{
    BLayout, KERNEL_ENV, KernelPath, MmmKernel, PackedB, Parallelism, Weights, gemm_u8s8_i32,
    path_peak, peak, select_kernel,
};
use crate::kernels::{MatMut, MatRef, sgemm};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::Serialize;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

/// (M, K, N): A is M x K, B is K x N. The last is the seed CNN's conv2 at batch 32.
pub const SHAPES: [(usize, usize, usize); 5] = [
    (256, 256, 256),
    (512, 512, 512),
    (1024, 1024, 1024),
    (2048, 2048, 2048),
    (6272, 144, 32),
];

/// The quick subset: 256^3 and 6272x144x32.
pub const QUICK_SHAPES: [(usize, usize, usize); 2] = [SHAPES[0], SHAPES[4]];

/// A run during which other processes used at least this many cores is "noisy".
const NOISY_CORES: f64 = 0.2;

/// What to measure and how long.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct GemmConfig {
    /// Measurements per configuration (interleaved; the median is reported).
    pub repeats: usize,
    /// Minimum duration of one measurement, in milliseconds (calls are repeated to reach it).
    pub min_ms: u64,
    /// Before each round, wait up to this many seconds for other processes to go quiet.
    pub wait_quiet_s: f64,
    /// (M, K, N) shapes, in order.
    pub shapes: Vec<(usize, usize, usize)>,
    /// Also the int4-weight kernels.
    pub int4: bool,
    /// Also the portable path (slow on the large shapes).
    pub portable: bool,
}

impl Default for GemmConfig {
    /// `qatlas bench gemm`'s defaults: the five standard shapes, 5 repeats of 150 ms.
    fn default() -> Self {
        GemmConfig {
            repeats: 5,
            min_ms: 150,
            wait_quiet_s: 20.0,
            shapes: SHAPES.to_vec(),
            int4: true,
            portable: true,
        }
    }
}

impl GemmConfig {
    /// A short run for the studio: the two quick shapes, 3 repeats of 60 ms, no waiting.
    pub fn quick() -> Self {
        GemmConfig {
            repeats: 3,
            min_ms: 60,
            wait_quiet_s: 0.0,
            shapes: QUICK_SHAPES.to_vec(),
            ..GemmConfig::default()
        }
    }

    /// Checks the values are usable.
    pub fn validate(&self) -> Result<(), BenchError> {
        let bad = |s: &str| Err(BenchError::Config(s.to_string()));
        if self.repeats == 0 {
            return bad("repeats must be positive");
        }
        if self.shapes.is_empty() {
            return bad("at least one shape is needed");
        }
        if self
            .shapes
            .iter()
            .any(|&(m, k, n)| m == 0 || k == 0 || n == 0)
        {
            return bad("shapes need positive sizes");
        }
        if !self.wait_quiet_s.is_finite() || self.wait_quiet_s < 0.0 {
            return bad("the quiet wait must be zero or positive");
        }
        Ok(())
    }
}

/// Parses `MxKxN[,MxKxN...]`.
pub fn parse_shapes(s: &str) -> Result<Vec<(usize, usize, usize)>, String> {
    s.split(',')
        .map(|t| {
            let d: Vec<usize> = t
                .trim()
                .split('x')
                .map(|x| x.parse().map_err(|_| format!("`{t}`: expected MxKxN")))
                .collect::<Result<_, _>>()?;
            match d[..] {
                [m, k, n] if m > 0 && k > 0 && n > 0 => Ok((m, k, n)),
                _ => Err(format!("`{t}`: expected MxKxN with positive sizes")),
            }
        })
        .collect()
}

/// One micro-kernel alone, panels in L1, one core.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct KernelCeiling {
    pub kernel: &'static str,
    pub gops_per_core: f64,
}

/// A measured per-core peak.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct PathPeak {
    pub path: &'static str,
    pub instruction: &'static str,
    pub gops_per_core: f64,
}

/// The machine the numbers come from (field names are `qatlas bench gemm --json`'s).
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct GemmMachine {
    pub threads: usize,
    pub clock_hz_measured: Option<f64>,
    pub clock_hz_cpuinfo: Option<f64>,
    pub micro_kernel_l1_ceiling: Vec<KernelCeiling>,
    /// The measured per-core peak of each int8 path that runs here (the "% of peak" basis).
    pub path_peaks: Vec<PathPeak>,
    /// The measured per-core f32 FMA peak (the f32 "% of peak" basis).
    pub f32_peak: Option<PathPeak>,
    pub unavailable_paths: Vec<String>,
    pub repeats: usize,
}

/// One int8 kernel on one shape.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct GemmPathResult {
    pub path: &'static str,
    pub kernel: &'static str,
    pub gops: f64,
    /// `s8`, or `|b| <= 16 (int4)` for the narrow-weight kernels.
    pub weights: String,
    pub ratio_to_f32: f64,
    pub peak_gops: Option<f64>,
    pub pct_of_peak: Option<f64>,
}

/// The f32 GEMM on one shape.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct F32Result {
    pub gops: f64,
    pub backend: &'static str,
    pub peak_gops: f64,
    pub pct_of_peak: f64,
}

/// Every kernel on one shape, measured interleaved in the same run.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct GemmRow {
    #[serde(rename = "M")]
    pub m: usize,
    #[serde(rename = "K")]
    pub k: usize,
    #[serde(rename = "N")]
    pub n: usize,
    pub paths: Vec<GemmPathResult>,
    pub noisy_runs: usize,
    pub runs: usize,
    pub median_used_noisy_runs: bool,
    pub f32: F32Result,
    /// Stopped before every repeat ran: the medians are of the rounds that did.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub stopped_early: bool,
}

/// The whole benchmark: `{"machine": ..., "results": [...]}`.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct GemmReport {
    pub machine: GemmMachine,
    pub results: Vec<GemmRow>,
    /// The stop flag ended the run early (the results hold the shapes that finished).
    #[serde(skip)]
    pub stopped: bool,
}

/// What [`run_gemm`] reports while it runs.
#[derive(Clone, Copy, Debug)]
pub enum GemmStep<'a> {
    /// Clock and ceilings are measured; shapes come next.
    Machine(&'a GemmMachine),
    /// A shape finished.
    Row(&'a GemmRow),
}

/// Busy jiffies of all CPUs (`/proc/stat`) and of this process (`/proc/self/stat`).
fn jiffies() -> Option<(u64, u64)> {
    let all = std::fs::read_to_string("/proc/stat").ok()?;
    let v: Vec<u64> = all
        .lines()
        .next()?
        .split_whitespace()
        .skip(1)
        .take(8)
        .filter_map(|x| x.parse().ok())
        .collect();
    let busy = v.iter().sum::<u64>() - v.get(3)? - v.get(4)?;
    let me = std::fs::read_to_string("/proc/self/stat").ok()?;
    let f: Vec<&str> = me.rsplit_once(')')?.1.split_whitespace().collect();
    let own = f.get(11)?.parse::<u64>().ok()? + f.get(12)?.parse::<u64>().ok()?;
    Some((busy, own))
}

/// CPU cores used by other processes while `f` ran (Linux; 0 elsewhere), from jiffies at 100 Hz.
fn foreign_cores(f: &mut dyn FnMut()) -> f64 {
    let t = Instant::now();
    let j0 = jiffies();
    f();
    match (j0, jiffies()) {
        (Some((b0, o0)), Some((b1, o1))) => {
            let other = (b1 - b0).saturating_sub(o1 - o0) as f64 / 100.0;
            other / t.elapsed().as_secs_f64().max(1e-3)
        }
        _ => 0.0,
    }
}

/// Waits (at most `max_s`, and not past a stop) until other processes use under 0.15 cores
/// for a second.
fn wait_quiet(max_s: f64, stop: &AtomicBool) -> f64 {
    let t = Instant::now();
    loop {
        let f = foreign_cores(&mut || std::thread::sleep(std::time::Duration::from_secs(1)));
        if f < 0.15 || t.elapsed().as_secs_f64() >= max_s || stop.load(Ordering::Relaxed) {
            return f;
        }
    }
}

/// Seconds per call, as the mean over `inner` calls, and the foreign load during them.
fn time_per_call(inner: usize, f: &mut dyn FnMut()) -> (f64, f64) {
    let mut dt = 0.0;
    let load = foreign_cores(&mut || {
        let t = Instant::now();
        for _ in 0..inner {
            f();
        }
        dt = t.elapsed().as_secs_f64() / inner as f64;
    });
    (dt, load)
}

/// Median over the clean runs when at least 3 are clean, else over all runs; and whether
/// noisy runs had to be used.
fn clean_median(runs: &[(f64, f64)]) -> (f64, bool) {
    let mut clean: Vec<f64> = runs
        .iter()
        .filter(|r| r.1 < NOISY_CORES)
        .map(|r| r.0)
        .collect();
    if clean.len() >= 3 {
        (median(&mut clean), false)
    } else {
        (
            median(&mut runs.iter().map(|r| r.0).collect::<Vec<_>>()),
            true,
        )
    }
}

fn calibrate(min_s: f64, f: &mut dyn FnMut()) -> usize {
    f();
    let t1 = time_per_call(1, f).0;
    ((min_s / t1.max(1e-9)).ceil() as usize).clamp(1, 1_000_000)
}

/// The kernels to measure: each path's general kernel (s8 weights), then (with `int4`) each
/// path's kernels for narrower weights.
fn kernels_to_run(cfg: &GemmConfig) -> Result<Vec<&'static MmmKernel>, BenchError> {
    let forced = std::env::var(KERNEL_ENV)
        .ok()
        .filter(|s| !s.trim().is_empty());
    let paths: Vec<KernelPath> = match forced.as_deref() {
        Some(s) if !s.eq_ignore_ascii_case("auto") => vec![select_kernel(Some(s))?.path],
        _ => KernelPath::ALL
            .into_iter()
            .filter(|p| cfg.portable || *p != KernelPath::Portable)
            .filter(|p| p.kernel().is_ok())
            .collect(),
    };
    let mut kernels: Vec<&'static MmmKernel> = Vec::new();
    for p in &paths {
        kernels.push(p.kernel()?);
    }
    if cfg.int4 {
        for p in &paths {
            kernels.extend(p.kernels()?.into_iter().skip(1));
        }
    }
    Ok(kernels)
}

/// Runs the kernel benchmark on the calling thread, reporting the machine and then each shape
/// through `on_step` as it finishes. `stop` is checked between measurements; a stopped run
/// returns the shapes that finished with [`GemmReport::stopped`] set.
pub fn run_gemm(
    cfg: &GemmConfig,
    on_step: &mut dyn FnMut(GemmStep<'_>),
    stop: &AtomicBool,
) -> Result<GemmReport, BenchError> {
    cfg.validate()?;
    let stopped = || stop.load(Ordering::Relaxed);
    let threads = rayon::current_num_threads();
    let kernels = kernels_to_run(cfg)?;
    let unavailable: Vec<String> = KernelPath::ALL
        .into_iter()
        .filter_map(|p| p.kernel().err().map(|e| e.to_string()))
        .collect();
    let clock = peak::measure_clock_hz();
    let cpuinfo = peak::cpuinfo_hz();
    let path_peaks: Vec<PathPeak> = KernelPath::ALL
        .into_iter()
        .filter_map(|p| {
            path_peak::measure_path_peak(p).map(|m| PathPeak {
                path: p.name(),
                instruction: m.instruction,
                gops_per_core: m.ops_per_s / 1e9,
            })
        })
        .collect();
    let f32_peak = path_peak::measure_f32_peak().map(|m| PathPeak {
        path: "f32",
        instruction: m.instruction,
        gops_per_core: m.ops_per_s / 1e9,
    });
    let peaks = Peaks {
        paths: &path_peaks,
        f32: f32_peak.as_ref(),
        threads,
    };
    let kernel_l1: Vec<_> = kernels
        .iter()
        .map(|k| KernelCeiling {
            kernel: k.name,
            gops_per_core: peak::measure_kernel_l1_ops(k) / 1e9,
        })
        .collect();
    let machine = GemmMachine {
        threads,
        clock_hz_measured: clock,
        clock_hz_cpuinfo: cpuinfo,
        micro_kernel_l1_ceiling: kernel_l1,
        path_peaks: path_peaks.clone(),
        f32_peak: f32_peak.clone(),
        unavailable_paths: unavailable,
        repeats: cfg.repeats,
    };
    on_step(GemmStep::Machine(&machine));
    let mut report = GemmReport {
        machine,
        results: Vec::new(),
        stopped: false,
    };
    for &(m, k, n) in &cfg.shapes {
        if stopped() {
            break;
        }
        match measure_shape(cfg, &kernels, (m, k, n), &peaks, stop)? {
            Some(row) => {
                on_step(GemmStep::Row(&row));
                report.results.push(row);
            }
            None => break,
        }
    }
    report.stopped = stopped();
    Ok(report)
}

/// The measured peaks of a run, for every thread.
struct Peaks<'a> {
    paths: &'a [PathPeak],
    f32: Option<&'a PathPeak>,
    threads: usize,
}

impl Peaks<'_> {
    /// GOP/s of a path on all threads (0 when not measured, e.g. portable).
    fn of(&self, path: &str) -> f64 {
        self.paths
            .iter()
            .find(|p| p.path == path)
            .map_or(0.0, |p| p.gops_per_core * self.threads as f64)
    }
}

/// Measures every kernel and the f32 GEMM on one shape; `None` if stopped before one full
/// interleaved round (a stop after that keeps the rounds measured).
fn measure_shape(
    cfg: &GemmConfig,
    kernels: &[&'static MmmKernel],
    (m, k, n): (usize, usize, usize),
    peaks: &Peaks<'_>,
    stop: &AtomicBool,
) -> Result<Option<GemmRow>, BenchError> {
    let stopped = || stop.load(Ordering::Relaxed);
    let min_s = cfg.min_ms as f64 / 1e3;
    let mut r = ChaCha8Rng::seed_from_u64(0);
    let au8: Vec<u8> = (0..m * k).map(|_| r.random()).collect();
    let bs8: Vec<i8> = (0..k * n).map(|_| r.random()).collect();
    let af: Vec<f32> = (0..m * k).map(|_| r.random_range(-1.0..1.0)).collect();
    let bf: Vec<f32> = (0..k * n).map(|_| r.random_range(-1.0..1.0)).collect();
    let packed: Vec<PackedB> = kernels
        .iter()
        .map(|&kern| {
            // Narrow kernels get the same weights shifted into their range.
            let shift = (128 / kern.b_abs_max as u32).trailing_zeros();
            let w: Vec<i8> = bs8.iter().map(|&v| v >> shift).collect();
            PackedB::pack(kern, Weights::S8(&w), k, n, BLayout::KxN)
        })
        .collect::<Result<_, _>>()?;
    let mut ci = vec![0i32; m * n];
    let mut cf = vec![0f32; m * n];
    // Configurations: each int8 path, then f32 (index kernels.len()).
    let nconf = kernels.len() + 1;
    let mut call = |c: usize| {
        if c < kernels.len() {
            gemm_u8s8_i32(&au8, m, &packed[c], &mut ci, Parallelism::Rayon)
                .expect("shapes checked at packing");
        } else {
            sgemm(
                MatRef::row_major(&af, m, k),
                MatRef::row_major(&bf, k, n),
                MatMut::row_major(&mut cf, m, n),
                false,
                true,
            );
        }
    };
    let mut inner = Vec::with_capacity(nconf);
    for c in 0..nconf {
        if stopped() {
            return Ok(None);
        }
        inner.push(calibrate(min_s, &mut || call(c)));
    }
    let mut secs = vec![Vec::new(); nconf];
    // Interleaved repeats; a noisy round earns an extra one (at most `repeats` extra).
    let mut extra = 0;
    let mut round = 0;
    let mut stopped_early = false;
    'rounds: while round < cfg.repeats + extra {
        if cfg.wait_quiet_s > 0.0 {
            wait_quiet(cfg.wait_quiet_s, stop);
        }
        let mut noisy = false;
        for c in 0..nconf {
            if stopped() {
                if round == 0 {
                    return Ok(None);
                }
                // Keep the whole rounds: every configuration the same number of runs.
                secs.iter_mut().for_each(|s| s.truncate(round));
                stopped_early = true;
                break 'rounds;
            }
            let r = time_per_call(inner[c], &mut || call(c));
            noisy |= r.1 >= NOISY_CORES;
            secs[c].push(r);
        }
        if noisy && extra < cfg.repeats {
            extra += 1;
        }
        round += 1;
    }
    let ops = 2.0 * (m * n * k) as f64;
    let meds: Vec<(f64, bool)> = secs.iter().map(|s| clean_median(s)).collect();
    let used_noisy = meds.iter().any(|m| m.1);
    let noisy_runs = secs.iter().flatten().filter(|r| r.1 >= NOISY_CORES).count();
    let total_runs = secs.iter().map(Vec::len).sum::<usize>();
    let gops: Vec<f64> = meds.iter().map(|m| ops / m.0 / 1e9).collect();
    let f32_gops = gops[kernels.len()];
    let f32_peak = peaks
        .f32
        .map_or(0.0, |p| p.gops_per_core * peaks.threads as f64);
    let paths = kernels
        .iter()
        .enumerate()
        .map(|(i, kern)| {
            // The narrow-weight kernels use a different instruction mix (s16 sums of
            // `vpmaddubsw`) than the path's measured one: no "% of peak" for them.
            let peak = if kern.b_abs_max >= 128 {
                peaks.of(kern.path.name())
            } else {
                0.0
            };
            GemmPathResult {
                path: kern.path.name(),
                kernel: kern.name,
                gops: gops[i],
                weights: if kern.b_abs_max >= 128 {
                    "s8".to_string()
                } else {
                    format!("|b| <= {} (int4)", kern.b_abs_max)
                },
                ratio_to_f32: gops[i] / f32_gops,
                peak_gops: (peak > 0.0).then_some(peak),
                pct_of_peak: (peak > 0.0).then(|| 100.0 * gops[i] / peak),
            }
        })
        .collect();
    Ok(Some(GemmRow {
        m,
        k,
        n,
        paths,
        noisy_runs,
        runs: total_runs,
        median_used_noisy_runs: used_noisy,
        f32: F32Result {
            gops: f32_gops,
            backend: "gemm crate (kernels::sgemm)",
            peak_gops: f32_peak,
            pct_of_peak: if f32_peak > 0.0 {
                100.0 * f32_gops / f32_peak
            } else {
                0.0
            },
        },
        stopped_early,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tiny() -> GemmConfig {
        GemmConfig {
            repeats: 1,
            min_ms: 1,
            wait_quiet_s: 0.0,
            shapes: vec![(8, 16, 8), (4, 4, 4)],
            int4: false,
            portable: true,
        }
    }

    #[test]
    fn config_is_validated() {
        assert!(GemmConfig::default().validate().is_ok());
        assert!(GemmConfig::quick().validate().is_ok());
        for bad in [
            GemmConfig {
                repeats: 0,
                ..tiny()
            },
            GemmConfig {
                shapes: vec![],
                ..tiny()
            },
            GemmConfig {
                shapes: vec![(1, 0, 1)],
                ..tiny()
            },
            GemmConfig {
                wait_quiet_s: f64::NAN,
                ..tiny()
            },
        ] {
            assert!(matches!(
                run_gemm(&bad, &mut |_| {}, &AtomicBool::new(false)),
                Err(BenchError::Config(_))
            ));
        }
        assert_eq!(parse_shapes("2x3x4, 5x6x7"), Ok(vec![(2, 3, 4), (5, 6, 7)]));
        assert!(parse_shapes("2x3").is_err());
        assert!(parse_shapes("2x0x3").is_err());
    }

    #[test]
    fn rows_arrive_through_the_callback_with_positive_throughput() {
        let mut seen = Vec::new();
        let mut machine = false;
        let report = run_gemm(
            &tiny(),
            &mut |s| match s {
                GemmStep::Machine(_) => machine = true,
                GemmStep::Row(r) => seen.push((r.m, r.k, r.n)),
            },
            &AtomicBool::new(false),
        )
        .unwrap();
        assert!(machine && !report.stopped);
        assert_eq!(seen, vec![(8, 16, 8), (4, 4, 4)]);
        for row in &report.results {
            assert!(row.f32.gops > 0.0);
            assert!(!row.paths.is_empty());
            assert!(
                row.paths
                    .iter()
                    .all(|p| p.gops > 0.0 && p.ratio_to_f32 > 0.0)
            );
        }
        // The JSON keeps the CLI's field names.
        let v = serde_json::to_value(&report).unwrap();
        assert_eq!(v["results"][0]["M"], 8);
        assert!(v["machine"]["path_peaks"].is_array());
        // Every path that ran has a measured peak (portable has none), and so has f32.
        for p in &report.results[0].paths {
            let general = p.weights == "s8";
            assert_eq!(
                p.pct_of_peak.is_some(),
                p.path != "portable" && general,
                "{p:?}"
            );
        }
        assert!(report.results[0].f32.pct_of_peak > 0.0);
        assert!(v.get("stopped").is_none());
    }

    #[test]
    fn a_raised_stop_flag_ends_the_run_before_any_shape() {
        let report = run_gemm(&tiny(), &mut |_| {}, &AtomicBool::new(true)).unwrap();
        assert!(report.stopped);
        assert!(report.results.is_empty());
    }
}
