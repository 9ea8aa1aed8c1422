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

/// What came of one batch run, spelled one way in the record, the report and JSON.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Outcome {
    /// Its results are stored.
    Done,
    /// Dead-lettered: every item failed with the batch's error.
    Dead,
    /// Failed as a whole and put back for another delivery.
    Retried,
    /// Handed back unrun.
    Released,
    /// Its results were already stored by another worker.
    Repeat,
    /// A record this version cannot read.
    #[default]
    Unknown,
}

impl Outcome {
    /// Every outcome.
    pub const ALL: [Self; 6] = [
        Self::Done,
        Self::Dead,
        Self::Retried,
        Self::Released,
        Self::Repeat,
        Self::Unknown,
    ];

    /// The outcome's one spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Done => "done",
            Self::Dead => "dead",
            Self::Retried => "retried",
            Self::Released => "released",
            Self::Repeat => "repeat",
            Self::Unknown => "unknown",
        }
    }

    /// The outcome spelled `text`; [`Unknown`](Self::Unknown) for any other text.
    pub fn parse(text: &str) -> Self {
        Self::ALL
            .into_iter()
            .find(|o| o.as_str() == text)
            .unwrap_or(Self::Unknown)
    }

    /// Whether the batch's results were stored by this run (done or dead-lettered).
    pub fn stored(self) -> bool {
        matches!(self, Self::Done | Self::Dead)
    }
}

/// One batch run, as its worker saw it.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct BatchRecord {
    /// The claim loop (the consumer name in the queue's group).
    pub worker: String,
    /// The batch.
    pub batch: u64,
    /// Deliveries of the batch so far, this one included.
    pub deliveries: u64,
    /// What came of it.
    pub outcome: Outcome,
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
            ("outcome", self.outcome.as_str().to_string()),
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
            outcome: Outcome::parse(&text("outcome")),
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
