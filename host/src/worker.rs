//! The worker side of protocol v1: claim a batch, run it, then store its results, acknowledge
//! it and count it in one atomic step. Failing batches are retried, then dead-lettered; claims
//! idle past their lease are taken over.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, mpsc};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail};

use crate::batch::{BatchError, BatchOutcome, Job, run_packed_batch};
use crate::cache::{self, CacheHit, PackCache};
use crate::codec;
use crate::engine::Engine;
use crate::jobs::{self, batch_failures};
use crate::pack::KernelPack;
use crate::packing::PackedBatch;
use crate::registry;
use crate::results::PackedResults;
use crate::store::keys::{self, JobKeys};
use crate::store::spec::JobSpec;
use crate::store::{Store, scripts};
use crate::types::ItemError;

/// What a claim attempt found.
#[derive(Debug)]
enum Claim {
    /// A batch to run.
    Batch {
        entry: String,
        batch: u64,
        attempt: u64,
        deliveries: u64,
    },
    /// Nothing claimable right now.
    Empty,
    /// The job is not runnable (finished, cancelled, failed or gone).
    NotRunnable(String),
}

/// A claimed batch and everything needed to finish it.
struct Claimed {
    spec: Arc<JobSpec>,
    keys: JobKeys,
    entry: String,
    batch: u64,
    /// Deliveries so far, this one included.
    attempts: u64,
}

impl Claimed {
    /// Items in this batch (the last batch may be short).
    fn item_count(&self) -> u64 {
        let first = self.batch * self.spec.batch_size;
        self.spec
            .batch_size
            .min(self.spec.item_count.saturating_sub(first))
    }
}

/// Counts of what a worker did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct WorkSummary {
    /// Batches whose results this worker stored (dead-lettered ones included).
    pub batches: u64,
    /// Batches this worker put back for another attempt.
    pub retried: u64,
    /// Batches this worker dead-lettered.
    pub dead: u64,
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
}

/// A batch-level failure, reported to the error hook (for example to Sentry).
#[derive(Clone, Debug)]
pub struct BatchFailure {
    /// The job.
    pub job: String,
    /// The kernel.
    pub kernel: String,
    /// The batch.
    pub batch: u64,
    /// Deliveries so far, this one included.
    pub attempts: u64,
    /// Whether the batch was dead-lettered (else it will be retried).
    pub dead_lettered: bool,
    /// The failure.
    pub error: BatchError,
}

/// Called on every batch-level failure.
pub type ErrorHook = Box<dyn Fn(&BatchFailure) + Send + Sync>;

enum Step {
    /// A batch claimed, its input read and its pack loaded: to be run.
    Ready(Box<Ready>),
    /// A batch finished without running (dead-lettered before its run).
    Worked(WorkSummary),
    Idle,
    Deadline,
}

/// A batch that has run, its results to be stored.
struct Ran {
    claimed: Claimed,
    outcome: BatchOutcome,
    batch_time: Duration,
}

/// A claimed batch ready to run.
struct Ready {
    claimed: Claimed,
    pack: KernelPack,
    items: PackedBatch,
    batch_time: Duration,
}

/// Runs batches of jobs found in Redis. Compiled packs are cached by digest for the life of
/// the worker, so a pack is compiled once however many jobs use it.
pub struct Worker {
    packs: PackCache,
    specs: Mutex<HashMap<String, Arc<JobSpec>>>,
    consumer_prefix: String,
    on_error: Option<ErrorHook>,
}

