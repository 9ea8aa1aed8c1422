//! The measurements that go through Redis and worker processes: items/s with one and two
//! `crunch worker` processes and with the Python worker, cold start, and the share of a
//! worker's time spent inside kernels.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, ensure};
use crunch::queue::jobs::{self, SubmitOptions};
use crunch::queue::store::Redis;
use crunch::queue::worker::Worker;
use crunch::{Engine, Item, KernelPack, Limits, Tensor};
use crunch_bench::workers;
use crunch_tests::cli::contracts;
use crunch_tests::redis_server::RedisServer;

use crate::report::{ColdStart, EndToEnd, KernelShare, Scaling, median_of};

/// A private Redis and the pack the jobs use.
pub struct Bench {
    redis: RedisServer,
    store: Redis,
    pack: KernelPack,
    pack_path: PathBuf,
    /// A disk cache that already holds the compiled pack.
    warm_cache: tempfile::TempDir,
}

impl Bench {
    /// Starts redis-server and warms a disk cache with the pack.
    pub fn start(pack: KernelPack, pack_path: &Path) -> Result<Self> {
        let redis = RedisServer::start()?;
        let store = Redis::connect(&redis.url())?;
        let warm_cache = tempfile::tempdir()?;
        let bench = Self {
            redis,
            store,
            pack,
            pack_path: pack_path.to_path_buf(),
            warm_cache,
        };
        // One run fills the warm cache.
        let job = bench.submit("black_scholes", &[], &contracts(10), 10)?;
        bench.run_workers(&job, 1, bench.warm_cache.path(), None)?;
        Ok(bench)
    }

    /// The URL of the benchmark's Redis.
    pub fn redis_url(&self) -> String {
        self.redis.url()
    }

    /// The pack the jobs use.
    pub fn pack(&self) -> &KernelPack {
        &self.pack
    }

    /// A disk cache that already holds the compiled pack.
    pub fn warm_cache(&self) -> &Path {
        self.warm_cache.path()
    }

    /// Submits `items` of `kernel` in batches of `batch_size`; returns the job id.
    pub fn submit(
        &self,
        kernel: &str,
        params: &[(String, Tensor)],
        items: &[Item],
        batch_size: usize,
    ) -> Result<String> {
        let opts = SubmitOptions {
            kernel: kernel.into(),
            params: params.to_vec(),
            pack_path: self.pack_path.display().to_string(),
            batch_size: Some(batch_size),
            ttl: Duration::from_secs(3600),
            max_deliveries: 3,
            batch_time: Duration::from_secs(60),
            lease: None,
        };
        let mut store = Redis::connect(self.store.url())?;
        Ok(jobs::submit(&mut store, &self.pack, items, &opts)?.job)
    }

    /// Runs `count` single-threaded `crunch worker` processes on `job` until it is done (see
    /// [`workers::drain`]).
    fn run_workers(
        &self,
        job: &str,
        count: usize,
        cache: &Path,
        cpus: Option<&[usize]>,
    ) -> Result<Duration> {
        workers::drain(&self.redis.url(), job, count, cache, cpus)
    }

    fn ensure_done(&self, job: &str) -> Result<()> {
        workers::ensure_done(&self.redis.url(), job)
    }

