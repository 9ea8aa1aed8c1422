//! Workers run the batches of jobs in Redis (protocol v1). [`Worker::serve`] runs claim loops
//! until told to stop (`crunch worker`); [`Worker::drain`] runs them on one job until nothing is
//! left to claim or a deadline comes (a Lambda invocation). The claim loops are in `pipeline`,
//! a batch's lifecycle (dead-letter check, run, complete, retry, release) in `lifecycle`, and
//! the jobs a worker without `--job` looks at in `index`.

mod index;
mod lifecycle;
#[cfg(test)]
mod memory_queue;
mod pipeline;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

use crate::queue::jobs;
use crate::queue::pack_registry;
use crate::queue::store::keys::JobKeys;
use crate::queue::store::pool::StorePool;
use crate::queue::store::queue::{Claim, Queue};
use crate::queue::store::spec::{JobSpec, JobState};
use crate::queue::store::{DEFAULT_PATIENCE, Patience, Redis};
use crate::sandbox::batch::BatchError;
use crate::sandbox::cache::{self, CacheHit, PackCache};
use crate::sandbox::engine::Engine;
use crate::sandbox::pack::KernelPack;
use index::JobIndex;
use lifecycle::{Claimed, Ready};
use pipeline::{Plan, Shared};

/// Counts of what a worker did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct WorkSummary {
    /// Batches whose results this worker stored (dead-lettered ones included).
    pub batches: u64,
    /// Batches this worker put back on the queue for another delivery.
    pub retried: u64,
    /// Batches this worker dead-lettered.
    pub dead: u64,
    /// Batches this worker handed back unrun (stopped at a deadline or a shutdown, or the host
    /// could not run them); they do not count as deliveries.
    pub released: u64,
    /// Items computed.
    pub items_ok: u64,
    /// Items that failed.
    pub items_failed: u64,
    /// Time spent instantiating and running kernels.
    pub kernel_time: Duration,
}

impl WorkSummary {
    fn add(&mut self, o: WorkSummary) {
        self.batches += o.batches;
        self.retried += o.retried;
        self.dead += o.dead;
        self.released += o.released;
        self.items_ok += o.items_ok;
        self.items_failed += o.items_failed;
        self.kernel_time += o.kernel_time;
    }
}

/// When a drain must stop: the moment, and the margin kept free before it for writing results.
#[derive(Clone, Copy, Debug)]
pub struct Deadline {
    /// The moment the caller must be done (for Lambda, the invocation deadline).
    pub at: Instant,
    /// Time kept free before `at`.
    pub margin: Duration,
}

/// What a drain did and why it stopped.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DrainReport {
    /// The work done.
    pub summary: WorkSummary,
    /// True when it stopped because the next batch might not finish before the deadline;
    /// false when the queue had nothing left to claim.
    pub stopped_at_deadline: bool,
    /// Claim loops run.
    pub concurrency: usize,
    /// The most batches that ran at the same moment.
    pub peak_batches: usize,
}

/// A batch-level failure of a kernel, reported to the error hook (for example to Sentry).
#[derive(Clone, Debug)]
pub struct BatchFailure {
    /// The job.
    pub job: String,
    /// The kernel.
    pub kernel: String,
    /// The batch.
    pub batch: u64,
    /// Deliveries so far, this one included.
    pub deliveries: u64,
    /// Whether the batch was dead-lettered (else it will be retried).
    pub dead_lettered: bool,
    /// The failure.
    pub error: BatchError,
}

/// Called on every batch-level kernel failure.
pub type ErrorHook = Box<dyn Fn(&BatchFailure) + Send + Sync>;

/// What one claim on one job came to.
enum Step {
    /// A batch claimed, its input read and its pack loaded: to be run.
    Ready(Box<Ready>),
    /// A batch finished without running (dead-lettered before its run).
    Worked(WorkSummary),
    /// Nothing to claim now.
    Idle,
    /// The job is finished, failed, cancelled or gone.
    NotRunnable,
}

/// Runs batches of jobs found in Redis. Compiled packs are cached by digest for the life of
/// the worker, so a pack is compiled once however many jobs use it.
pub struct Worker {
    packs: PackCache,
    /// Specs of the jobs being worked on; a job's is dropped once it is seen finished or gone.
    specs: Mutex<HashMap<String, Arc<JobSpec>>>,
    index: JobIndex,
    consumer_prefix: String,
    on_error: Option<ErrorHook>,
    shutdown: Arc<AtomicBool>,
    /// Numbers each claim request, so that a repeated request is recognised.
    requests: AtomicU64,
}

/// This machine's host name (the start of every consumer name), or `host` where Linux's
/// `/proc` does not say.
fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|name| name.trim().to_string())
        .filter(|name| !name.is_empty())
        .unwrap_or_else(|| "host".to_string())
}

