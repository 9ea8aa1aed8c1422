//! `crunch run`: a file of items through one kernel, batches in parallel, results in order.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use clap::Args;
use crunch::codec::{self, Format};
use crunch::{Engine, ItemResult, Job, KernelPack, Limits};
use indicatif::{ProgressBar, ProgressStyle};

use crate::pack_path::PackArgs;
use crate::work_args::WorkArgs;

/// At most this many item errors are listed on stderr; all are in the output.
const LISTED_ERRORS: usize = 10;

/// Arguments of `crunch run`.
#[derive(Args, Debug)]
pub struct RunArgs {
    #[command(flatten)]
    work: WorkArgs,
    /// Where to write one result per item, in input order: .json, .npy or .crb.
    #[arg(long, short)]
    output: PathBuf,
    /// Output format, when the extension does not tell.
    #[arg(long, value_name = "json|npy|crb")]
    output_format: Option<Format>,
    /// Items per batch (one wasm instance each). Default: enough batches to keep every
    /// thread busy, at most 4096 items each.
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..))]
    batch_size: Option<u32>,
    /// Threads running batches. Default: the number of cores.
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..))]
    threads: Option<u32>,
    /// Seconds one batch may run before it is interrupted and fails.
    #[arg(long, default_value_t = 60.0, value_name = "SECONDS")]
    time_limit: f64,
    /// Memory one batch's instance may use, in MiB.
    #[arg(long, default_value_t = 1024, value_name = "MIB")]
    memory_limit: usize,
    /// No progress bar and no summary; failures are still reported.
    #[arg(long, short)]
    quiet: bool,
    #[command(flatten)]
    pack: PackArgs,
}

pub fn main(args: RunArgs) -> Result<ExitCode> {
    let output_format = resolve_format(args.output_format, &args.output)?;
    let batch_time = seconds("--time-limit", args.time_limit)?;
    let threads = args
        .threads
        .map(|t| t as usize)
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
    let limits = Limits {
        batch_time,
        memory_bytes: args.memory_limit.saturating_mul(1 << 20),
        max_concurrent_batches: u32::try_from(threads * 2).unwrap_or(u32::MAX),
        ..Limits::default()
    };

    let pack_path = args.pack.resolve()?;
    let engine = Engine::new(limits)?;
    let pack = KernelPack::load(&engine, &pack_path)?;
    if !pack.has_kernel(&args.work.kernel) {
        let names: Vec<_> = pack.kernels().iter().map(|k| k.name.as_str()).collect();
        bail!(
            "pack {} has no kernel `{}` (it has: {})",
            pack_path.display(),
            args.work.kernel,
            names.join(", ")
        );
    }

    let read_start = Instant::now();
    let items = args.work.read_items()?;
    let read_time = read_start.elapsed();
    let batch_size = args
        .batch_size
        .map(|b| b as usize)
        .unwrap_or_else(|| crunch::batch::local_batch_size(items.len(), threads));

    let progress = progress_bar(items.len() as u64, args.quiet);
    let job = Job {
        kernel: &args.work.kernel,
        params: &args.work.params,
        batch_time: limits.batch_time,
    };
    let compute_start = Instant::now();
    let outcomes = crunch::run_batches(&pack, &job, &items, batch_size, threads, |outcome| {
        progress.inc(outcome.results.len() as u64);
    })?;
    let compute_time = compute_start.elapsed();
    progress.finish_and_clear();

    let mut batch_errors = Vec::new();
    let mut results: Vec<ItemResult> = Vec::with_capacity(items.len());
    for outcome in outcomes {
        batch_errors.extend(outcome.error);
        results.extend(outcome.results.to_vec());
    }
    let write_start = Instant::now();
    codec::write_results(&args.output, output_format, &results)?;
    let failures: Vec<(usize, &crunch::ItemError)> = results
        .iter()
        .enumerate()
        .filter_map(|(i, r)| r.as_ref().err().map(|e| (i, e)))
        .collect();
    let sidecar = if !failures.is_empty() && output_format == Format::Npy {
        Some(write_error_sidecar(&args.output, &failures)?)
    } else {
        None
    };
    let write_time = write_start.elapsed();

    if !args.quiet {
        let ok = results.len() - failures.len();
        eprintln!(
            "{}: {} items, {ok} ok, {} failed, in {} batches of up to {batch_size} on {threads} threads",
            args.work.kernel,
            results.len(),
            failures.len(),
            results.len().div_ceil(batch_size),
        );
        eprintln!(
            "compute {:.3} s ({:.0} items/s); read {:.3} s, write {:.3} s",
            compute_time.as_secs_f64(),
            results.len() as f64 / compute_time.as_secs_f64().max(1e-9),
            read_time.as_secs_f64(),
            write_time.as_secs_f64()
        );
    }
    // Failures are reported even with --quiet: nothing fails silently.
    for error in &batch_errors {
        eprintln!("batch failed: {error}");
    }
    let item_errors = failures.iter().filter(|(_, e)| e.kind() != "batch-failed");
    for (i, error) in item_errors.take(LISTED_ERRORS) {
        eprintln!("item {i} (batch {}): {error}", i / batch_size);
    }
    if failures.len() > LISTED_ERRORS {
        eprintln!(
            "{} items failed; every item's error is in {}",
            failures.len(),
            args.output.display()
        );
    }
    if let Some(path) = sidecar {
        eprintln!("item errors written to {}", path.display());
    }
    Ok(if failures.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(2)
    })
}

/// A positive, finite number of seconds given as option `name`.
pub fn seconds(name: &str, value: f64) -> Result<Duration> {
    if value <= 0.0 || !value.is_finite() {
        bail!("{name} must be a positive number of seconds, got {value}");
    }
    Ok(Duration::from_secs_f64(value))
}

fn resolve_format(given: Option<Format>, path: &Path) -> Result<Format> {
    match given {
        Some(format) => Ok(format),
        None => Format::from_path(path),
    }
}

fn progress_bar(items: u64, quiet: bool) -> ProgressBar {
    if quiet {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::new(items);
    if let Ok(style) =
        ProgressStyle::with_template("{bar:40} {pos}/{len} items  {per_sec}  eta {eta}")
    {
        bar.set_style(style);
    }
    bar
}

/// NPY output has no room for errors: they go to `OUTPUT.errors.json`, one per failed item.
fn write_error_sidecar(output: &Path, failures: &[(usize, &crunch::ItemError)]) -> Result<PathBuf> {
    let mut path = output.as_os_str().to_owned();
    path.push(".errors.json");
    let path = PathBuf::from(path);
    let errors: Vec<_> = failures
        .iter()
        .map(|(i, e)| serde_json::json!({ "item": i, "kind": e.kind(), "message": e.message() }))
        .collect();
    let text = serde_json::to_string_pretty(&serde_json::json!({ "errors": errors }))?;
    std::fs::write(&path, text).with_context(|| format!("writing {}", path.display()))?;
    Ok(path)
}
