//! Draining a job with `crunch worker` processes, as the Redis benchmarks do.

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, ensure};
use crunch::queue::jobs;
use crunch::queue::store::Redis;
use crunch_tests::cli::Crunch;

/// Runs `count` single-threaded `crunch worker` processes on `job` in Redis at `redis_url`
/// until it is done, each on CPU `i` of `cpus` when given, with its compiled-pack cache in
/// `cache`; returns the wall time from spawning them to the last exit, once the job is seen
/// done without failures.
pub fn drain(
    redis_url: &str,
    job: &str,
    count: usize,
    cache: &Path,
    cpus: Option<&[usize]>,
) -> Result<Duration> {
    let start = Instant::now();
    let workers: Vec<_> = (0..count)
        .map(|i| {
            let crunch = match cpus {
                Some(cpus) => Crunch::on_cpu(cpus[i % cpus.len()]),
                None => Crunch::new(),
            };
            crunch
                .redis(redis_url)
                .env("CRUNCH_CACHE_DIR", cache)
                .spawn_worker(&["--job", job, "--exit-when-done", "--threads", "1"])
        })
        .collect();
    for mut worker in workers {
        let status = worker.wait().context("waiting for a worker")?;
        ensure!(status.success(), "a worker failed on job {job}: {status}");
    }
    let elapsed = start.elapsed();
    ensure_done(redis_url, job)?;
    Ok(elapsed)
}

/// Fails unless `job` finished with every item computed.
pub fn ensure_done(redis_url: &str, job: &str) -> Result<()> {
    let mut store = Redis::connect(redis_url)?;
    let progress = jobs::progress(&mut store, job)?;
    ensure!(
        progress.is_success(),
        "job {job} did not finish cleanly: {progress:?}"
    );
    Ok(())
}
