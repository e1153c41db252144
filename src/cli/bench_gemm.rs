//! `qatlas bench gemm`: GOP/s (2·M·N·K / time) of every int8 GEMM path this CPU runs
//! (u8 x s8 -> s32, B pre-packed, A packed per call) and of the f32 GEMM (`kernels::sgemm`, the
//! `gemm` crate) on the same shapes in the same run, interleaved, medians reported; the int8/f32
//! ratio; and the percentage of each path's theoretical peak, `ops/cycle x clock x threads`,
//! with the clock measured (dependent-add chain) and also read from `/proc/cpuinfo`.
//!
//! Also, unless `--no-int4`: the AVX2 kernels for int4-range weights (`vpmaddubsw` sums kept in
//! s16 over several K groups, exact because |b| <= 8 or 16), on the same shapes.
//!
//! `QATLAS_KERNEL` set to a path benchmarks only that path (and fails if it cannot run here).

use super::common::print_json;
use crate::kernels::int8::{
    BLayout, KERNEL_ENV, KernelPath, MmmKernel, PackedB, Parallelism, Weights, gemm_u8s8_i32, peak,
    select_kernel,
};
use crate::kernels::{MatMut, MatRef, sgemm};
use clap::Args;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde_json::json;
use std::time::Instant;

/// Flags of `qatlas bench gemm` (threads: the global `--threads`).
#[derive(Args, Debug)]
pub struct BenchGemmArgs {
    /// Measurements per configuration (interleaved; the median is reported).
    #[arg(long, default_value_t = 5)]
    pub repeats: usize,
    /// Minimum duration of one measurement, in milliseconds (calls are repeated to reach it).
    #[arg(long, default_value_t = 150)]
    pub min_ms: u64,
    /// Only 256^3 and 6272x144x32.
    #[arg(long)]
    pub quick: bool,
    /// Before each round, wait up to this many seconds for other processes to go quiet.
    #[arg(long, default_value_t = 20.0)]
    pub wait_quiet_s: f64,
    /// Shapes to run instead of the standard five, as `MxKxN[,MxKxN...]`.
    #[arg(long)]
    pub shapes: Option<String>,
    /// Skip the int4-weight kernels.
    #[arg(long)]
    pub no_int4: bool,
    /// Skip the portable path (slow on the large shapes).
    #[arg(long)]
    pub no_portable: bool,
    #[arg(long)]
    pub json: bool,
}

/// (M, K, N): A is M x K, B is K x N. The last is the seed CNN's conv2 at batch 32.
pub const SHAPES: [(usize, usize, usize); 5] = [
    (256, 256, 256),
    (512, 512, 512),
    (1024, 1024, 1024),
    (2048, 2048, 2048),
    (6272, 144, 32),
];

/// f32 FMA: 2 FMA pipes x 8 lanes x 2 flops per cycle (AVX2 + FMA, Zen 3).
const F32_OPS_PER_CYCLE: f64 = 32.0;

fn parse_shapes(s: &str) -> Result<Vec<(usize, usize, usize)>, String> {
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

/// Waits (at most `max_s`) until other processes use under 0.15 cores for a second.
fn wait_quiet(max_s: f64) -> f64 {
    let t = Instant::now();
    loop {
        let f = foreign_cores(&mut || std::thread::sleep(std::time::Duration::from_secs(1)));
        if f < 0.15 || t.elapsed().as_secs_f64() >= max_s {
            return f;
        }
    }
}

/// A run during which other processes used at least this many cores is "noisy".
const NOISY_CORES: f64 = 0.2;

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
        (super::common::median(&mut clean), false)
    } else {
        (
            super::common::median(&mut runs.iter().map(|r| r.0).collect::<Vec<_>>()),
            true,
        )
    }
}

fn calibrate(min_s: f64, f: &mut dyn FnMut()) -> usize {
    f();
    let t1 = time_per_call(1, f).0;
    ((min_s / t1.max(1e-9)).ceil() as usize).clamp(1, 1_000_000)
}