impl Worker {
    /// A worker running batches on `engine`, caching compiled packs in memory
    /// ([`Worker::with_cache_dir`] adds a disk cache).
    pub fn new(engine: Engine) -> Self {
        Self {
            packs: PackCache::new(engine, None, cache::DEFAULT_MEMORY_ENTRIES),
            specs: Mutex::new(HashMap::new()),
            index: JobIndex::default(),
            consumer_prefix: format!(
                "{}-{}-{}",
                host_name(),
                std::process::id(),
                &jobs::new_job_id()[11..]
            ),
            on_error: None,
            shutdown: Arc::new(AtomicBool::new(false)),
            requests: AtomicU64::new(0),
        }
    }

    /// Keeps compiled packs on disk in `dir` (none: memory only) instead of the default.
    pub fn with_cache_dir(mut self, dir: Option<std::path::PathBuf>) -> Self {
        self.packs = PackCache::new(
            self.packs.engine().clone(),
            dir,
            cache::DEFAULT_MEMORY_ENTRIES,
        );
        self
    }

    /// Calls `hook` on every batch-level kernel failure (trap, time or memory limit).
    pub fn with_error_hook(mut self, hook: ErrorHook) -> Self {
        self.on_error = Some(hook);
        self
    }

    /// The flag that asks the worker to shut down: once set, its claim loops claim nothing
    /// more, finish the batch each is running, hand back the ones claimed but not started, and
    /// return. Set it from a signal handler (SIGTERM, Ctrl-C).
    pub fn shutdown_flag(&self) -> Arc<AtomicBool> {
        Arc::clone(&self.shutdown)
    }

    fn shutting_down(&self) -> bool {
        self.shutdown.load(Ordering::Relaxed)
    }

    /// Jobs whose spec this worker keeps: the ones it works on; it lets a job's go once it
    /// sees the job finished or gone.
    pub fn jobs_held(&self) -> usize {
        self.specs
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .len()
    }

    /// The consumer name of claim loop `thread` in the queue's consumer group.
    pub fn consumer(&self, thread: usize) -> String {
        format!("{}-{thread}", self.consumer_prefix)
    }

    /// Runs `threads` claim loops against `redis_url` (each with its own connections, and
    /// prefetch and store threads, see `pipeline`) until `keep_going`, asked whenever a loop
    /// finds nothing to claim, says stop, or the shutdown flag is set. With `only_job`, only
    /// that job is worked on; else every job in the `crunch:jobs` index. Waits for Redis as
    /// long as it takes; stops at once on what no retry fixes (refused credentials or
    /// permissions, an untrusted certificate).
    pub fn serve(
        &self,
        redis_url: &str,
        threads: usize,
        only_job: Option<&str>,
        keep_going: impl Fn(&mut Redis) -> bool + Sync,
    ) -> Result<WorkSummary> {
        let connect = || Redis::connect_until_stopped(redis_url, self.shutdown_flag());
        let plan = Plan {
            job: only_job,
            deadline: None,
            keep_going: &keep_going,
        };
        let shared = Shared::default();
        let mut total = WorkSummary::default();
        for end in pipeline::run_loops(self, threads, connect, &plan, &shared)? {
            total.add(end.result?);
        }
        Ok(total)
    }

    /// Drains `job` with `loops` claim loops until none finds anything to claim, or until the
    /// next batch might not finish before the deadline less its margin, estimated at 1.5 times
    /// the longest batch seen so far. No batch runs with a time limit past the deadline; one
    /// cut off there, or claimed but not started, is handed back to the queue. Connections
    /// come from `pool` and go back to it.
    pub fn drain(
        &self,
        pool: &StorePool,
        job: &str,
        loops: usize,
        deadline: Option<Deadline>,
    ) -> Result<DrainReport> {
        let patience = deadline.map_or(Patience::For(DEFAULT_PATIENCE), |d| Patience::Until(d.at));
        let stop_when_idle = |_: &mut Redis| false;
        let plan = Plan {
            job: Some(job),
            deadline,
            keep_going: &stop_when_idle,
        };
        let shared = Shared::default();
        let ends = pipeline::run_loops(self, loops, || pool.take(patience), &plan, &shared)?;
        let mut report = DrainReport {
            concurrency: ends.len(),
            ..DrainReport::default()
        };
        let mut first_error = None;
        for end in ends {
            pool.give_back(end.stores);
            match end.result {
                Ok(summary) => report.summary.add(summary),
                Err(e) => first_error = first_error.or(Some(e)),
            }
        }
        if let Some(e) = first_error {
            return Err(e);
        }
        report.stopped_at_deadline = shared.stopped_at_deadline();
        report.peak_batches = shared.peak_batches();
        Ok(report)
    }

