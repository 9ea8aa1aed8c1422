//! Per-batch records: one small entry per batch a worker ran (who, when, where its time went,
//! what came of it) in the stream `crunch:{JOB}:batches`, capped at about [`MAX_RECORDS`]
//! entries and living as long as the job's other keys. `crunch report` reads them.

use std::collections::HashMap;

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};

use super::Redis;
use super::keys::JobKeys;

/// The stream keeps about this many records (the oldest go first): a few MB at most.
pub const MAX_RECORDS: u64 = 100_000;

/// Records read per round trip.
const READ_CHUNK: usize = 10_000;

/// One batch run, as its worker saw it.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct BatchRecord {
    /// The claim loop (the consumer name in the queue's group).
    pub worker: String,
    /// The batch.
    pub batch: u64,
    /// Deliveries of the batch so far, this one included.
    pub deliveries: u64,
    /// `done`, `dead` (dead-lettered), `retried`, `released` (handed back), or `repeat` (its
    /// results were already stored by another worker).
    pub outcome: String,
    /// When the claim was asked for, ms since the Unix epoch.
    pub claimed_ms: u64,
    /// When its kernel started, ms since the Unix epoch.
    pub started_ms: u64,
    /// When its results were stored, ms since the Unix epoch.
    pub finished_ms: u64,
    /// Claiming it and reading and decoding its input (and loading the pack), ms.
    pub fetch_ms: f64,
    /// Instantiating and running the kernel, ms.
    pub kernel_ms: f64,
    /// Encoding and storing its results, ms.
    pub store_ms: f64,
    /// Items with a result.
    pub items_ok: u64,
    /// Items that failed.
    pub items_failed: u64,
}

impl BatchRecord {
    fn to_fields(&self) -> Vec<(&'static str, String)> {
        vec![
            ("worker", self.worker.clone()),
            ("batch", self.batch.to_string()),
            ("deliveries", self.deliveries.to_string()),
            ("outcome", self.outcome.clone()),
            ("claimed_ms", self.claimed_ms.to_string()),
            ("started_ms", self.started_ms.to_string()),
            ("finished_ms", self.finished_ms.to_string()),
            ("fetch_ms", format!("{:.3}", self.fetch_ms)),
            ("kernel_ms", format!("{:.3}", self.kernel_ms)),
            ("store_ms", format!("{:.3}", self.store_ms)),
            ("items_ok", self.items_ok.to_string()),
            ("items_failed", self.items_failed.to_string()),
        ]
    }

    /// A record from its stream fields; a missing or unreadable number reads as 0.
    pub fn from_fields(f: &HashMap<String, String>) -> Self {
        let text = |k: &str| f.get(k).cloned().unwrap_or_default();
        let int = |k: &str| f.get(k).and_then(|v| v.parse().ok()).unwrap_or(0);
        let real = |k: &str| f.get(k).and_then(|v| v.parse().ok()).unwrap_or(0.0);
        Self {
            worker: text("worker"),
            batch: int("batch"),
            deliveries: int("deliveries"),
            outcome: text("outcome"),
            claimed_ms: int("claimed_ms"),
            started_ms: int("started_ms"),
            finished_ms: int("finished_ms"),
            fetch_ms: real("fetch_ms"),
            kernel_ms: real("kernel_ms"),
            store_ms: real("store_ms"),
            items_ok: int("items_ok"),
            items_failed: int("items_failed"),
        }
    }
}

/// Appends `record` to `job`'s stream (capped) and sets the stream's TTL.
pub fn append(store: &mut Redis, job: &str, record: &BatchRecord, ttl_seconds: u64) -> Result<()> {
    let key = JobKeys::new(job).batches();
    let mut pipe = redis::pipe();
    pipe.cmd("XADD")
        .arg(&key)
        .arg("MAXLEN")
        .arg("~")
        .arg(MAX_RECORDS)
        .arg("*");
    for (k, v) in record.to_fields() {
        pipe.arg(k).arg(v);
    }
    pipe.ignore()
        .expire(&key, ttl_seconds.min(i64::MAX as u64) as i64)
        .ignore();
    store
        .pipeline::<()>(&pipe)
        .with_context(|| format!("recording batch {} of job {job}", record.batch))
}

/// Every record of `job` still in its stream, oldest first.
pub fn read(store: &mut Redis, job: &str) -> Result<Vec<BatchRecord>> {
    let key = JobKeys::new(job).batches();
    let mut records = Vec::new();
    let mut from = "-".to_string();
    loop {
        let entries: Vec<(String, HashMap<String, String>)> = store.run(|c| {
            redis::cmd("XRANGE")
                .arg(&key)
                .arg(&from)
                .arg("+")
                .arg("COUNT")
                .arg(READ_CHUNK)
                .query(c)
        })?;
        let Some((last, _)) = entries.last() else {
            break;
        };
        from = format!("({last}");
        let full = entries.len() == READ_CHUNK;
        records.extend(entries.iter().map(|(_, f)| BatchRecord::from_fields(f)));
        if !full {
            break;
        }
    }
    Ok(records)
}
