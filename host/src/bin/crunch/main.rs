//! `crunch`: run numeric kernels from a wasm kernel pack over files of items, on all cores.

mod job_cmds;
mod kernel_cmds;
mod kernels;
mod pack_path;
mod params;
mod plan;
mod redis_args;
mod report;
mod run;
mod submit;
mod work_args;
mod worker;

use std::process::ExitCode;
use std::sync::OnceLock;

use clap::{Parser, Subcommand};
use crunch::process::settings::Settings;
use crunch::{Engine, Limits};
use tracing_subscriber::filter::LevelFilter;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

/// Crunch: large sets of numeric calculations through one portable wasm kernel pack.
///
/// Exit status: 0 on success; 1 when a command could not be done at all (bad arguments, an
/// unreadable input, an unknown kernel or parameter, Redis unreachable); 2 when items failed
/// (`run`, `results`) or a job ended badly (`status`); 3 when `submit --lambda` could not start
/// every invocation (the job stays queued).
#[derive(Parser)]
#[command(name = "crunch", version)]
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
    /// Size and price a job before it runs: a sample of its items through the pack, then the
    /// whole job modelled on this machine and on Lambda (batch size, batches, invocations, wall
    /// time, GB-seconds, cost, time in kernels, warnings).
    Plan(plan::PlanArgs),
    /// Submit a job to Redis: the spec, the input batches and the queue; prints the job id.
    Submit(submit::SubmitArgs),
    /// Run as a long-lived pull worker: claim batches of the jobs in Redis and run them.
    Worker(worker::WorkerArgs),
    /// Show a job's progress, failed items and dead-lettered batches.
    ///
    /// Exit status: 0 while the job runs or when it is done; 2 when it ended with failures,
    /// failed or was cancelled.
    Status(job_cmds::StatusArgs),
    /// Write a job's report: a self-contained HTML page (timeline of batches per worker,
    /// throughput over time, where the time went, failures, the plan beside what happened),
    /// or the same figures as JSON.
    Report(report::ReportArgs),
    /// Write a finished job's results, in input order, to a file.
    ///
    /// Exit status: 0 when every item succeeded, 2 when some failed (their errors are in the
    /// output; for NPY in OUTPUT.errors.json), 1 when the results could not be written.
    Results(job_cmds::ResultsArgs),
    /// List the jobs in Redis.
    Jobs(job_cmds::JobsArgs),
    /// Cancel a job: its queued batches are dropped.
    Cancel(job_cmds::CancelArgs),
    /// The kernel registry in Redis: push, list, tag and remove kernel packs.
    Kernel(kernel_cmds::KernelArgs),
}

/// What this process takes from the environment, read once.
fn settings() -> &'static Settings {
    static SETTINGS: OnceLock<Settings> = OnceLock::new();
    SETTINGS.get_or_init(Settings::from_env)
}

/// The engine for `limits`, profiled with `perf` if the environment asks
/// (`CRUNCH_PERF_MAP=1`).
fn engine(limits: Limits) -> anyhow::Result<Engine> {
    Engine::with_perf_map(limits, settings().perf_map)
}

/// The kernel pack in the component file at `path`, compiled for `engine` once per machine: kept
/// in the disk cache of compiled packs (`CRUNCH_CACHE_DIR`, see [`Settings::cache_dir`]) by its
/// digest, so a command run again loads it without compiling.
fn load_pack(engine: &Engine, path: &std::path::Path) -> anyhow::Result<crunch::KernelPack> {
    let cache =
        crunch::sandbox::cache::PackCache::new(engine.clone(), settings().cache_dir.clone(), 1);
    let (pack, hit) = cache.load_file(path)?;
    tracing::debug!(pack = %path.display(), ?hit, "kernel pack loaded");
    Ok(pack)
}

fn main() -> ExitCode {
    crunch::process::memory::keep_freed_memory();
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .finish()
        // The AWS SDK warns about every credentials provider it tried; `submit --lambda` says
        // in one line what is missing instead.
        .with(
            crunch::process::logging::filter_from_env(LevelFilter::WARN)
                .with_target("aws_config", LevelFilter::ERROR),
        )
        .init();
    crunch::queue::store::install_tls_provider();
    crunch::queue::store::trust_redis_ca(settings().redis_ca.clone());
    // Bad arguments exit 1 like every other error that stops a command before it works; 2 is
    // for failed items (clap would use 2 for both).
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            return if e.use_stderr() {
                ExitCode::FAILURE
            } else {
                ExitCode::SUCCESS
            };
        }
    };
    let result = match cli.command {
        Command::Kernels(args) => kernels::main(args),
        Command::Run(args) => run::main(args),
        Command::Plan(args) => plan::main(args),
        Command::Submit(args) => submit::main(args),
        Command::Worker(args) => worker::main(args),
        Command::Status(args) => job_cmds::status(args),
        Command::Results(args) => job_cmds::results(args),
        Command::Report(args) => report::main(args),
        Command::Jobs(args) => job_cmds::list(args),
        Command::Cancel(args) => job_cmds::cancel(args),
        Command::Kernel(args) => kernel_cmds::main(args),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
