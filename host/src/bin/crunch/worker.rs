//! `crunch worker`: a long-lived pull worker that runs batches of the jobs in Redis. It waits
//! for Redis as long as it takes, and SIGTERM or Ctrl-C make it drain: finish the batches it
//! runs, hand back the ones it claimed but did not start, and exit 0 (a second signal exits at
//! once; the batches it held are taken over after their lease).

use std::process::ExitCode;
use std::sync::atomic::Ordering;

use anyhow::{Context, Result};
use clap::Args;
use crunch::Limits;
use crunch::queue::jobs;
use crunch::queue::store::{Redis, StoreError};
use crunch::queue::worker::Worker;
use signal_hook::consts::{SIGINT, SIGTERM};

use crate::redis_args::RedisArgs;

/// Arguments of `crunch worker`.
#[derive(Args, Debug)]
pub struct WorkerArgs {
    /// Claim loops, each running one batch at a time (while a helper thread claims and reads
    /// the next batch and another stores the last one's results). Default: the number of cores.
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..))]
    threads: Option<u32>,
    /// Work only on this job.
    #[arg(long)]
    job: Option<String>,
    /// Exit once no job is left to run (every job in Redis has finished, or the --job has),
    /// instead of waiting for new jobs. A worker on one --job also exits when that job is gone.
    #[arg(long)]
    exit_when_done: bool,
    /// Memory one batch's instance may use, in MiB.
    #[arg(long, default_value_t = 1024, value_name = "MIB")]
    memory_limit: usize,
    #[command(flatten)]
    redis: RedisArgs,
}

pub fn main(args: WorkerArgs) -> Result<ExitCode> {
    let threads = args
        .threads
        .map(|t| t as usize)
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
    let engine = crate::engine(Limits {
        memory_bytes: args.memory_limit.saturating_mul(1 << 20),
        max_concurrent_batches: u32::try_from(threads * 2).unwrap_or(u32::MAX),
        ..Limits::default()
    })?;
    let worker = Worker::new(engine).with_cache_dir(crate::settings().cache_dir.clone());
    let shutdown = worker.shutdown_flag();
    for signal in [SIGTERM, SIGINT] {
        // The first signal asks for a drain; a second one, with the flag already set, exits.
        signal_hook::flag::register_conditional_shutdown(signal, 1, shutdown.clone())
            .and_then(|_| signal_hook::flag::register(signal, shutdown.clone()))
            .context("installing the SIGTERM and Ctrl-C handlers")?;
    }
    // A bad URL or refused credentials fail at once; an unreachable server is waited for.
    let mut store = Redis::connect_until_stopped(&args.redis.redis, shutdown.clone())?;
    eprintln!(
        "worker {} on {} with {threads} threads",
        worker.consumer(0),
        store.url()
    );
    let exit_when_done = args.exit_when_done;
    let only = args.job.clone();
    // Asked when nothing is claimable. A worker on one job stops once that job is gone (it
    // cannot come back); with --exit-when-done, once no job is left to run.
    let keep_going = move |store: &mut Redis| match &only {
        Some(job) => match jobs::find_progress(store, job) {
            Ok(Some(p)) => !exit_when_done || !p.is_final(),
            Ok(None) => {
                tracing::warn!(job, "the job is gone (expired or deleted); stopping");
                false
            }
            Err(e) => {
                tracing::warn!(job, "reading the job's progress: {e:#}");
                !exit_when_done
            }
        },
        None if !exit_when_done => true,
        None => jobs::list(store)
            .map(|l| l.iter().any(|(_, p)| !p.is_final()))
            .unwrap_or(false),
    };
    if let Some(job) = &args.job {
        // Fail fast on an unknown job; an unreadable spec is for the worker to report.
        jobs::progress(&mut store, job)?;
    }
    let start = std::time::Instant::now();
    let summary = match worker.serve(&args.redis.redis, threads, args.job.as_deref(), keep_going) {
        Ok(summary) => summary,
        Err(e) if matches!(StoreError::fatal_in(&e), Some(StoreError::Stopped { .. })) => {
            // Shutting down while Redis is away: what this worker held lapses and is taken
            // over; nothing is lost.
            eprintln!("worker stopped while Redis was unavailable: {e:#}");
            return Ok(ExitCode::SUCCESS);
        }
        Err(e) => return Err(e),
    };
    if shutdown.load(Ordering::Relaxed) {
        eprintln!("worker drained on request (SIGTERM or Ctrl-C)");
    }
    let busy = start.elapsed().as_secs_f64() * threads as f64;
    eprintln!(
        "worker done: {} batches ({} items ok, {} failed), {} retried, {} dead-lettered, {} handed \
         back unrun; {:.1}% of {threads} thread(s)' time inside kernels",
        summary.batches,
        summary.items_ok,
        summary.items_failed,
        summary.retried,
        summary.dead,
        summary.released,
        100.0 * summary.kernel_time.as_secs_f64() / busy.max(f64::EPSILON)
    );
    Ok(ExitCode::SUCCESS)
}
