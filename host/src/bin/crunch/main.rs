//! `crunch`: run numeric kernels from a wasm kernel pack over files of items, on all cores.

mod kernels;
mod pack_path;
mod params;
mod run;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// Crunch: large sets of numeric calculations through one portable wasm kernel pack.
#[derive(Parser)]
#[command(name = "crunch", version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// List the kernels of a pack with their summaries.
    Kernels(kernels::KernelsArgs),
    /// Run a kernel over every item of an input file, writing one result per item.
    ///
    /// Items are split into batches; each batch runs in a fresh sandboxed wasm instance with
    /// its own time and memory limits, batches in parallel on all cores. A bad item gets its
    /// own error; a batch that traps or times out fails alone. Exit status: 0 when every item
    /// succeeded, 2 when some failed (their errors are in the output and summarised on
    /// stderr), 1 when the run could not be done at all.
    Run(run::RunArgs),
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("CRUNCH_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Kernels(args) => kernels::main(args),
        Command::Run(args) => run::main(args),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
