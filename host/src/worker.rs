//! The worker side of protocol v1: claim a batch, run it, then store its results, acknowledge
//! it and count it in one atomic step. Failing batches are retried, then dead-lettered; claims
//! idle past their lease are taken over.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

use crate::batch::{Job, run_batch};
use crate::codec;
use crate::engine::Engine;
use crate::jobs::{self, batch_failures};
use crate::pack::KernelPack;
use crate::store::keys::{self, JobKeys};
use crate::store::spec::JobSpec;
use crate::store::{Store, scripts};
use crate::types::{ItemError, ItemResult};

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

/// Counts of what a worker did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct WorkSummary {
    /// Batches whose results this worker stored.
    pub batches: u64,
    /// Batches this worker put back for another attempt.
    pub retried: u64,
    /// Batches this worker dead-lettered.
    pub dead: u64,
    /// Items computed.
    pub items_ok: u64,
    /// Items that failed.
    pub items_failed: u64,
}

impl WorkSummary {
    fn add(&mut self, o: WorkSummary) {
        self.batches += o.batches;
        self.retried += o.retried;
        self.dead += o.dead;
        self.items_ok += o.items_ok;
        self.items_failed += o.items_failed;
    }
}

/// Runs batches of jobs found in Redis. Compiled packs are cached by digest for the life of
/// the worker, so a pack is compiled once however many jobs use it.
pub struct Worker {
    engine: Engine,
    packs: Mutex<HashMap<String, KernelPack>>,
    specs: Mutex<HashMap<String, Arc<JobSpec>>>,
    consumer_prefix: String,
}

impl Worker {
    /// A worker running batches on `engine`.
    pub fn new(engine: Engine) -> Self {
        let host = std::env::var("HOSTNAME").unwrap_or_else(|_| "host".into());
        Self {
            engine,
            packs: Mutex::new(HashMap::new()),
            specs: Mutex::new(HashMap::new()),
            consumer_prefix: format!(
                "{host}-{}-{}",
                std::process::id(),
                &jobs::new_job_id()[11..]
            ),
        }
    }

    /// The consumer name of worker thread `thread` in the queue's consumer group.
    pub fn consumer(&self, thread: usize) -> String {
        format!("{}-{thread}", self.consumer_prefix)
    }

    /// Runs `threads` claim loops against `redis_url`, each with its own connection, until
    /// `keep_going` says stop. With `only_job`, only that job is worked on.
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

    fn claim_loop(
        &self,
        url: &str,
        thread: usize,
        only_job: Option<&str>,
        keep_going: impl Fn(&mut Store) -> bool,
    ) -> Result<WorkSummary> {
        let mut store = Store::connect(url)?;
        let consumer = self.consumer(thread);
        let mut summary = WorkSummary::default();
        let mut idle = Duration::from_millis(20);
        while keep_going(&mut store) {
            let jobs = match only_job {
                Some(j) => vec![j.to_string()],
                None => {
                    store.run(|c| redis::cmd("ZRANGE").arg(keys::JOBS).arg(0).arg(-1).query(c))?
                }
            };
            let mut worked = false;
            for job in jobs {
                match self.work_one(&mut store, &job, &consumer, None) {
                    Ok(Some(s)) => {
                        summary.add(s);
                        worked = true;
                        break;
                    }
                    Ok(None) => {}
                    Err(e) => tracing::error!(job = %job, "{e:#}"),
                }
            }
            if worked {
                idle = Duration::from_millis(20);
            } else {
                std::thread::sleep(idle);
                idle = (idle * 2).min(Duration::from_millis(500));
            }
        }
        Ok(summary)
    }

