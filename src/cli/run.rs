//! `qatlas run project.qatlas.ron`: replays a project saved by the studio (or written by hand)
//! headless: calibrate and measure the plan, convert it and measure the integer model, time it,
//! QAT if the project asks for it, export. Prints each figure next to the one saved in the
//! project; `--json` prints `{project, model, model_changed, now, saved, seconds}`; `--update`
//! writes the new figures into the project.

use super::common::print_json;
use crate::project::file::{Measured, Results};
use crate::project::{Project, ReplayOptions, replay};
use clap::Args;
use std::path::PathBuf;

/// Flags of `qatlas run`.
#[derive(Args, Debug)]
pub struct RunArgs {
    /// The project file (`.qatlas.ron`).
    pub project: PathBuf,
    /// Write the export into this folder (same file name) instead of the project's path.
    #[arg(long)]
    pub export_dir: Option<PathBuf>,
    /// Leave out quantization-aware training even if the project configures it.
    #[arg(long)]
    pub skip_qat: bool,
    /// Leave out the latency measurement.
    #[arg(long)]
    pub skip_latency: bool,
    /// Leave out the export.
    #[arg(long)]
    pub no_export: bool,
    /// Replay even if the model file changed since the project was saved.
    #[arg(long)]
    pub accept_changed_model: bool,
    /// Store the figures measured now in the project file.
    #[arg(long)]
    pub update: bool,
    #[arg(long)]
    pub json: bool,
}

/// Runs `qatlas run`.
pub fn run(a: RunArgs) -> anyhow::Result<()> {
    let project = Project::load(&a.project)?;
    let opts = ReplayOptions {
        export_dir: a.export_dir.clone(),
        skip_qat: a.skip_qat,
        skip_latency: a.skip_latency,
        skip_export: a.no_export,
        accept_changed_model: a.accept_changed_model,
    };
    let quiet = a.json;
    let report = replay(&project, &a.project, &opts, &mut |stage| {
        if !quiet {
            eprintln!("… {stage}");
        }
    })?;
    if a.update {
        let mut p = project.clone();
        p.results = report.now.clone();
        p.save(&a.project)?;
    }
    if a.json {
        return print_json(&serde_json::to_value(&report)?);
    }
    if let Some(why) = &report.model_changed {
        println!("warning: {why}");
    }
    println!(
        "project {}  (model {})",
        a.project.display(),
        report.model.display()
    );
    for line in table(&report.now, &report.saved) {
        println!("{line}");
    }
    println!("replayed in {:.1} s", report.seconds);
    if a.update {
        println!("figures written to {}", a.project.display());
    }
    Ok(())
}

/// "98.52 % (1,000 images)" or "—".
fn measured(m: Option<Measured>) -> String {
    m.map_or("—".into(), |m| {
        format!("{:.2} % ({} images)", m.accuracy * 100.0, m.images)
    })
}

fn opt<T>(v: Option<T>, f: impl Fn(T) -> String) -> String {
    v.map_or("—".into(), f)
}

/// The replay's figures beside the saved ones, one row each.
fn table(now: &Results, saved: &Results) -> Vec<String> {
    let pct = |a: Option<f64>| opt(a, |a| format!("{:.2} %", a * 100.0));
    let mut rows = vec![
        (
            "float accuracy",
            measured(now.float_accuracy),
            measured(saved.float_accuracy),
        ),
        (
            "plan accuracy (simulated)",
            measured(now.plan_accuracy),
            measured(saved.plan_accuracy),
        ),
        (
            "integer runtime accuracy",
            measured(now.integer_accuracy),
            measured(saved.integer_accuracy),
        ),
        (
            "weight bytes",
            opt(now.weight_bytes, |b| b.to_string()),
            opt(saved.weight_bytes, |b| b.to_string()),
        ),
        (
            "latency per image (int / float)",
            opt(now.latency.as_ref(), |l| {
                format!("{:.1} / {:.1} µs", l.int_us, l.float_us)
            }),
            opt(saved.latency.as_ref(), |l| {
                format!("{:.1} / {:.1} µs ({})", l.int_us, l.float_us, l.cpu)
            }),
        ),
    ];
    if now.qat.is_some() || saved.qat.is_some() {
        rows.push((
            "QAT accuracy",
            pct(now.qat.and_then(|q| q.quantized_accuracy)),
            pct(saved.qat.and_then(|q| q.quantized_accuracy)),
        ));
    }
    let export = |r: &Results| {
        opt(r.exports.last(), |e| {
            format!(
                "{} {} bytes, {}",
                e.format.name(),
                e.bytes,
                measured(e.accuracy)
            )
        })
    };
    if !now.exports.is_empty() || !saved.exports.is_empty() {
        rows.push(("export (read back)", export(now), export(saved)));
    }
    let w = rows.iter().map(|r| r.1.chars().count()).max().unwrap_or(0);
    let mut out = vec![format!(
        "{:<32} {:<w$}   {}",
        "", "now", "saved in the project"
    )];
    out.extend(
        rows.into_iter()
            .map(|(k, n, s)| format!("{k:<32} {n:<w$}   {s}")),
    );
    if let Some(e) = now.exports.last() {
        out.push(format!("wrote {}", e.path.display()));
    }
    out
}
