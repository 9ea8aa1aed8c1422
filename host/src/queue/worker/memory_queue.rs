//! An in-memory [`Queue`] that keeps protocol v1's bookkeeping (entries and their deliveries,
//! the done set, counters, last errors, the dead-letter list) the way the Redis scripts do, for
//! unit tests of the batch lifecycle's arithmetic.

use std::collections::{HashMap, HashSet};

use anyhow::Result;

use crate::queue::store::queue::{Claim, ClaimedEntry, Completion, Queue};
use crate::queue::store::spec::JobState;

/// One queue entry.
#[derive(Clone, Debug)]
struct Entry {
    id: u64,
    batch: u64,
    first_delivery: u64,
    /// Pending under a consumer (claimed and not acknowledged).
    owner: Option<String>,
    deliveries: u64,
    /// Its claim's lease has expired: the next claim takes it over.
    lapsed: bool,
}

/// A dead-lettered batch.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct DeadBatch {
    pub batch: u64,
    pub deliveries: u64,
    pub error: String,
}

/// One job's queue and counters.
#[derive(Debug)]
pub(crate) struct MemoryQueue {
    next_id: u64,
    entries: Vec<Entry>,
    inputs: HashMap<u64, Vec<u8>>,
    batch_count: u64,
    pub state: JobState,
    pub done: HashSet<u64>,
    pub batches_done: u64,
    pub batches_dead: u64,
    pub items_ok: u64,
    pub items_failed: u64,
    pub last_errors: HashMap<u64, String>,
    pub dead: Vec<DeadBatch>,
}

impl MemoryQueue {
    /// A queued job whose batch B has input `inputs[B]`, one entry per batch.
    pub fn new(inputs: Vec<Vec<u8>>) -> Self {
        let mut queue = Self {
            next_id: 1,
            entries: Vec::new(),
            batch_count: inputs.len() as u64,
            inputs: inputs
                .into_iter()
                .enumerate()
                .map(|(b, i)| (b as u64, i))
                .collect(),
            state: JobState::Queued,
            done: HashSet::new(),
            batches_done: 0,
            batches_dead: 0,
            items_ok: 0,
            items_failed: 0,
            last_errors: HashMap::new(),
            dead: Vec::new(),
        };
        for b in 0..queue.batch_count {
            queue.add(b, 1);
        }
        queue
    }

    /// Every claim held now lapses, as when its worker dies and the lease runs out.
    pub fn lose_claims(&mut self) {
        for e in &mut self.entries {
            if e.owner.is_some() {
                e.lapsed = true;
            }
        }
    }

    /// Entries waiting or claimed.
    pub fn entries(&self) -> usize {
        self.entries.len()
    }

    fn add(&mut self, batch: u64, first_delivery: u64) {
        self.entries.push(Entry {
            id: self.next_id,
            batch,
            first_delivery,
            owner: None,
            deliveries: 0,
            lapsed: false,
        });
        self.next_id += 1;
    }

    /// Acknowledges and deletes entry `id`; whether it was pending.
    fn ack(&mut self, id: &str) -> bool {
        let Some(i) = self
            .entries
            .iter()
            .position(|e| e.id.to_string() == id && e.owner.is_some())
        else {
            return false;
        };
        self.entries.remove(i);
        true
    }
}

impl Queue for MemoryQueue {
    fn claim(&mut self, _job: &str, consumer: &str, _lease: u64, _request: &str) -> Result<Claim> {
        if !self.state.is_runnable() {
            return Ok(Claim::NotRunnable(Some(self.state)));
        }
        // A fresh entry first; else, as XAUTOCLAIM does, one whose claim has lapsed.
        let next = (self.entries.iter().position(|e| e.owner.is_none()))
            .or_else(|| self.entries.iter().position(|e| e.lapsed));
        let Some(i) = next else {
            return Ok(Claim::Empty);
        };
        let entry = &mut self.entries[i];
        entry.owner = Some(consumer.to_string());
        entry.deliveries += 1;
        entry.lapsed = false;
        let claimed = ClaimedEntry {
            entry: entry.id.to_string(),
            batch: entry.batch,
            first_delivery: entry.first_delivery,
            entry_deliveries: entry.deliveries,
        };
        self.state = JobState::Running;
        Ok(Claim::Batch(claimed))
    }

    fn input(&mut self, _job: &str, batch: u64) -> Result<Option<Vec<u8>>> {
        Ok(self.inputs.get(&batch).cloned())
    }

    fn last_error(&mut self, _job: &str, batch: u64) -> Result<Option<String>> {
        Ok(self.last_errors.get(&batch).cloned())
    }

    fn complete(&mut self, _job: &str, c: &Completion<'_>) -> Result<bool> {
        let counted = self.done.insert(c.batch);
        if counted {
            self.items_ok += c.items_ok;
            self.items_failed += c.items_failed;
            if c.dead_reason.is_empty() {
                self.batches_done += 1;
            } else {
                self.batches_dead += 1;
                self.dead.push(DeadBatch {
                    batch: c.batch,
                    deliveries: c.deliveries,
                    error: c.dead_reason.to_string(),
                });
            }
            self.last_errors.remove(&c.batch);
        }
        self.ack(c.entry);
        let running = self.state.is_runnable();
        if running && self.batches_done + self.batches_dead >= self.batch_count {
            let failures = self.items_failed > 0 || self.batches_dead > 0;
            self.state = if failures {
                JobState::DoneWithFailures
            } else {
                JobState::Done
            };
        }
        Ok(counted)
    }

    fn retry(
        &mut self,
        _job: &str,
        entry: &str,
        batch: u64,
        first_delivery: u64,
        reason: &str,
        _ttl: u64,
    ) -> Result<bool> {
        if !self.ack(entry) {
            return Ok(false);
        }
        self.add(batch, first_delivery);
        self.last_errors.insert(batch, reason.to_string());
        Ok(true)
    }

    fn release(
        &mut self,
        _job: &str,
        entry: &str,
        batch: u64,
        first_delivery: u64,
    ) -> Result<bool> {
        if !self.ack(entry) {
            return Ok(false);
        }
        self.add(batch, first_delivery);
        Ok(true)
    }

    fn fail_job(&mut self, _job: &str, _reason: &str) -> Result<()> {
        if self.state.is_runnable() {
            self.state = JobState::Failed;
        }
        Ok(())
    }
}
