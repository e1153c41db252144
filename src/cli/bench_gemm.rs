//! `qatlas bench gemm`: prints the int8 GEMM kernel benchmark of [`crate::bench::gemm`] (GOP/s of
//! every int8 path this CPU runs vs the f32 GEMM on the same shapes in the same run, interleaved,
//! medians, % of each path's peak) as a table or as one JSON object.
//!
//! `QATLAS_KERNEL` set to a path benchmarks only that path (and fails if it cannot run here).

use super::common::print_json;
use crate::bench::gemm::{GemmConfig, GemmReport, GemmStep, SHAPES, parse_shapes, run_gemm};
use clap::Args;
use std::sync::atomic::AtomicBool;

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

impl BenchGemmArgs {
    /// The benchmark configuration these flags ask for.
    pub fn config(&self) -> anyhow::Result<GemmConfig> {
        anyhow::ensure!(self.repeats > 0, "--repeats must be positive");
        let shapes = if let Some(s) = &self.shapes {
            parse_shapes(s).map_err(|e| anyhow::anyhow!("--shapes {e}"))?
        } else if self.quick {
            vec![SHAPES[0], SHAPES[4]]
        } else {
            SHAPES.to_vec()
        };
        Ok(GemmConfig {
            repeats: self.repeats,
            min_ms: self.min_ms,
            wait_quiet_s: self.wait_quiet_s,
            shapes,
            int4: !self.no_int4,
            portable: !self.no_portable,
        })
    }
}

/// Runs the benchmark, noting each finished shape on stderr unless `quiet`.
pub fn measure(a: &BenchGemmArgs, quiet: bool) -> anyhow::Result<GemmReport> {
    let cfg = a.config()?;
    Ok(run_gemm(
        &cfg,
        &mut |s| {
            if let GemmStep::Row(r) = s
                && !quiet
            {
                eprintln!("  {}x{}x{} done", r.m, r.k, r.n);
            }
        },
        &AtomicBool::new(false),
    )?)
}

/// Runs `qatlas bench gemm`.
pub fn run(a: BenchGemmArgs) -> anyhow::Result<()> {
    let report = measure(&a, a.json)?;
    if a.json {
        return print_json(&serde_json::to_value(&report)?);
    }
    print_report(&report);
    Ok(())
}

/// Prints the report as the human-readable table.
pub fn print_report(report: &GemmReport) {
    let machine = serde_json::to_value(&report.machine).unwrap_or_default();
    let rows: Vec<serde_json::Value> = report
        .results
        .iter()
        .map(|r| serde_json::to_value(r).unwrap_or_default())
        .collect();
    print_table(&machine, &rows, report.machine.threads);
}

fn print_table(machine: &serde_json::Value, rows: &[serde_json::Value], threads: usize) {
    println!(
        "int8 GEMM (u8 x s8 -> s32, B pre-packed) vs f32 GEMM, {threads} thread(s), median of {}",
        machine["repeats"]
    );
    println!(
        "clock {:.2} GHz measured ({:.2} in /proc/cpuinfo); % peak = of the path's peak measured \
         now x {threads} thread(s)",
        machine["clock_hz_measured"].as_f64().unwrap_or(0.0) / 1e9,
        machine["clock_hz_cpuinfo"].as_f64().unwrap_or(0.0) / 1e9,
    );
    let peaks = machine["path_peaks"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    for p in peaks.iter().chain(std::iter::once(&machine["f32_peak"])) {
        if p.is_null() {
            continue;
        }
        println!(
            "measured peak, one core: {:<10} {:<24} {:.1} GOP/s",
            p["path"].as_str().unwrap_or(""),
            p["instruction"].as_str().unwrap_or(""),
            p["gops_per_core"].as_f64().unwrap_or(0.0)
        );
    }
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