    /// Drains `job`: claims and runs its batches one after another until none is claimable,
    /// or until the next batch could not finish before `deadline` (estimated from the batch
    /// times seen so far). Unfinished work stays queued for others.
    pub fn drain(
        &self,
        store: &mut Store,
        job: &str,
        consumer: &str,
        deadline: Option<Instant>,
    ) -> Result<WorkSummary> {
        let mut summary = WorkSummary::default();
        while let Some(s) = self.work_one(store, job, consumer, deadline)? {
            summary.add(s);
        }
        Ok(summary)
    }

    /// Claims and processes at most one batch of `job`; `None` when there was nothing to do.
    fn work_one(
        &self,
        store: &mut Store,
        job: &str,
        consumer: &str,
        deadline: Option<Instant>,
    ) -> Result<Option<WorkSummary>> {
        let spec = self.spec(store, job)?;
        if let Some(deadline) = deadline
            && Instant::now() + Duration::from_millis(spec.batch_time_ms) > deadline
        {
            return Ok(None);
        }
        let keys = JobKeys::new(job);
        let claim = claim(store, &keys, consumer, spec.lease_ms)?;
        match claim {
            Claim::Batch {
                entry,
                batch,
                attempt,
                deliveries,
            } => {
                let summary = self
                    .process(
                        store,
                        &spec,
                        &keys,
                        &entry,
                        batch,
                        attempt.saturating_sub(1) + deliveries,
                    )
                    .with_context(|| format!("job {job}, batch {batch}"))?;
                Ok(Some(summary))
            }
            Claim::Empty => Ok(None),
            Claim::NotRunnable(state) => {
                tracing::debug!(job, state, "job not runnable");
                Ok(None)
            }
        }
    }

    fn spec(&self, store: &mut Store, job: &str) -> Result<Arc<JobSpec>> {
        if let Some(spec) = self
            .specs
            .lock()
            .map_err(|_| anyhow::anyhow!("spec cache poisoned"))?
            .get(job)
        {
            return Ok(Arc::clone(spec));
        }
        let spec = Arc::new(jobs::spec(store, job)?);
        self.specs
            .lock()
            .map_err(|_| anyhow::anyhow!("spec cache poisoned"))?
            .insert(job.to_string(), Arc::clone(&spec));
        Ok(spec)
    }

    /// The compiled pack of `spec`, compiled on first use and checked against its digest.
    fn pack(&self, spec: &JobSpec) -> Result<KernelPack> {
        let mut packs = self
            .packs
            .lock()
            .map_err(|_| anyhow::anyhow!("pack cache poisoned"))?;
        if let Some(pack) = packs.get(&spec.pack_digest) {
            return Ok(pack.clone());
        }
        let bytes = std::fs::read(&spec.pack_path)
            .with_context(|| format!("reading kernel pack {}", spec.pack_path))?;
        let digest = crate::pack::sha256_hex(&bytes);
        if digest != spec.pack_digest {
            bail!(
                "kernel pack {} has digest {digest}, but the job was submitted with {}",
                spec.pack_path,
                spec.pack_digest
            );
        }
        let pack = KernelPack::from_bytes(&self.engine, &bytes)
            .with_context(|| format!("loading kernel pack {}", spec.pack_path))?;
        packs.insert(digest, pack.clone());
        Ok(pack)
    }

