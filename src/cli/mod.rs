//! Headless subcommands, the command-line twin of the studio: `train`, `eval`, `info`, `bench`,
//! `ptq`, `qat`, `sensitivity`, `convert`, `export` and `run` (replay a project).
//!
//! Raw flags are parsed by clap into [`Cli`]; each subcommand turns them into one validated
//! configuration, runs it, prints a human summary or (with `--json`) one JSON object on stdout.
//! Progress bars go to stderr.

pub mod bench;
pub mod bench_gemm;
pub mod bench_latency;
pub mod bench_qat;
pub mod common;
pub mod eval;
pub mod export;
pub mod info;
pub mod ptq;
pub mod qat;
pub mod run;
pub mod search;
pub mod sensitivity;
pub mod train;

pub mod bench_e2e;
pub mod convert;

use clap::{Parser, Subcommand};

/// qatlas: quantization studio for neural networks.
#[derive(Parser, Debug)]
#[command(name = "qatlas", version, about)]
pub struct Cli {
    /// Worker threads for compute (default: all cores).
    #[arg(long, global = true)]
    pub threads: Option<usize>,
    #[command(subcommand)]
    pub command: Option<Command>,
}

/// The subcommands.
#[derive(Subcommand, Debug)]
pub enum Command {
    /// Open the studio window (the default when no subcommand is given).
    Gui(common::GuiArgs),
    /// Train a built-in architecture.
    Train(train::TrainArgs),
    /// Evaluate a model on a dataset.
    Eval(eval::EvalArgs),
    /// Print a model's layers and metadata.
    Info(info::InfoArgs),
    /// Benchmarks.
    Bench(bench::BenchArgs),
    /// Write a model as QDQ ONNX, integer bundle, float ONNX or native file; reads it back and measures it.
    Export(export::ExportArgs),
    /// Post-training quantization: calibrate, compare with float, write plan or model.
    Ptq(ptq::PtqArgs),
    /// Quantization-aware training: fine-tune with fake quantization, write the deployable model.
    Qat(qat::QatArgs),
    /// Per-layer quantization sensitivity (only this layer / all but this layer).
    Sensitivity(sensitivity::SensitivityArgs),
    /// Convert a quantized model to an integer-runtime bundle; --eval compares it with the simulation.
    Convert(convert::ConvertArgs),
    /// Automatic mixed precision: a Pareto front of accuracy, size and measured latency.
    Search(search::SearchArgs),
    /// Replay a project saved by the studio: calibrate, measure, convert, time, QAT, export.
    Run(run::RunArgs),
}

/// One message per failure: the error and its causes joined by ": ", leaving out a cause whose
/// text the message already holds (many errors display their source as well as chaining it).
pub fn error_message(e: &anyhow::Error) -> String {
    let mut msg = String::new();
    for cause in e.chain() {
        let text = cause.to_string();
        if msg.contains(&text) {
            continue;
        }
        if !msg.is_empty() {
            msg.push_str(": ");
        }
        msg.push_str(&text);
    }
    msg
}

/// Runs a headless subcommand.
pub fn run(cmd: Command) -> anyhow::Result<()> {
    match cmd {
        Command::Train(a) => train::run(a),
        Command::Eval(a) => eval::run(a),
        Command::Info(a) => info::run(a),
        Command::Bench(a) => bench::run(a),
        Command::Export(a) => export::run(a),
        Command::Ptq(a) => ptq::run(a),
        Command::Sensitivity(a) => sensitivity::run(a),
        Command::Convert(a) => convert::run(a),
        Command::Qat(a) => qat::run(a),
        Command::Run(a) => run::run(a),
        Command::Search(a) => search::run(a),
        Command::Gui(_) => {
            anyhow::bail!("this build has no studio window (built without the `gui` feature)")
        }
    }
}

/// Sizes the global rayon pool.
pub fn init_threads(threads: Option<usize>) -> anyhow::Result<()> {
    if let Some(t) = threads {
        anyhow::ensure!(t > 0, "--threads must be at least 1");
        rayon::ThreadPoolBuilder::new()
            .num_threads(t)
            .build_global()?;
    }
    Ok(())
}

#[cfg(test)]
mod error_tests {
    use super::error_message;

    #[test]
    fn a_missing_file_is_one_message_not_the_os_error_twice() {
        let e =
            crate::io::load_any(std::path::Path::new("/no/such/model.safetensors")).unwrap_err();
        let msg = error_message(&anyhow::Error::new(e));
        assert_eq!(msg.matches("No such file").count(), 1, "{msg}");
        assert!(msg.contains("/no/such/model.safetensors"), "{msg}");
        let chained = anyhow::anyhow!("inner").context("outer");
        assert_eq!(error_message(&chained), "outer: inner");
    }
}
