//! The worker's side of protocol v1 behind a small interface, [`Queue`]: claim a batch, read its
//! input and last error, then complete, retry or release it, or fail its job. [`Redis`]
//! implements it with the atomic scripts of [`scripts`](super::scripts); the worker's batch
//! lifecycle is written against the interface, so that its retry and dead-letter arithmetic can
//! be tested against an in-memory queue.

use anyhow::{Context, Result, bail};

use super::Redis;
use super::keys::{self, JobKeys};
use super::scripts;
use super::spec::JobState;

/// What a claim found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Claim {
    /// A batch to run.
    Batch(ClaimedEntry),
    /// Nothing claimable right now.
    Empty,
    /// The job is not runnable: its state (finished, cancelled, failed), or `None` when its
    /// progress no longer exists (expired or deleted).
    NotRunnable(Option<JobState>),
}

/// A queue entry claimed by a worker.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClaimedEntry {
    /// The stream entry id.
    pub entry: String,
    /// The batch it names.
    pub batch: u64,
    /// The delivery this entry starts at: its `attempt` stream field (1 for a batch never
    /// retried).
    pub first_delivery: u64,
    /// Times this entry has been delivered, this one included.
    pub entry_deliveries: u64,
}

impl ClaimedEntry {
    /// Deliveries of the batch so far, this one included: entries added by a retry carry on
    /// the count of the ones before them.
    pub fn deliveries(&self) -> u64 {
        self.first_delivery.saturating_sub(1) + self.entry_deliveries
    }
}

/// What a completion stores.
#[derive(Clone, Copy, Debug)]
pub struct Completion<'a> {
    /// The batch.
    pub batch: u64,
    /// Its queue entry, acknowledged and deleted.
    pub entry: &'a str,
    /// The results, in Crunch binary.
    pub results: &'a [u8],
    /// Items with a result.
    pub items_ok: u64,
    /// Items that failed.
    pub items_failed: u64,
    /// The failed items as JSON, or empty.
    pub errors: &'a str,
    /// Why the batch is dead-lettered, or empty.
    pub dead_reason: &'a str,
    /// Deliveries it had.
    pub deliveries: u64,
    /// Lifetime of the keys it writes.
    pub ttl_seconds: u64,
}

/// The protocol's queue operations on one job's keys. Each is atomic and safe to repeat after a
/// lost reply.
pub trait Queue {
    /// Claims one batch of `job` for `consumer`. `request` names this claim: repeating a claim
    /// with the same request (after a lost reply) returns the batch it claimed the first time
    /// instead of claiming another.
    fn claim(&mut self, job: &str, consumer: &str, lease_ms: u64, request: &str) -> Result<Claim>;

    /// The input of `batch`, if it still exists.
    fn input(&mut self, job: &str, batch: u64) -> Result<Option<Vec<u8>>>;

    /// The last batch-level error recorded for `batch` while it was being retried.
    fn last_error(&mut self, job: &str, batch: u64) -> Result<Option<String>>;

    /// Stores results, counts them once, acknowledges the entry and finishes the job when every
    /// batch is accounted for. Returns whether the batch was counted now (false: already was).
    fn complete(&mut self, job: &str, completion: &Completion<'_>) -> Result<bool>;

    /// Puts `batch` back as a new entry that starts at delivery `first_delivery`, recording
    /// `reason`, if `entry` is still this worker's. Returns whether it was requeued.
    fn retry(
        &mut self,
        job: &str,
        entry: &str,
        batch: u64,
        first_delivery: u64,
        reason: &str,
        ttl_seconds: u64,
    ) -> Result<bool>;

    /// Hands `batch` back unrun: a new entry that starts at delivery `first_delivery`, the
    /// deliveries so far (this one included), so that this delivery does not count, if `entry`
    /// is still this worker's. Returns whether it was requeued.
    fn release(&mut self, job: &str, entry: &str, batch: u64, first_delivery: u64) -> Result<bool>;

    /// Marks `job` failed with `reason` (the worker cannot run it at all), unless it has
    /// finished meanwhile.
    fn fail_job(&mut self, job: &str, reason: &str) -> Result<()>;
}

/// A batch's input longer than this is read in parts of this size, the first with its length
/// and the others then in one round trip: a reply of many MiB makes the client grow a buffer for
/// it and copy it out, in fresh pages each time, where parts of a few MiB reuse the same memory
/// from batch to batch. A job of 20 batches of 51 MB (describe, 6400 items of 1000 values), one
/// worker thread: 2.2-2.5 s to 1.5-1.8 s.
const INPUT_PART: usize = 4 << 20;

impl Queue for Redis {
    fn claim(&mut self, job: &str, consumer: &str, lease_ms: u64, request: &str) -> Result<Claim> {
        let keys = JobKeys::new(job);
        let reply: Option<Vec<String>> = self.run(|c| {
            scripts::CLAIM
                .key(keys.progress())
                .key(keys.queue())
                .key(keys.claims())
                .arg(keys::GROUP)
                .arg(consumer)
                .arg(lease_ms)
                .arg(request)
                .invoke(c)
        })?;
        let Some(reply) = reply else {
            return Ok(Claim::Empty);
        };
        match reply.as_slice() {
            [kind, state] if kind == "state" => Ok(Claim::NotRunnable(wire_state(state))),
            [kind, entry, batch, attempt, deliveries] if kind == "claim" => {
                Ok(Claim::Batch(ClaimedEntry {
                    entry: entry.clone(),
                    batch: batch
                        .parse()
                        .with_context(|| format!("queue entry {entry} has batch {batch:?}"))?,
                    first_delivery: attempt.parse().unwrap_or(1),
                    entry_deliveries: deliveries.parse().unwrap_or(1),
                }))
            }
            other => bail!("unexpected claim reply {other:?}"),
        }
    }

