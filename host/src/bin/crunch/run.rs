//! `crunch run`: a file of items through one kernel, batches in parallel, results in order.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Instant;

use anyhow::{Result, bail};
use clap::Args;
use crunch::data::codec::{self, Format};
use crunch::data::text;
use crunch::data::wire;
use crunch::{ErrorKind, Limits};
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
    /// Where to write one result per item, in input order: .json, .npy or .crb. Replaced only
    /// once the whole file is written; never the input file.
    #[arg(long, short)]
    output: PathBuf,
    /// Output format, when the extension does not tell.
    #[arg(long, value_name = "json|npy|crb")]
    output_format: Option<Format>,
    /// Items per batch (one wasm instance each). Default: enough batches to keep every
    /// thread busy, at most 4096 items, 512 KiB of input (so the copies stay in cache) and a
    /// quarter of --memory-limit each.
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..))]
    batch_size: Option<u32>,
    /// Threads running batches. Default: the number of cores.
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..))]
    threads: Option<u32>,
    /// Memory one batch's instance may use, in MiB (also the most data one batch may hand back).
    #[arg(long, default_value_t = 1024, value_name = "MIB", value_parser = clap::value_parser!(u64).range(1..))]
    memory_limit: u64,
    /// No progress bar and no summary; failures are still reported.
    #[arg(long, short)]
    quiet: bool,
    #[command(flatten)]
    pack: PackArgs,
}

pub fn main(args: RunArgs) -> Result<ExitCode> {
    let output_format = Format::resolve(args.output_format, &args.output, "--output-format")?;
    refuse_same_file(&args.work.input, &args.output)?;
    let batch_time = args.work.time_limit()?;
    let threads = args
        .threads
        .map(|t| t as usize)
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
    let limits = Limits {
        batch_time,
        memory_bytes: usize::try_from(args.memory_limit.saturating_mul(1 << 20))
            .unwrap_or(usize::MAX),
        max_concurrent_batches: u32::try_from(threads * 2).unwrap_or(u32::MAX),
        ..Limits::default()
    };

    let pack_path = args.pack.resolve()?;
    let engine = crate::engine(limits)?;
    let pack = crate::load_pack(&engine, &pack_path)?;
    args.work
        .check_against(&pack, &pack_path.display().to_string())?;

    let read_start = Instant::now();
    let input = args.work.read_input()?;
    let read_time = read_start.elapsed();
    let items = input.len();
    let batch_size = args.batch_size.map(|b| b as usize).unwrap_or_else(|| {
        crunch::sandbox::batch::local_batch_size(
            items,
            input.values(),
            threads,
            limits.memory_bytes,
        )
    });

    let progress = progress_bar(items as u64, args.quiet);
    let call = args.work.call(limits.batch_time);
    let compute_start = Instant::now();
    // The input is not needed once its batch has run: results that fit take its place.
    let (results, batch_errors) =
        crunch::run_batches_in_place(&pack, &call, input, batch_size, threads, |outcome| {
            progress.inc(outcome.results.len() as u64);
        })?;
    let compute_time = compute_start.elapsed();
    progress.finish_and_clear();

    let write_start = Instant::now();
    let errors_file = codec::write_results(&args.output, output_format, &results)?;
    let failures: Vec<(usize, &crunch::ItemError)> = wire::each(&results)
        .enumerate()
        .filter_map(|(i, r)| r.err().map(|e| (i, e)))
        .collect();
    let write_time = write_start.elapsed();

    if !args.quiet {
        let ok = items - failures.len();
        eprintln!(
            "{}: {items} items, {ok} ok, {} failed, in {} batches of up to {batch_size} on {threads} threads",
            args.work.kernel,
            failures.len(),
            items.div_ceil(batch_size),
        );
        eprintln!(
            "compute {:.3} s ({:.0} items/s); read {:.3} s, write {:.3} s",
            compute_time.as_secs_f64(),
            items as f64 / compute_time.as_secs_f64().max(1e-9),
            read_time.as_secs_f64(),
            write_time.as_secs_f64()
        );
    }
    // Failures are reported even with --quiet: nothing fails silently. What the kernel wrote
    // is escaped and cut short; the whole of it is in the output.
    for error in &batch_errors {
        eprintln!(
            "batch failed: {}",
            text::escaped_lines(&error.to_string(), text::ECHO_CHARS * 4)
        );
    }
    let item_errors = failures
        .iter()
        .filter(|(_, e)| e.kind() != ErrorKind::BatchFailed);
    for (i, error) in item_errors.take(LISTED_ERRORS) {
        eprintln!(
            "item {i} (batch {}): {}",
            i / batch_size,
            text::escaped(&error.to_string(), text::ECHO_CHARS)
        );
    }
    if failures.len() > LISTED_ERRORS {
        eprintln!(
            "{} items failed; every item's error is in {}",
            failures.len(),
            args.output.display()
        );
    }
    if let Some(path) = errors_file {
        eprintln!("item errors written to {}", path.display());
    }
    Ok(if failures.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(2)
    })
}

/// Refuses an output that is the input file itself (by another name too), which writing the
/// results would replace.
fn refuse_same_file(input: &Path, output: &Path) -> Result<()> {
    let (Ok(a), Ok(b)) = (std::fs::metadata(input), std::fs::metadata(output)) else {
        return Ok(());
    };
    #[cfg(unix)]
    let same = {
        use std::os::unix::fs::MetadataExt;
        (a.dev(), a.ino()) == (b.dev(), b.ino())
    };
    #[cfg(not(unix))]
    let same = std::fs::canonicalize(input).ok() == std::fs::canonicalize(output).ok();
    if same {
        bail!(
            "the output {} is the input file: writing the results would replace the input; choose another --output",
            output.display()
        );
    }
    Ok(())
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