    /// Claims at most one batch of `job` and prepares it to run.
    fn claim_one(&self, store: &mut Redis, job: &str, consumer: &str) -> Result<Step> {
        if self.index.is_finished(job) {
            return Ok(Step::NotRunnable);
        }
        let Some(spec) = self.spec(store, job)? else {
            return Ok(Step::NotRunnable);
        };
        let request = self.requests.fetch_add(1, Ordering::Relaxed).to_string();
        let (claimed_ms, fetch_start) = (jobs::now_ms(), Instant::now());
        match store.claim(job, consumer, spec.lease_ms, &request)? {
            Claim::Batch(entry) => {
                let batch = entry.batch;
                let claimed = Claimed {
                    spec,
                    entry,
                    claimed_ms,
                    fetch: Duration::ZERO,
                };
                self.prepare(store, claimed, fetch_start)
                    .with_context(|| format!("job {job}, batch {batch}"))
            }
            Claim::Empty => Ok(Step::Idle),
            Claim::NotRunnable(state) => {
                tracing::debug!(
                    job,
                    state = state.map_or("gone", JobState::as_str),
                    "job not runnable"
                );
                // A job still being submitted will be runnable; a finished or gone one not.
                if state.is_none_or(JobState::is_final) {
                    self.forget(store, job, state.is_none())?;
                }
                Ok(Step::NotRunnable)
            }
        }
    }

    /// Stops looking at a job that is finished or gone (pruning a gone one from the index).
    fn forget(&self, store: &mut Redis, job: &str, gone: bool) -> Result<()> {
        self.specs
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(job);
        if gone {
            self.index.prune(store, job)
        } else {
            self.index.finished(job);
            Ok(())
        }
    }

    /// The spec of `job`, cached; `None` when the job is gone, or its spec exists but cannot be
    /// read: that fails the job (with the reason) instead of being retried forever.
    fn spec(&self, store: &mut Redis, job: &str) -> Result<Option<Arc<JobSpec>>> {
        let cached = self
            .specs
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(job)
            .cloned();
        if let Some(spec) = cached {
            return Ok(Some(spec));
        }
        let spec = match jobs::find_spec(store, job) {
            Ok(Some(spec)) => Arc::new(spec),
            Ok(None) => {
                let progress_left: bool = store.run(|c| {
                    redis::cmd("EXISTS")
                        .arg(JobKeys::new(job).progress())
                        .query(c)
                })?;
                self.forget(store, job, !progress_left)?;
                return Ok(None);
            }
            Err(e) => {
                // Failed with the reason, said once, and not looked at again.
                let reason = format!("unreadable job spec: {e:#}");
                tracing::error!(job, "{reason}");
                store.fail_job(job, &reason)?;
                self.forget(store, job, false)?;
                return Ok(None);
            }
        };
        self.specs
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(job.to_string(), Arc::clone(&spec));
        Ok(Some(spec))
    }

    /// The compiled pack `spec` pins, from the cache, else fetched (from the registry, or from
    /// the spec's path) and checked against the digest.
    fn pack(&self, store: &mut Redis, spec: &JobSpec) -> Result<KernelPack> {
        let fetch = || {
            if spec.pack_path.is_empty() {
                pack_registry::fetch(store, &spec.pack_digest)
            } else {
                std::fs::read(&spec.pack_path)
                    .with_context(|| format!("reading kernel pack {}", spec.pack_path))
            }
        };
        let (pack, hit) = self.packs.get(&spec.pack_digest, fetch)?;
        if hit != CacheHit::Memory {
            tracing::info!(digest = %spec.pack_digest, source = ?hit, "kernel pack loaded");
        }
        Ok(pack)
    }

    /// Everything before the run: the dead-letter check, the pack, the input.
    fn prepare(&self, store: &mut Redis, mut claimed: Claimed, start: Instant) -> Result<Step> {
        if let Some(reason) = lifecycle::overdue(store, &claimed)? {
            return lifecycle::dead_letter(store, &claimed, &reason).map(Step::Worked);
        }
        let pack = match self.pack(store, &claimed.spec) {
            Ok(pack) => pack,
            Err(e) => {
                let reason = format!("{e:#}");
                store.fail_job(&claimed.spec.job, &reason)?;
                bail!("job {} failed: {reason}", claimed.spec.job);
            }
        };
        let input = lifecycle::input(store, &claimed)?;
        claimed.fetch = start.elapsed();
        match input {
            Ok(items) => Ok(Step::Ready(Box::new(Ready {
                claimed,
                pack,
                items,
            }))),
            Err(reason) => lifecycle::dead_letter(store, &claimed, &reason).map(Step::Worked),
        }
    }
}