    fn input(&mut self, job: &str, batch: u64) -> Result<Option<Vec<u8>>> {
        let key = JobKeys::new(job).input(batch);
        // Whether it is there, its length and its first part, in one round trip.
        let mut first = redis::pipe();
        first
            .exists(&key)
            .strlen(&key)
            .getrange(&key, 0, INPUT_PART as isize - 1);
        let (exists, len, mut bytes): (bool, usize, Vec<u8>) = self.pipeline(&first)?;
        if !exists || bytes.len() == len {
            return Ok(exists.then_some(bytes));
        }
        let mut rest = redis::pipe();
        for start in (bytes.len()..len).step_by(INPUT_PART) {
            let end = (start + INPUT_PART).min(len) - 1;
            rest.getrange(&key, start as isize, end as isize);
        }
        let parts: Vec<Vec<u8>> = self.pipeline(&rest)?;
        let mut whole = Vec::with_capacity(len);
        crate::process::memory::prefer_huge_pages(whole.spare_capacity_mut());
        whole.append(&mut bytes);
        for part in &parts {
            whole.extend_from_slice(part);
        }
        // Shorter: the key expired or was deleted while it was read.
        Ok((whole.len() == len).then_some(whole))
    }

    fn last_error(&mut self, job: &str, batch: u64) -> Result<Option<String>> {
        let key = JobKeys::new(job).last_error();
        self.run(|c| redis::cmd("HGET").arg(&key).arg(batch).query(c))
    }

    fn complete(&mut self, job: &str, done: &Completion<'_>) -> Result<bool> {
        let keys = JobKeys::new(job);
        let counted: i64 = self.run(|c| {
            scripts::COMPLETE
                .key(keys.progress())
                .key(keys.done())
                .key(keys.output(done.batch))
                .key(keys.errors())
                .key(keys.queue())
                .key(keys.dead())
                .key(keys.last_error())
                .arg(done.batch)
                .arg(done.entry)
                .arg(done.results)
                .arg(done.items_ok)
                .arg(done.items_failed)
                .arg(done.errors)
                .arg(done.ttl_seconds)
                .arg(keys::GROUP)
                .arg(done.dead_reason)
                .arg(done.deliveries)
                .invoke(c)
        })?;
        Ok(counted == 1)
    }

    fn retry(
        &mut self,
        job: &str,
        entry: &str,
        batch: u64,
        first_delivery: u64,
        reason: &str,
        ttl_seconds: u64,
    ) -> Result<bool> {
        let keys = JobKeys::new(job);
        let requeued: i64 = self.run(|c| {
            scripts::RETRY
                .key(keys.queue())
                .key(keys.last_error())
                .arg(keys::GROUP)
                .arg(entry)
                .arg(batch)
                .arg(first_delivery)
                .arg(reason)
                .arg(ttl_seconds)
                .invoke(c)
        })?;
        Ok(requeued == 1)
    }

    fn release(&mut self, job: &str, entry: &str, batch: u64, first_delivery: u64) -> Result<bool> {
        // A retry with no error; the TTL is for the error, so unused.
        self.retry(job, entry, batch, first_delivery, "", 1)
    }

    fn fail_job(&mut self, job: &str, reason: &str) -> Result<()> {
        end_job(self, job, JobState::Failed, reason, false).map(drop)
    }
}

/// Ends `job` with a final `state` (cancelled, failed) and `error` unless it has finished
/// already, in one step (script `END`); with `drop_queue`, also deletes its queue. Returns the
/// state afterwards (`None` when the job does not exist).
pub fn end_job(
    store: &mut Redis,
    job: &str,
    state: JobState,
    error: &str,
    drop_queue: bool,
) -> Result<Option<JobState>> {
    let keys = JobKeys::new(job);
    let after: String = store.run(|c| {
        scripts::END
            .key(keys.progress())
            .key(keys.queue())
            .arg(state.as_str())
            .arg(error)
            .arg(u8::from(drop_queue))
            .invoke(c)
    })?;
    Ok(wire_state(&after))
}

/// A state as the scripts answer it: [`scripts::GONE`] when the job's progress does not exist.
fn wire_state(text: &str) -> Option<JobState> {
    (text != scripts::GONE).then(|| JobState::parse(text))
}