    /// Items/s of one black_scholes job through one and two workers, and the Python worker.
    pub fn end_to_end(&self, python: Option<&Path>, items: usize) -> Result<EndToEnd> {
        let batch_size = 10_000;
        let contracts = contracts(items);
        let rate = |elapsed: Duration| items as f64 / elapsed.as_secs_f64();
        let scaling = |cpus: Option<&[usize]>| -> Result<Scaling> {
            let (mut one, mut two) = (Vec::new(), Vec::new());
            for _ in 0..3 {
                for (workers, rates) in [(1, &mut one), (2, &mut two)] {
                    let job = self.submit("black_scholes", &[], &contracts, batch_size)?;
                    let elapsed = self.run_workers(&job, workers, self.warm_cache.path(), cpus)?;
                    rates.push(rate(elapsed));
                }
            }
            let one = median_of(one).unwrap_or_default();
            let two = median_of(two).unwrap_or_default();
            Ok(Scaling {
                one_worker_items_per_s: one,
                two_workers_items_per_s: two,
                ratio: two / one,
            })
        };
        let unpinned = scaling(None)?;
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        let pinned = match cores {
            1 => None,
            _ => Some(scaling(Some(&[0, 1]))?),
        };
        let python_worker_items_per_s = match python {
            Some(python) => {
                let job = self.submit("black_scholes", &[], &contracts, batch_size)?;
                Some(rate(self.run_python_worker(python, &job)?))
            }
            None => None,
        };
        Ok(EndToEnd {
            kernel: "black_scholes".into(),
            items,
            batch_size,
            unpinned,
            pinned,
            python_worker_items_per_s,
        })
    }

    fn run_python_worker(&self, python: &Path, job: &str) -> Result<Duration> {
        let script = crunch_tests::paths::repo_root().join("bench/python/worker.py");
        let start = Instant::now();
        let status = Command::new(python)
            .arg(&script)
            .args([
                "--redis",
                &self.redis.url(),
                "--job",
                job,
                "--exit-when-done",
            ])
            .stdout(Stdio::null())
            .status()
            .with_context(|| format!("running {}", script.display()))?;
        let elapsed = start.elapsed();
        ensure!(status.success(), "the Python worker failed: {status}");
        self.ensure_done(job)?;
        Ok(elapsed)
    }

    /// Process start to the first batch's result, with the compiled pack cached on disk and
    /// with an empty cache.
    pub fn cold_start(&self, runs: usize) -> Result<ColdStart> {
        let items = contracts(100);
        let mut cached = Vec::new();
        let mut compile = Vec::new();
        for _ in 0..runs {
            let job = self.submit("black_scholes", &[], &items, 100)?;
            cached.push(self.run_workers(&job, 1, self.warm_cache.path(), None)?);
            let empty = tempfile::tempdir()?;
            let job = self.submit("black_scholes", &[], &items, 100)?;
            compile.push(self.run_workers(&job, 1, empty.path(), None)?);
        }
        let ms = |d: Vec<Duration>| median_of(d.iter().map(|d| d.as_secs_f64() * 1e3));
        Ok(ColdStart {
            cached_ms: ms(cached).unwrap_or_default(),
            compile_ms: ms(compile).unwrap_or_default(),
            runs,
        })
    }

    /// One worker thread in this process drains a job of `batches` batches of `items`; the
    /// share of its wall time spent instantiating and running kernels.
    pub fn kernel_share(
        &self,
        kernel: &str,
        params: &[(String, Tensor)],
        batch: &[Item],
        batches: usize,
    ) -> Result<KernelShare> {
        let items: Vec<Item> = batch
            .iter()
            .cycle()
            .take(batch.len() * batches)
            .cloned()
            .collect();
        let job = self.submit(kernel, params, &items, batch.len())?;
        let engine = Engine::new(Limits::default())?;
        let worker = Worker::new(engine).with_cache_dir(Some(self.warm_cache.path().into()));
        let only = job.clone();
        let keep_going = move |store: &mut Redis| {
            jobs::progress(store, &only)
                .map(|p| !p.is_final())
                .unwrap_or(false)
        };
        let start = Instant::now();
        let summary = worker.serve(&self.redis.url(), 1, Some(&job), keep_going)?;
        let wall = start.elapsed();
        self.ensure_done(&job)?;
        Ok(KernelShare {
            kernel: kernel.into(),
            batch_ms: summary.kernel_time.as_secs_f64() * 1e3 / summary.batches.max(1) as f64,
            batches: summary.batches,
            share: summary.kernel_time.as_secs_f64() / wall.as_secs_f64(),
        })
    }
}
