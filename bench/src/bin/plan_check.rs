//! `plan-check`: `crunch plan`'s model against what happens. For three kernels of different
//! weight (norm_cdf, black_scholes, implied_vol), a job of about `--seconds` of one core's work
//! is sampled and modelled for 1 and 2 local workers, submitted in the batches the model
//! chose, and drained by that many `crunch worker --threads 1` processes against a private
//! redis-server; the table sets predicted beside measured wall time (measured / predicted).
//! A benchmark, never a test: it prints figures and fails on none.

use std::fmt::Write as _;
use std::time::Duration;

use anyhow::{Context, Result};
use clap::Parser;
use crunch::plan::SpecPlan;
use crunch::plan::model::{self, Assumptions, JobLimits};
use crunch::plan::{probe, sample};
use crunch::queue::jobs::{self, SubmitOptions};
use crunch::queue::store::Redis;
use crunch::{Engine, Item, KernelCall, KernelPack, Limits};
use crunch_bench::{workers, workloads};
use crunch_tests::paths;
use crunch_tests::redis_server::RedisServer;

/// Predicted against measured wall time of local jobs.
#[derive(Parser, Debug)]
struct Args {
    /// Seconds the model expects one worker to take per job (fewer when the items would not
    /// fit in --max-items).
    #[arg(long, default_value_t = 3.0)]
    seconds: f64,
    /// The most items of one job.
    #[arg(long, default_value_t = 2_000_000)]
    max_items: usize,
    /// Runs per case (the median counts).
    #[arg(long, default_value_t = 3)]
    runs: usize,
    /// Only these kernels (of norm_cdf, black_scholes, implied_vol).
    #[arg(long = "kernel", value_name = "KERNEL")]
    kernels: Vec<String>,
}

fn main() -> Result<()> {
    crunch::process::memory::keep_freed_memory();
    crunch::queue::store::install_tls_provider();
    let args = Args::parse();
    let component = paths::component("crunch_kernels");
    let engine = Engine::new(Limits::default())?;
    let pack = KernelPack::load(&engine, &component)?;
    let redis = RedisServer::start()?;
    let cache = tempfile::tempdir()?;
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    // One small job fills the workers' disk cache with the compiled pack.
    let warm: Vec<Item> = workloads()[0].items.iter().take(10).cloned().collect();
    let warm_plan = SpecPlan {
        sample: sample::Sample::default(),
        estimate: model::Estimate {
            batch_size: 10,
            ..model::local(
                &sample::Sample {
                    items: 10,
                    ..Default::default()
                },
                1,
                1,
                &JobLimits {
                    batch_time_s: 60.0,
                    memory_cap: 10,
                    result_bytes: 1 << 30,
                    batch_size: Some(10),
                },
                &Assumptions::default(),
            )
        },
    };
    let id = submit(
        &redis,
        &pack,
        &component,
        workloads()[0].kernel,
        &workloads()[0].params,
        &warm,
        &warm_plan,
    )?;
    workers::drain(&redis.url(), &id, 1, cache.path(), None)?;
    let mut table = String::from(
        "| kernel | workers | items | batch size | batches | predicted s | measured s | measured / predicted | fetch / kernel / store ms per batch, predicted | the same, measured (last run) |\n|---|---|---|---|---|---|---|---|---|---|\n",
    );
    for kernel in ["norm_cdf", "black_scholes", "implied_vol"] {
        if !args.kernels.is_empty() && !args.kernels.iter().any(|k| k == kernel) {
            continue;
        }
        let workload = workloads()
            .into_iter()
            .find(|w| w.kernel == kernel)
            .context("no workload")?;
        let call = KernelCall {
            kernel,
            params: &workload.params,
            batch_time: Duration::from_secs(60),
        };
        // A job the model expects to take about --seconds with one worker.
        let mut probe = sample::measure(&pack, &call, &workload.items, Duration::from_millis(300))?;
        probe.items = 1_000_000;
        let limits = JobLimits {
            batch_time_s: 60.0,
            memory_cap: usize::MAX,
            result_bytes: Limits::default().result_bytes(),
            batch_size: None,
        };
        let per_item =
            model::local(&probe, 1, cores, &limits, &Assumptions::default()).wall_s / 1e6;
        let count = ((args.seconds / per_item.max(1e-12)) as usize).clamp(1000, args.max_items);
        let items: Vec<Item> = workload.items.iter().cycle().take(count).cloned().collect();
        let sample = sample::measure(&pack, &call, &items, Duration::from_secs(1))?;
        let limits = JobLimits::of(&items, call.batch_time, &Limits::default());
        let redis_cost = probe::measure_for(&mut Redis::connect(&redis.url())?, &sample)?;
        let assumptions = Assumptions::with_local_redis(Some(redis_cost));
        for workers in [1, 2] {
            let estimate = model::local(&sample, workers, cores, &limits, &assumptions);
            let plan = SpecPlan {
                sample: sample.clone(),
                estimate: estimate.clone(),
            };
            let mut walls = Vec::new();
            let mut per_batch = (0.0, 0.0, 0.0);
            for _ in 0..args.runs.max(1) {
                let id = submit(
                    &redis,
                    &pack,
                    &component,
                    kernel,
                    &workload.params,
                    &items,
                    &plan,
                )?;
                walls.push(
                    workers::drain(&redis.url(), &id, workers, cache.path(), None)?.as_secs_f64(),
                );
                per_batch = batch_means(&redis, &id)?;
                forget(&redis, &id)?;
            }
            walls.sort_by(f64::total_cmp);
            eprintln!("{kernel}, {workers} worker(s): wall times {walls:.2?} s");
            let measured = walls[walls.len() / 2];
            let _ = writeln!(
                table,
                "| {kernel} | {workers} | {count} | {} | {} | {:.2} | {:.2} | {:.2} | {:.0} / {:.0} / {:.0} | {:.0} / {:.0} / {:.0} |",
                estimate.batch_size,
                estimate.batches,
                estimate.wall_s,
                measured,
                measured / estimate.wall_s,
                estimate.fetch_s * 1e3,
                estimate.batch_s * 1e3,
                estimate.store_s * 1e3,
                per_batch.0,
                per_batch.1,
                per_batch.2,
            );
        }
    }
    println!("{table}");
    let out = paths::target_dir().join("bench");
    std::fs::create_dir_all(&out)?;
    std::fs::write(out.join("plan-check.md"), &table)?;
    eprintln!("wrote {}", out.join("plan-check.md").display());
    Ok(())
}