/// Runs `qatlas bench gemm`.
pub fn run(a: BenchGemmArgs) -> anyhow::Result<()> {
    anyhow::ensure!(a.repeats > 0, "--repeats must be positive");
    let threads = rayon::current_num_threads();
    let forced = std::env::var(KERNEL_ENV)
        .ok()
        .filter(|s| !s.trim().is_empty());
    // The general kernel of each path (s8 weights), then each path's kernels for narrower
    // weights (int4), which run on weights in their range.
    let paths: Vec<KernelPath> = match forced.as_deref() {
        Some(s) if !s.eq_ignore_ascii_case("auto") => vec![select_kernel(Some(s))?.path],
        _ => KernelPath::ALL
            .into_iter()
            .filter(|p| !(a.no_portable && *p == KernelPath::Portable))
            .filter(|p| p.kernel().is_ok())
            .collect(),
    };
    let mut kernels: Vec<&'static MmmKernel> = Vec::new();
    for p in &paths {
        kernels.push(p.kernel()?);
    }
    if !a.no_int4 {
        for p in &paths {
            kernels.extend(p.kernels()?.into_iter().skip(1));
        }
    }
    let unavailable: Vec<String> = KernelPath::ALL
        .into_iter()
        .filter_map(|p| p.kernel().err().map(|e| e.to_string()))
        .collect();
    let clock = peak::measure_clock_hz();
    let cpuinfo = peak::cpuinfo_hz();
    // A busy core makes the measured clock read low, never high: take the larger figure.
    let hz = clock.unwrap_or(0.0).max(cpuinfo.unwrap_or(0.0));
    let int8_ceiling = peak::measure_avx2_int8_ops();
    let f32_ceiling = peak::measure_fma_f32_flops();
    let kernel_l1: Vec<_> = kernels
        .iter()
        .map(|k| json!({"kernel": k.name, "gops_per_core": peak::measure_kernel_l1_ops(k) / 1e9}))
        .collect();
    let shapes: Vec<_> = if let Some(s) = &a.shapes {
        parse_shapes(s).map_err(|e| anyhow::anyhow!("--shapes {e}"))?
    } else if a.quick {
        vec![SHAPES[0], SHAPES[4]]
    } else {
        SHAPES.to_vec()
    };
    let min_s = a.min_ms as f64 / 1e3;
    let mut rows = Vec::new();
    for &(m, k, n) in &shapes {
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
        let inner: Vec<usize> = (0..nconf)
            .map(|c| calibrate(min_s, &mut || call(c)))
            .collect();
        let mut secs = vec![Vec::new(); nconf];
        // Interleaved repeats; a noisy round earns an extra one (at most `repeats` extra).
        let mut extra = 0;
        let mut round = 0;
        while round < a.repeats + extra {
            if a.wait_quiet_s > 0.0 {
                wait_quiet(a.wait_quiet_s);
            }
            let mut noisy = false;
            for c in 0..nconf {
                let r = time_per_call(inner[c], &mut || call(c));
                noisy |= r.1 >= NOISY_CORES;
                secs[c].push(r);
            }
            if noisy && extra < a.repeats {
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
        let f32_peak = F32_OPS_PER_CYCLE * hz * threads as f64 / 1e9;
        let paths: Vec<_> = kernels
            .iter()
            .enumerate()
            .map(|(i, kern)| {
                let peak = kern.peak_ops_per_cycle * hz * threads as f64 / 1e9;
                json!({
                    "path": kern.path.name(), "kernel": kern.name, "gops": gops[i],
                    "weights": if kern.b_abs_max >= 128 {
                        "s8".to_string()
                    } else {
                        format!("|b| <= {} (int4)", kern.b_abs_max)
                    },
                    "ratio_to_f32": gops[i] / f32_gops,
                    "peak_gops": (peak > 0.0).then_some(peak),
                    "pct_of_peak": (peak > 0.0).then(|| 100.0 * gops[i] / peak),
                })
            })
            .collect();
        rows.push(json!({
            "M": m, "K": k, "N": n, "paths": paths,
            "noisy_runs": noisy_runs, "runs": total_runs, "median_used_noisy_runs": used_noisy,
            "f32": {"gops": f32_gops, "backend": "gemm crate (kernels::sgemm)",
                    "peak_gops": f32_peak, "pct_of_peak": 100.0 * f32_gops / f32_peak},
        }));
        if !a.json {
            eprintln!("  {m}x{k}x{n} done");
        }
    }
    let machine = json!({
        "threads": threads,
        "clock_hz_measured": clock, "clock_hz_cpuinfo": cpuinfo, "clock_hz_used": hz,
        "avx2_int8_instr_ceiling_gops_per_core": int8_ceiling.map(|x| x / 1e9),
        "fma_f32_instr_ceiling_gflops_per_core": f32_ceiling.map(|x| x / 1e9),
        "micro_kernel_l1_ceiling": kernel_l1,
        "unavailable_paths": unavailable,
        "repeats": a.repeats,
    });
    if a.json {
        return print_json(&json!({"machine": machine, "results": rows}));
    }
    print_table(&machine, &rows, hz, int8_ceiling, f32_ceiling, threads);
    Ok(())
}

fn print_table(
    machine: &serde_json::Value,
    rows: &[serde_json::Value],
    hz: f64,
    int8_ceiling: Option<f64>,
    f32_ceiling: Option<f64>,
    threads: usize,
) {
    println!(
        "int8 GEMM (u8 x s8 -> s32, B pre-packed) vs f32 GEMM, {threads} thread(s), median of {}",
        machine["repeats"]
    );
    println!(
        "clock for peaks {:.2} GHz (measured {:.2}, /proc/cpuinfo {:.2}); measured per-core \
         instruction ceilings: vpmaddwd+vpaddd {:.1} GOP/s, f32 FMA {:.1} GFLOP/s",
        hz / 1e9,
        machine["clock_hz_measured"].as_f64().unwrap_or(0.0) / 1e9,
        machine["clock_hz_cpuinfo"].as_f64().unwrap_or(0.0) / 1e9,
        int8_ceiling.unwrap_or(0.0) / 1e9,
        f32_ceiling.unwrap_or(0.0) / 1e9
    );
    for k in machine["micro_kernel_l1_ceiling"]
        .as_array()
        .into_iter()
        .flatten()
    {
        println!(
            "micro-kernel alone, panels in L1, one core: {} {:.1} GOP/s",
            k["kernel"].as_str().unwrap_or(""),
            k["gops_per_core"].as_f64().unwrap_or(0.0)
        );
    }
    println!(
        "{:<16} {:<30} {:>9} {:>8} {:>9} {:>8}",
        "M x K x N", "kernel", "GOP/s", "% peak", "f32 GOP/s", "int8/f32"
    );
    for r in rows {
        let shape = format!("{}x{}x{}", r["M"], r["K"], r["N"]);
        for p in r["paths"].as_array().into_iter().flatten() {
            println!(
                "{:<16} {:<30} {:>9.1} {:>8} {:>9.1} {:>7.2}x",
                shape,
                p["kernel"].as_str().unwrap_or(""),
                p["gops"].as_f64().unwrap_or(0.0),
                p["pct_of_peak"]
                    .as_f64()
                    .map_or("-".to_string(), |x| format!("{x:.0}%")),
                r["f32"]["gops"].as_f64().unwrap_or(0.0),
                p["ratio_to_f32"].as_f64().unwrap_or(0.0),
            );
        }
        println!(
            "{:<16} {:<30} {:>9.1} {:>7.0}%   ({} of {} runs disturbed by other processes{})",
            shape,
            "f32 (gemm crate)",
            r["f32"]["gops"].as_f64().unwrap_or(0.0),
            r["f32"]["pct_of_peak"].as_f64().unwrap_or(0.0),
            r["noisy_runs"],
            r["runs"],
            if r["median_used_noisy_runs"].as_bool() == Some(true) {
                "; median includes them"
            } else {
                ""
            }
        );
    }
    for u in machine["unavailable_paths"]
        .as_array()
        .into_iter()
        .flatten()
    {
        println!("not run: {}", u.as_str().unwrap_or(""));
    }
}
