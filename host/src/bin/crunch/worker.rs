//! `crunch worker`: a long-lived pull worker that runs batches of the jobs in Redis.

use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Result;
use clap::Args;
use crunch::jobs;
use crunch::worker::Worker;
use crunch::{Engine, Limits};

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
    /// Exit once no job is left to run (every job in Redis has finished), instead of waiting
    /// for new jobs.
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
    let engine = Engine::new(Limits {
        memory_bytes: args.memory_limit.saturating_mul(1 << 20),
        max_concurrent_batches: u32::try_from(threads * 2).unwrap_or(u32::MAX),
        ..Limits::default()
    })?;
    // Fail fast on a bad URL or an unreachable server.
    let mut store = args.redis.connect()?;
    let worker = Arc::new(Worker::new(engine));
    eprintln!(
        "worker {} on {} with {threads} threads",
        worker.consumer(0),
        store.url()
    );
    let exit_when_done = args.exit_when_done;
    let only = args.job.clone();
    let keep_going = move |store: &mut crunch::store::Store| {
        if !exit_when_done {
            return true;
        }
        match &only {
            Some(job) => jobs::progress(store, job)
                .map(|p| !p.is_final())
                .unwrap_or(false),
            None => jobs::list(store)
                .map(|l| l.iter().any(|(_, p)| !p.is_final()))
                .unwrap_or(false),
        }
    };
    if let Some(job) = &args.job {
        // Fail fast on an unknown job; an unreadable spec is for the worker to report.
        jobs::progress(&mut store, job)?;
    }
    let start = std::time::Instant::now();
    let summary = worker.serve(&args.redis.redis, threads, args.job.as_deref(), keep_going)?;
    let busy = start.elapsed().as_secs_f64() * threads as f64;
    eprintln!(
        "worker done: {} batches ({} items ok, {} failed), {} retried, {} dead-lettered; \
         {:.1}% of {threads} thread(s)' time inside kernels",
        summary.batches,
        summary.items_ok,
        summary.items_failed,
        summary.retried,
        summary.dead,
        100.0 * summary.kernel_time.as_secs_f64() / busy.max(f64::EPSILON)
    );
    Ok(ExitCode::SUCCESS)
}
