//! `crunch status`, `crunch results`, `crunch jobs` and `crunch cancel`: following jobs in Redis.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Result;
use clap::Args;
use crunch::ErrorKind;
use crunch::data::codec::{self, Format};
use crunch::data::text;
use crunch::data::wire;
use crunch::queue::jobs;
use crunch::queue::store::spec::Progress;
use indicatif::{ProgressBar, ProgressStyle};

use crate::redis_args::RedisArgs;

/// Failed items listed by `status`; all of them are in the results.
const LISTED_FAILURES: usize = 10;

/// Arguments of `crunch status`.
#[derive(Args, Debug)]
pub struct StatusArgs {
    /// The job id that `crunch submit` printed.
    job: String,
    /// Follow the job with a progress bar until it finishes.
    #[arg(long)]
    wait: bool,
    #[command(flatten)]
    redis: RedisArgs,
}

/// Shows a job's state, counters, failed items and dead letters. Exit status: 0 while the job
/// runs or when it is done; 2 when it ended with failures, failed or was cancelled.
pub fn status(args: StatusArgs) -> Result<ExitCode> {
    let mut store = args.redis.connect()?;
    let spec = jobs::spec(&mut store, &args.job)?;
    let mut progress = jobs::progress(&mut store, &args.job)?;
    if args.wait && !progress.is_final() {
        let bar = ProgressBar::new(progress.item_count);
        if let Ok(style) =
            ProgressStyle::with_template("{bar:40} {pos}/{len} items  {per_sec}  eta {eta}  {msg}")
        {
            bar.set_style(style);
        }
        while !progress.is_final() {
            bar.set_position(progress.items_ok + progress.items_failed);
            bar.set_message(format!("{} failed", progress.items_failed));
            std::thread::sleep(Duration::from_millis(200));
            progress = jobs::progress(&mut store, &args.job)?;
        }
        bar.finish_and_clear();
    }
    // Everything below comes from Redis, where any client (or a kernel's message) put it:
    // escaped and cut short before it reaches the terminal.
    let show = |s: &str| text::escaped(s, text::ECHO_CHARS);
    println!("job      {}", args.job);
    println!(
        "kernel   {} ({})",
        show(&spec.kernel),
        show(&spec.pack_digest)
    );
    println!("state    {}", progress.state);
    println!(
        "batches  {} of {} done, {} dead-lettered",
        progress.batches_done, progress.batch_count, progress.batches_dead
    );
    println!(
        "items    {} of {}: {} ok, {} failed",
        progress.items_ok + progress.items_failed,
        progress.item_count,
        progress.items_ok,
        progress.items_failed
    );
    if let Some(error) = &progress.error {
        println!("error    {}", show(error));
    }
    let failed = jobs::failed_items(&mut store, &args.job)?;
    for f in failed
        .iter()
        .filter(|f| f.kind != ErrorKind::BatchFailed.as_str())
        .take(LISTED_FAILURES)
    {
        println!(
            "failed   item {}: {}: {}",
            f.item,
            show(&f.kind),
            show(&f.message)
        );
    }
    for dead in jobs::dead_letters(&mut store, &args.job)? {
        let first_line = dead.error.lines().next().unwrap_or_default();
        println!(
            "dead     batch {} after {} deliveries: {}",
            dead.batch,
            dead.deliveries,
            show(first_line)
        );
    }
    Ok(exit_code(&progress))
}

fn exit_code(progress: &Progress) -> ExitCode {
    if progress.is_final() && !progress.is_success() {
        ExitCode::from(2)
    } else {
        ExitCode::SUCCESS
    }
}

/// Arguments of `crunch results`.
#[derive(Args, Debug)]
pub struct ResultsArgs {
    /// The job id.
    job: String,
    /// Where to write one result per item, in input order: .json, .npy (with the failed items'
    /// errors in OUTPUT.errors.json) or .crb. Replaced only once the whole file is written.
    #[arg(long, short)]
    output: PathBuf,
    /// Output format, when the extension does not tell.
    #[arg(long, value_name = "json|npy|crb")]
    output_format: Option<Format>,
    #[command(flatten)]
    redis: RedisArgs,
}

/// Gathers a finished job's results in input order (for NPY, failed items' errors beside
/// them). Exit status 2 when some items failed.
pub fn results(args: ResultsArgs) -> Result<ExitCode> {
    let format = Format::resolve(args.output_format, &args.output, "--output-format")?;
    let mut store = args.redis.connect()?;
    let results = jobs::results(&mut store, &args.job)?;
    let errors_file = codec::write_results(&args.output, format, &results)?;
    let failed: usize = results.iter().map(wire::Results::failed).sum();
    eprintln!(
        "{} results written to {} ({failed} failed)",
        wire::count(&results),
        args.output.display()
    );
    if let Some(path) = errors_file {
        eprintln!("item errors written to {}", path.display());
    }
    Ok(if failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(2)
    })
}

/// Arguments of `crunch jobs`.
#[derive(Args, Debug)]
pub struct JobsArgs {
    #[command(flatten)]
    redis: RedisArgs,
}

/// Lists the jobs in Redis, oldest first.
pub fn list(args: JobsArgs) -> Result<ExitCode> {
    let mut store = args.redis.connect()?;
    let jobs = jobs::list(&mut store)?;
    println!(
        "{:<20} {:<19} {:>15} {:>12} {:>8}",
        "JOB", "STATE", "BATCHES", "ITEMS OK", "FAILED"
    );
    for (id, p) in jobs {
        println!(
            "{id:<20} {:<19} {:>15} {:>12} {:>8}",
            p.state.as_str(),
            format!("{}/{}", p.batches_done, p.batch_count),
            p.items_ok,
            p.items_failed
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// Arguments of `crunch cancel`.
#[derive(Args, Debug)]
pub struct CancelArgs {
    /// The job id.
    job: String,
    #[command(flatten)]
    redis: RedisArgs,
}

/// Cancels a job: its queued batches are dropped; results already written stay.
pub fn cancel(args: CancelArgs) -> Result<ExitCode> {
    let mut store = args.redis.connect()?;
    let p = jobs::cancel(&mut store, &args.job)?;
    println!("job {} is {}", args.job, p.state);
    Ok(ExitCode::SUCCESS)
}