    fn process(
        &self,
        store: &mut Store,
        spec: &JobSpec,
        keys: &JobKeys,
        entry: &str,
        batch: u64,
        attempts: u64,
    ) -> Result<WorkSummary> {
        let first_item = batch * spec.batch_size;
        let batch_items = spec
            .batch_size
            .min(spec.item_count.saturating_sub(first_item));
        if attempts > spec.max_deliveries {
            let last: Option<String> = store.run(|c| {
                redis::cmd("HGET")
                    .arg(keys.last_error())
                    .arg(batch)
                    .query(c)
            })?;
            let reason = last.unwrap_or_else(|| {
                format!(
                    "its worker was lost {attempts} times (claim lease of {} ms expired)",
                    spec.lease_ms
                )
            });
            return self.dead_letter(
                store,
                spec,
                keys,
                entry,
                batch,
                batch_items,
                attempts,
                &reason,
            );
        }
        let pack = match self.pack(spec) {
            Ok(pack) => pack,
            Err(e) => {
                let reason = format!("{e:#}");
                store.run(|c| {
                    redis::cmd("HSET")
                        .arg(keys.progress())
                        .arg("state")
                        .arg("failed")
                        .arg("error")
                        .arg(&reason)
                        .query::<()>(c)
                })?;
                bail!("job {} failed: {reason}", spec.job);
            }
        };
        let bytes: Option<Vec<u8>> =
            store.run(|c| redis::cmd("GET").arg(keys.input(batch)).query(c))?;
        let items = match bytes.map(|b| codec::decode_items(&b)) {
            Some(Ok(items)) => items,
            Some(Err(e)) => {
                let reason = format!("input of batch {batch} is malformed: {e:#}");
                return self.dead_letter(
                    store,
                    spec,
                    keys,
                    entry,
                    batch,
                    batch_items,
                    attempts,
                    &reason,
                );
            }
            None => {
                let reason = format!("input of batch {batch} is missing (expired or deleted)");
                return self.dead_letter(
                    store,
                    spec,
                    keys,
                    entry,
                    batch,
                    batch_items,
                    attempts,
                    &reason,
                );
            }
        };
        let job = Job {
            kernel: &spec.kernel,
            params: &spec.params,
            batch_time: Duration::from_millis(spec.batch_time_ms),
        };
        let outcome = run_batch(&pack, &job, batch as usize, &items);
        if let Some(error) = &outcome.error {
            let reason = format!("job {}: {error}", spec.job);
            tracing::warn!(job = %spec.job, batch, attempts, "{reason}");
            if attempts >= spec.max_deliveries {
                return self.dead_letter(
                    store,
                    spec,
                    keys,
                    entry,
                    batch,
                    items.len() as u64,
                    attempts,
                    &reason,
                );
            }
            let requeued: i64 = store.run(|c| {
                scripts::RETRY
                    .key(keys.queue())
                    .key(keys.last_error())
                    .arg(keys::GROUP)
                    .arg(entry)
                    .arg(batch)
                    .arg(attempts + 1)
                    .arg(&reason)
                    .arg(spec.ttl_seconds)
                    .invoke(c)
            })?;
            return Ok(WorkSummary {
                retried: requeued as u64,
                ..WorkSummary::default()
            });
        }
        self.complete(
            store,
            spec,
            keys,
            entry,
            batch,
            &outcome.results,
            "",
            attempts,
        )
    }

    #[allow(clippy::too_many_arguments)]
    fn dead_letter(
        &self,
        store: &mut Store,
        spec: &JobSpec,
        keys: &JobKeys,
        entry: &str,
        batch: u64,
        items: u64,
        attempts: u64,
        reason: &str,
    ) -> Result<WorkSummary> {
        tracing::error!(job = %spec.job, batch, attempts, "dead-lettered: {reason}");
        let headline = reason.lines().next().unwrap_or_default().to_string();
        let results: Vec<ItemResult> = vec![Err(ItemError::BatchFailed(headline)); items as usize];
        let mut summary =
            self.complete(store, spec, keys, entry, batch, &results, reason, attempts)?;
        summary.dead = summary.batches;
        Ok(summary)
    }

    #[allow(clippy::too_many_arguments)]
    fn complete(
        &self,
        store: &mut Store,
        spec: &JobSpec,
        keys: &JobKeys,
        entry: &str,
        batch: u64,
        results: &[ItemResult],
        dead_reason: &str,
        attempts: u64,
    ) -> Result<WorkSummary> {
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
                .arg(entry)
                .arg(&encoded)
                .arg(ok)
                .arg(failed)
                .arg(&errors)
                .arg(spec.ttl_seconds)
                .arg(keys::GROUP)
                .arg(dead_reason)
                .arg(attempts)
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