impl Worker {
    /// A worker running batches on `engine`.
    pub fn new(engine: Engine) -> Self {
        let host = std::env::var("HOSTNAME").unwrap_or_else(|_| "host".into());
        Self {
            packs: PackCache::new(engine, cache::default_dir(), cache::DEFAULT_MEMORY_ENTRIES),
            specs: Mutex::new(HashMap::new()),
            consumer_prefix: format!(
                "{host}-{}-{}",
                std::process::id(),
                &jobs::new_job_id()[11..]
            ),
            on_error: None,
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

    /// Calls `hook` on every batch-level failure (trap, time or memory limit).
    pub fn with_error_hook(mut self, hook: ErrorHook) -> Self {
        self.on_error = Some(hook);
        self
    }

    /// The consumer name of worker thread `thread` in the queue's consumer group.
    pub fn consumer(&self, thread: usize) -> String {
        format!("{}-{thread}", self.consumer_prefix)
    }

    /// Runs `threads` claim loops against `redis_url` (each with its own connections and its
    /// prefetch and store threads, see `claim_loop`) until `keep_going`, asked whenever a loop
    /// finds nothing to claim, says stop. With `only_job`, only that job is worked on.
    pub fn serve(
        self: &Arc<Self>,
        redis_url: &str,
        threads: usize,
        only_job: Option<&str>,
        keep_going: impl Fn(&mut Store) -> bool + Send + Sync + Clone + 'static,
    ) -> Result<WorkSummary> {
        let handles: Vec<_> = (0..threads.max(1))
            .map(|t| {
                let worker = Arc::clone(self);
                let url = redis_url.to_string();
                let only = only_job.map(str::to_string);
                let keep_going = keep_going.clone();
                std::thread::Builder::new()
                    .name(format!("crunch-worker-{t}"))
                    .spawn(move || worker.claim_loop(&url, t, only.as_deref(), keep_going))
                    .context("starting a worker thread")
            })
            .collect::<Result<_>>()?;
        let mut total = WorkSummary::default();
        for h in handles {
            match h.join() {
                Ok(r) => total.add(r?),
                Err(_) => bail!("a worker thread panicked"),
            }
        }
        Ok(total)
    }

    /// One claim loop, three threads: a prefetch thread claims the next batch and reads its
    /// input, this thread runs batches, and a store thread writes the previous batch's results,
    /// so that a batch's Redis round trips overlap the kernels. At most one batch waits claimed
    /// and one waits to be stored.
    fn claim_loop(
        &self,
        url: &str,
        thread: usize,
        only_job: Option<&str>,
        keep_going: impl Fn(&mut Store) -> bool + Send,
    ) -> Result<WorkSummary> {
        let mut store = Store::connect(url)?;
        let (ready_tx, ready_rx) = mpsc::sync_channel::<Box<Ready>>(0);
        let (ran_tx, ran_rx) = mpsc::sync_channel::<Ran>(1);
        // Wakes an idle prefetch thread when a batch is stored (the job may be done).
        let (finished_tx, finished_rx) = mpsc::channel::<()>();
        std::thread::scope(|scope| {
            let prefetch = std::thread::Builder::new()
                .name(format!("crunch-prefetch-{thread}"))
                .spawn_scoped(scope, || {
                    let channels = (ready_tx, finished_rx);
                    self.prefetch_loop(url, thread, only_job, keep_going, channels)
                })
                .context("starting a prefetch thread")?;
            let stored = std::thread::Builder::new()
                .name(format!("crunch-store-{thread}"))
                .spawn_scoped(scope, move || {
                    let mut summary = WorkSummary::default();
                    for ran in ran_rx {
                        let (job, batch) = (ran.claimed.spec.job.clone(), ran.claimed.batch);
                        match self.finish(&mut store, ran) {
                            Ok(s) => summary.add(s),
                            Err(e) => tracing::error!(job = %job, batch, "{e:#}"),
                        }
                        let _ = finished_tx.send(());
                    }
                    summary
                })
                .context("starting a store thread")?;
            for ready in ready_rx {
                if ran_tx.send(self.run(*ready)).is_err() {
                    break;
                }
            }
            drop(ran_tx);
            let mut summary = stored
                .join()
                .map_err(|_| anyhow!("a store thread panicked"))?;
            match prefetch.join() {
                Ok(prefetched) => summary.add(prefetched?),
                Err(_) => bail!("a prefetch thread panicked"),
            }
            Ok(summary)
        })
    }

    /// Claims and prepares batches, handing each to the claim loop, until `keep_going`
    /// (asked whenever nothing is claimable) says stop.
    fn prefetch_loop(
        &self,
        url: &str,
        thread: usize,
        only_job: Option<&str>,
        keep_going: impl Fn(&mut Store) -> bool,
        (ready_tx, finished_rx): (mpsc::SyncSender<Box<Ready>>, mpsc::Receiver<()>),
    ) -> Result<WorkSummary> {
        let mut store = Store::connect(url)?;
        let consumer = self.consumer(thread);
        let mut summary = WorkSummary::default();
        let mut idle = Duration::from_millis(20);
        loop {
            let jobs = match only_job {
                Some(j) => vec![j.to_string()],
                None => {
                    store.run(|c| redis::cmd("ZRANGE").arg(keys::JOBS).arg(0).arg(-1).query(c))?
                }
            };
            let mut worked = false;
            for job in jobs {
                match self.prepare_one(&mut store, &job, &consumer, None) {
                    Ok(Step::Ready(ready)) => {
                        if ready_tx.send(ready).is_err() {
                            // The claim loop is gone; the claim lapses and is taken over.
                            return Ok(summary);
                        }
                        worked = true;
                        break;
                    }
                    Ok(Step::Worked(s)) => {
                        summary.add(s);
                        worked = true;
                        break;
                    }
                    Ok(Step::Idle | Step::Deadline) => {}
                    Err(e) => tracing::error!(job = %job, "{e:#}"),
                }
            }
            if worked {
                idle = Duration::from_millis(20);
                continue;
            }
            // Whether to stop is asked only when there was nothing to claim: the question can
            // cost a round trip per job, which a busy loop should not pay per batch.
            if !keep_going(&mut store) {
                break;
            }
            let _ = finished_rx.recv_timeout(idle);
            idle = (idle * 2).min(Duration::from_millis(500));
        }
        Ok(summary)
    }

    /// Drains `job`: claims and runs its batches one after another until none is claimable,
    /// or until the next batch might not finish before the deadline less its margin, estimated
    /// at 1.5 times the longest batch seen so far. No batch runs with a time limit past the
    /// deadline; one cut off there is left to lapse and be taken over. Unfinished work stays
    /// queued for other workers.
    pub fn drain(
        &self,
        store: &mut Store,
        job: &str,
        consumer: &str,
        deadline: Option<Deadline>,
    ) -> Result<DrainReport> {
        let mut report = DrainReport::default();
        let mut longest: Option<Duration> = None;
        loop {
            let estimate = longest.map(|d| d.mul_f64(1.5));
            let summary =
                match self.prepare_one(store, job, consumer, deadline.map(|d| (d, estimate)))? {
                    Step::Ready(ready) => self.finish(store, self.run(*ready))?,
                    Step::Worked(s) => s,
                    Step::Idle => return Ok(report),
                    Step::Deadline => {
                        report.stopped_at_deadline = true;
                        return Ok(report);
                    }
                };
            longest = Some(longest.unwrap_or_default().max(summary.kernel_time));
            report.summary.add(summary);
        }
    }

    /// Claims at most one batch of `job` and prepares it to run.
    fn prepare_one(
        &self,
        store: &mut Store,
        job: &str,
        consumer: &str,
        deadline: Option<(Deadline, Option<Duration>)>,
    ) -> Result<Step> {
        let spec = match self.spec(store, job) {
            Ok(spec) => spec,
            Err(e) => return Err(self.fail_unreadable_spec(store, job, e)),
        };
        let spec_limit = Duration::from_millis(spec.batch_time_ms);
        let mut batch_time = spec_limit;
        if let Some((d, estimate)) = deadline {
            let available =
                d.at.saturating_duration_since(Instant::now())
                    .saturating_sub(d.margin);
            // Before any batch has been measured, the batch's time limit is cut to what is left
            // instead, so that even a slow first batch ends before the deadline.
            if available.is_zero() || estimate.is_some_and(|e| e > available) {
                return Ok(Step::Deadline);
            }
            batch_time = batch_time.min(available);
        }
        let keys = JobKeys::new(job);
        match claim(store, &keys, consumer, spec.lease_ms)? {
            Claim::Batch {
                entry,
                batch,
                attempt,
                deliveries,
            } => {
                let claimed = Claimed {
                    spec: Arc::clone(&spec),
                    keys,
                    entry,
                    batch,
                    attempts: attempt.saturating_sub(1) + deliveries,
                };
                self.prepare(store, claimed, batch_time)
                    .with_context(|| format!("job {job}, batch {batch}"))
            }
            Claim::Empty => Ok(Step::Idle),
            Claim::NotRunnable(state) => {
                tracing::debug!(job, state, "job not runnable");
                Ok(Step::Idle)
            }
        }
    }

    /// A spec that exists but cannot be read fails its job (with the reason) instead of being
    /// retried forever; a missing one (expired job) is only reported.
    fn fail_unreadable_spec(
        &self,
        store: &mut Store,
        job: &str,
        error: anyhow::Error,
    ) -> anyhow::Error {
        let keys = JobKeys::new(job);
        let exists: bool = store
            .run(|c| redis::cmd("EXISTS").arg(keys.spec()).query(c))
            .unwrap_or(false);
        if exists {
            let _ = fail_job(store, &keys, &format!("unreadable job spec: {error:#}"));
        }
        error
    }

    fn spec(&self, store: &mut Store, job: &str) -> Result<Arc<JobSpec>> {
        let cached = self
            .specs
            .lock()
            .map_err(|_| anyhow!("spec cache poisoned"))?
            .get(job)
            .cloned();
        if let Some(spec) = cached {
            return Ok(spec);
        }
        let spec = Arc::new(jobs::spec(store, job)?);
        self.specs
            .lock()
            .map_err(|_| anyhow!("spec cache poisoned"))?
            .insert(job.to_string(), Arc::clone(&spec));
        Ok(spec)
    }

    /// The compiled pack `spec` pins, from the cache, else fetched (from the registry, or from
    /// the spec's path) and checked against the digest.
    fn pack(&self, store: &mut Store, spec: &JobSpec) -> Result<KernelPack> {
        let fetch = || {
            if spec.pack_path.is_empty() {
                registry::fetch(store, &spec.pack_digest)
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
    fn prepare(&self, store: &mut Store, claimed: Claimed, batch_time: Duration) -> Result<Step> {
        let (spec, keys, batch) = (&*claimed.spec, &claimed.keys, claimed.batch);
        if claimed.attempts > spec.max_deliveries {
            let last: Option<String> = store.run(|c| {
                redis::cmd("HGET")
                    .arg(keys.last_error())
                    .arg(batch)
                    .query(c)
            })?;
            let reason = last.unwrap_or_else(|| {
                format!(
                    "its worker was lost {} times (claim lease of {} ms expired)",
                    claimed.attempts, spec.lease_ms
                )
            });
            return self.dead_letter(store, &claimed, &reason).map(Step::Worked);
        }
        let pack = match self.pack(store, spec) {
            Ok(pack) => pack,
            Err(e) => {
                let reason = format!("{e:#}");
                fail_job(store, keys, &reason)?;
                bail!("job {} failed: {reason}", spec.job);
            }
        };
        let bytes: Option<Vec<u8>> =
            store.run(|c| redis::cmd("GET").arg(keys.input(batch)).query(c))?;
        let items = match bytes.map(|b| codec::decode_packed(&b)) {
            Some(Ok(items)) => items,
            Some(Err(e)) => {
                let reason = format!("input of batch {batch} is malformed: {e:#}");
                return self.dead_letter(store, &claimed, &reason).map(Step::Worked);
            }
            None => {
                let reason = format!("input of batch {batch} is missing (expired or deleted)");
                return self.dead_letter(store, &claimed, &reason).map(Step::Worked);
            }
        };
        Ok(Step::Ready(Box::new(Ready {
            claimed,
            pack,
            items,
            batch_time,
        })))
    }

    /// Runs a prepared batch.
    fn run(&self, ready: Ready) -> Ran {
        let Ready {
            claimed,
            pack,
            items,
            batch_time,
        } = ready;
        let spec = &*claimed.spec;
        let job = Job {
            kernel: &spec.kernel,
            params: &spec.params,
            batch_time,
        };
        let outcome = run_packed_batch(&pack, &job, claimed.batch as usize, &items);
        Ran {
            claimed,
            outcome,
            batch_time,
        }
    }

    /// Stores a run batch's results (or retries or dead-letters it).
    fn finish(&self, store: &mut Store, ran: Ran) -> Result<WorkSummary> {
        let Ran {
            claimed,
            outcome,
            batch_time,
        } = ran;
        let (spec, batch) = (&*claimed.spec, claimed.batch);
        let cut_off = batch_time < Duration::from_millis(spec.batch_time_ms);
        let mut summary = match &outcome.error {
            None => self.complete(store, &claimed, &outcome.results, "")?,
            Some(BatchError::Timeout { .. }) if cut_off => {
                // Interrupted by the caller's deadline, not by its own limit: not the batch's
                // fault. Leave the claim to lapse; another worker takes it over.
                tracing::warn!(job = %spec.job, batch, "cut off at the deadline; its claim will lapse and be taken over");
                WorkSummary::default()
            }
            Some(error) => self.batch_failed(store, &claimed, error)?,
        };
        summary.kernel_time = outcome.elapsed;
        Ok(summary)
    }

    /// A trap, timeout or memory blow-up: retry, or dead-letter on the last delivery.
    fn batch_failed(
        &self,
        store: &mut Store,
        claimed: &Claimed,
        error: &BatchError,
    ) -> Result<WorkSummary> {
        let spec = &*claimed.spec;
        let reason = format!("job {}: {error}", spec.job);
        tracing::warn!(job = %spec.job, batch = claimed.batch, attempts = claimed.attempts, "{reason}");
        let dead = claimed.attempts >= spec.max_deliveries;
        if let Some(hook) = &self.on_error {
            hook(&BatchFailure {
                job: spec.job.clone(),
                kernel: spec.kernel.clone(),
                batch: claimed.batch,
                attempts: claimed.attempts,
                dead_lettered: dead,
                error: error.clone(),
            });
        }
        if dead {
            return self.dead_letter(store, claimed, &reason);
        }
        let requeued: i64 = store.run(|c| {
            scripts::RETRY
                .key(claimed.keys.queue())
                .key(claimed.keys.last_error())
                .arg(keys::GROUP)
                .arg(&claimed.entry)
                .arg(claimed.batch)
                .arg(claimed.attempts + 1)
                .arg(&reason)
                .arg(spec.ttl_seconds)
                .invoke(c)
        })?;
        Ok(WorkSummary {
            retried: requeued as u64,
            ..WorkSummary::default()
        })
    }

    fn dead_letter(
        &self,
        store: &mut Store,
        claimed: &Claimed,
        reason: &str,
    ) -> Result<WorkSummary> {
        tracing::error!(job = %claimed.spec.job, batch = claimed.batch, attempts = claimed.attempts, "dead-lettered: {reason}");
        let headline = reason.lines().next().unwrap_or_default().to_string();
        let results = PackedResults::all_failed(
            claimed.item_count() as usize,
            ItemError::BatchFailed(headline),
        );
        let mut summary = self.complete(store, claimed, &results, reason)?;
        summary.dead = summary.batches;
        Ok(summary)
    }

    /// Stores results, acknowledges and counts the batch in one step (script `COMPLETE`).
    fn complete(
        &self,
        store: &mut Store,
        claimed: &Claimed,
        results: &PackedResults,
        dead_reason: &str,
    ) -> Result<WorkSummary> {
        let (spec, keys, batch) = (&*claimed.spec, &claimed.keys, claimed.batch);
        let failures = batch_failures(batch * spec.batch_size, results);
        let failed = failures.len() as u64;
        let ok = results.len() as u64 - failed;
        let errors = if failures.is_empty() {
            String::new()
        } else {
            serde_json::to_string(&failures)?
        };
        let encoded = codec::encode_results(results);
        let counted: i64 = store.run(|c| {
            scripts::COMPLETE
                .key(keys.progress())
                .key(keys.done())
                .key(keys.output(batch))
                .key(keys.errors())
                .key(keys.queue())
                .key(keys.dead())
                .key(keys.last_error())
                .arg(batch)
                .arg(&claimed.entry)
                .arg(&encoded)
                .arg(ok)
                .arg(failed)
                .arg(&errors)
                .arg(spec.ttl_seconds)
                .arg(keys::GROUP)
                .arg(dead_reason)
                .arg(claimed.attempts)
                .invoke(c)
        })?;
        if counted == 0 {
            return Ok(WorkSummary::default());
        }
        Ok(WorkSummary {
            batches: 1,
            items_ok: ok,
            items_failed: failed,
            ..WorkSummary::default()
        })
    }
}

/// Marks a job `failed` with `reason` (the worker cannot run it at all).
fn fail_job(store: &mut Store, keys: &JobKeys, reason: &str) -> Result<()> {
    store.run(|c| {
        redis::cmd("HSET")
            .arg(keys.progress())
            .arg("state")
            .arg("failed")
            .arg("error")
            .arg(reason)
            .query::<()>(c)
    })
}

fn claim(store: &mut Store, keys: &JobKeys, consumer: &str, lease_ms: u64) -> Result<Claim> {
    let reply: Option<Vec<String>> = store.run(|c| {
        scripts::CLAIM
            .key(keys.progress())
            .key(keys.queue())
            .arg(keys::GROUP)
            .arg(consumer)
            .arg(lease_ms)
            .invoke(c)
    })?;
    let Some(reply) = reply else {
        return Ok(Claim::Empty);
    };
    match reply.as_slice() {
        [kind, state] if kind == "state" => Ok(Claim::NotRunnable(state.clone())),
        [kind, entry, batch, attempt, deliveries] if kind == "claim" => Ok(Claim::Batch {
            entry: entry.clone(),
            batch: batch
                .parse()
                .with_context(|| format!("queue entry {entry} has batch {batch:?}"))?,
            attempt: attempt.parse().unwrap_or(1),
            deliveries: deliveries.parse().unwrap_or(1),
        }),
        other => bail!("unexpected claim reply {other:?}"),
    }
}