fn submit(
    redis: &RedisServer,
    pack: &KernelPack,
    component: &std::path::Path,
    kernel: &str,
    params: &[(String, crunch::Tensor)],
    items: &[Item],
    plan: &SpecPlan,
) -> Result<String> {
    let opts = SubmitOptions {
        kernel: kernel.into(),
        params: params.to_vec(),
        pack_path: component.display().to_string(),
        batch_size: None,
        ttl: Duration::from_secs(3600),
        max_deliveries: 3,
        batch_time: Duration::from_secs(60),
        lease: None,
    };
    let mut store = Redis::connect(&redis.url())?;
    Ok(jobs::submit_planned(&mut store, pack, items, &opts, Some(plan))?.job)
}

/// Deletes every key of `job`, as its TTL would: ten jobs of a gigabyte each would otherwise
/// fill this machine's memory and slow the jobs after them.
fn forget(redis: &RedisServer, job: &str) -> Result<()> {
    let mut store = Redis::connect(&redis.url())?;
    let pattern = crunch::queue::store::keys::JobKeys::new(job).pattern();
    let keys: Vec<String> = store.run(|c| redis::cmd("KEYS").arg(&pattern).query(c))?;
    if !keys.is_empty() {
        store.run(|c| redis::cmd("DEL").arg(&keys).query::<()>(c))?;
    }
    Ok(())
}

/// The mean fetch, kernel and store milliseconds of `job`'s batches, from their records.
fn batch_means(redis: &RedisServer, job: &str) -> Result<(f64, f64, f64)> {
    let report = crunch::report::gather(&mut Redis::connect(&redis.url())?, job)?;
    let n = report.records.len().max(1) as f64;
    let sum = |f: fn(&crunch::queue::store::records::BatchRecord) -> f64| {
        report.records.iter().map(f).sum::<f64>() / n
    };
    Ok((
        sum(|r| r.fetch_ms),
        sum(|r| r.kernel_ms),
        sum(|r| r.store_ms),
    ))
}
