//! qatlas entry point: parses arguments, then opens the studio (default) or runs a headless
//! subcommand. Everything else lives in the library.
#![forbid(unsafe_code)]

use clap::Parser;
use qatlas::cli::{Cli, Command, error_message, init_threads, run};

fn main() {
    qatlas::kernels::alloc::retain_freed_memory();
    let cli = Cli::parse();
    let result = init_threads(cli.threads).and_then(|_| match cli.command {
        None => open_studio(Default::default()),
        Some(Command::Gui(a)) => open_studio(a),
        Some(cmd) => run(cmd),
    });
    if let Err(e) = result {
        eprintln!("error: {}", error_message(&e));
        std::process::exit(1);
    }
}

#[cfg(feature = "gui")]
fn open_studio(a: qatlas::cli::common::GuiArgs) -> anyhow::Result<()> {
    qatlas::app::run(a)
}

#[cfg(not(feature = "gui"))]
fn open_studio(_: qatlas::cli::common::GuiArgs) -> anyhow::Result<()> {
    anyhow::bail!(
        "this build has no studio window (built without the `gui` feature); try `qatlas --help`"
    )
}

/// mimalloc keeps freed pages for reuse: the engine allocates large activation buffers every
/// training step, and glibc's allocator returned them to the kernel each time (half the run time
/// was page faults).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;
