//! `crunch report`: a job's figures from Redis (its spec and plan, progress, per-batch records,
//! failed items and dead letters): the timeline of batches per worker, throughput over time,
//! where the loops' time went, and the plan beside what happened. [`html`] writes them as one
//! self-contained page.

pub mod html;

use std::collections::{BTreeMap, HashMap};

use anyhow::{Context, Result};
use serde::Serialize;

use crate::plan::SpecPlan;
use crate::queue::jobs::{self, FailedItem};
use crate::queue::store::Redis;
use crate::queue::store::keys::JobKeys;
use crate::queue::store::records::{self, BatchRecord, Outcome};
use crate::queue::store::spec::JobState;

/// Failed items listed in a report (all are counted).
pub const LISTED_FAILURES: usize = 100;

/// Points of the throughput curve.
const THROUGHPUT_POINTS: usize = 40;

/// Everything a report shows.
#[derive(Clone, Debug, Serialize)]
pub struct JobReport {
    /// The job id.
    pub job: String,
    /// The kernel.
    pub kernel: String,
    /// Its state.
    pub state: JobState,
    /// Why it failed, if it did.
    pub error: Option<String>,
    /// Items in the job.
    pub items: u64,
    /// Items with a result.
    pub items_ok: u64,
    /// Items that failed.
    pub items_failed: u64,
    /// Batches in the job.
    pub batch_count: u64,
    /// Items per batch.
    pub batch_size: u64,
    /// Batches whose results are stored.
    pub batches_done: u64,
    /// Batches dead-lettered.
    pub batches_dead: u64,
    /// Claims taken over after a lost worker.
    pub reclaims: u64,
    /// First claim, ms since the Unix epoch.
    pub started_ms: Option<u64>,
    /// Last completion, ms since the Unix epoch.
    pub finished_ms: Option<u64>,
    /// From the first claim to the last completion (or the last record), seconds.
    pub wall_s: f64,
    /// Items per second over the wall time.
    pub items_per_s: f64,
    /// The records' own totals, to set beside the progress counters.
    pub recorded: Totals,
    /// Each claim loop's figures.
    pub workers: Vec<WorkerFigures>,
    /// Where the loops' time went, summed over all loops.
    pub time: TimeShares,
    /// Items per second over time: (seconds since the start, items/s).
    pub throughput: Vec<(f64, f64)>,
    /// Mean kernel time of a full batch, ms.
    pub mean_batch_kernel_ms: f64,
    /// The plan the job followed, if it had one.
    pub plan: Option<SpecPlan>,
    /// Every batch record, oldest first.
    pub records: Vec<BatchRecord>,
    /// Failed items (the first [`LISTED_FAILURES`]).
    pub failed_items: Vec<FailedItem>,
    /// Failed items in all.
    pub failed_item_count: usize,
    /// Dead-lettered batches.
    pub dead_letters: Vec<DeadLetterFigure>,
}

/// Totals over the batch records.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize)]
pub struct Totals {
    /// Batch runs recorded.
    pub runs: u64,
    /// Runs whose results were stored (`done` or `dead`).
    pub stored: u64,
    /// Items ok over the stored runs.
    pub items_ok: u64,
    /// Items failed over the stored runs.
    pub items_failed: u64,
}

/// Where a claim loop's share of the job's wall time went, ms: the four add up to the wall
/// time.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize)]
pub struct TimeShares {
    /// Waiting for the next batch's input (claim, read, decode: the prefetch thread's work).
    pub fetch_ms: f64,
    /// In kernels.
    pub kernel_ms: f64,
    /// Waiting for the last batch's results to be stored.
    pub store_ms: f64,
    /// Nothing of the loop's own under way (nothing to claim, or before its first claim).
    pub idle_ms: f64,
}

/// One claim loop's figures.
#[derive(Clone, Debug, Default, Serialize)]
pub struct WorkerFigures {
    /// The consumer name.
    pub worker: String,
    /// Batch runs.
    pub runs: u64,
    /// Items with a result.
    pub items_ok: u64,
    /// Items that failed.
    pub items_failed: u64,
    /// Its share of the wall time.
    pub time: TimeShares,
    /// Fetching, all told (mostly beside the kernels, on the prefetch thread), ms.
    pub fetch_busy_ms: f64,
    /// Storing, all told (mostly beside the kernels, on the store thread), ms.
    pub store_busy_ms: f64,
}

/// A dead-lettered batch.
#[derive(Clone, Debug, Serialize)]
pub struct DeadLetterFigure {
    /// The batch.
    pub batch: u64,
    /// Deliveries it had.
    pub deliveries: u64,
    /// Its error.
    pub error: String,
}

/// Reads `job`'s figures from Redis.
pub fn gather(store: &mut Redis, job: &str) -> Result<JobReport> {
    let spec = jobs::spec(store, job)?;
    let progress = jobs::progress(store, job)?;
    let fields: HashMap<String, String> = store.run(|c| {
        redis::cmd("HGETALL")
            .arg(JobKeys::new(job).progress())
            .query(c)
    })?;
    let number = |k: &str| fields.get(k).and_then(|v| v.parse::<u64>().ok());
    let records = records::read(store, job)?;
    let failed = jobs::failed_items(store, job)?;
    let dead = jobs::dead_letters(store, job)?;
    let plan = spec
        .plan
        .as_deref()
        .map(serde_json::from_str::<SpecPlan>)
        .transpose()
        .with_context(|| format!("reading the plan in the spec of job {job}"))?;

    let first = records.iter().map(|r| r.claimed_ms).min();
    let last = records.iter().map(|r| r.finished_ms).max();
    // Redis's clock marks the first claim and the last completion, the workers' clocks their
    // records (to the ms): the span covers both.
    let started_ms = [number("started_ms"), first].into_iter().flatten().min();
    let finished_ms = number("finished_ms");
    let kernels_end = records
        .iter()
        .map(|r| r.started_ms + r.kernel_ms.ceil() as u64)
        .max();
    let end = [finished_ms, last, kernels_end].into_iter().flatten().max();
    let wall_s = match (started_ms, end) {
        (Some(s), Some(e)) if e > s => (e - s) as f64 / 1e3,
        _ => 0.0,
    };
    let done = progress.items_ok + progress.items_failed;
    let full: Vec<&BatchRecord> = records
        .iter()
        .filter(|r| r.outcome == Outcome::Done && r.items_ok + r.items_failed == spec.batch_size)
        .collect();
    let mean_batch_kernel_ms = match full.len() {
        0 => 0.0,
        n => full.iter().map(|r| r.kernel_ms).sum::<f64>() / n as f64,
    };
    let workers = per_worker(&records, started_ms.unwrap_or(0), wall_s * 1e3);
    let mut time = TimeShares::default();
    for w in &workers {
        time.fetch_ms += w.time.fetch_ms;
        time.kernel_ms += w.time.kernel_ms;
        time.store_ms += w.time.store_ms;
        time.idle_ms += w.time.idle_ms;
    }
    Ok(JobReport {
        job: job.to_string(),
        kernel: spec.kernel.clone(),
        state: progress.state,
        error: progress.error.clone(),
        items: spec.item_count,
        items_ok: progress.items_ok,
        items_failed: progress.items_failed,
        batch_count: spec.batch_count,
        batch_size: spec.batch_size,
        batches_done: progress.batches_done,
        batches_dead: progress.batches_dead,
        reclaims: number("reclaims").unwrap_or(0),
        started_ms,
        finished_ms,
        wall_s,
        items_per_s: if wall_s > 0.0 {
            done as f64 / wall_s
        } else {
            0.0
        },
        recorded: totals(&records),
        workers,
        time,
        throughput: started_ms.map_or_else(Vec::new, |s| throughput(&records, s, wall_s)),
        mean_batch_kernel_ms,
        plan,
        failed_item_count: failed.len(),
        failed_items: failed.into_iter().take(LISTED_FAILURES).collect(),
        dead_letters: dead
            .into_iter()
            .map(|d| DeadLetterFigure {
                batch: d.batch,
                deliveries: d.deliveries,
                error: d.error,
            })
            .collect(),
        records,
    })
}

fn totals(records: &[BatchRecord]) -> Totals {
    let mut t = Totals::default();
    for r in records {
        t.runs += 1;
        if r.outcome.stored() {
            t.stored += 1;
            t.items_ok += r.items_ok;
            t.items_failed += r.items_failed;
        }
    }
    t
}

/// Each loop's share of the job's wall time, from its records: time in kernels, and each gap
/// between kernels split into waiting for the next batch's input (its fetch was under way),
/// waiting for the last batch's results to be stored, and idle (nothing of its own under way).
fn per_worker(records: &[BatchRecord], start_ms: u64, wall_ms: f64) -> Vec<WorkerFigures> {
    let mut by: BTreeMap<&str, Vec<&BatchRecord>> = BTreeMap::new();
    for r in records {
        by.entry(&r.worker).or_default().push(r);
    }
    by.into_iter()
        .map(|(worker, mut runs)| {
            runs.sort_by_key(|r| (r.started_ms, r.claimed_ms));
            let at = |ms: u64| ms.saturating_sub(start_ms) as f64;
            let mut w = WorkerFigures {
                worker: worker.to_string(),
                ..WorkerFigures::default()
            };
            let mut free_from = 0.0;
            let mut storing = (0.0, 0.0);
            for r in &runs {
                w.runs += 1;
                w.items_ok += r.items_ok;
                w.items_failed += r.items_failed;
                w.fetch_busy_ms += r.fetch_ms;
                w.store_busy_ms += r.store_ms;
                w.time.kernel_ms += r.kernel_ms;
                let start = at(r.started_ms).max(free_from);
                let fetching = (at(r.claimed_ms), at(r.claimed_ms) + r.fetch_ms);
                split_gap(&mut w.time, (free_from, start), fetching, storing);
                free_from = start + r.kernel_ms;
                storing = (free_from, at(r.finished_ms).max(free_from));
            }
            let end = wall_ms.max(free_from);
            split_gap(&mut w.time, (free_from, end), (0.0, 0.0), storing);
            w
        })
        .collect()
}

/// Adds a gap between kernels to `time`: the part the fetch covered, then the part the store
/// covered, the rest idle.
fn split_gap(time: &mut TimeShares, gap: (f64, f64), fetching: (f64, f64), storing: (f64, f64)) {
    let overlap = |a: (f64, f64), b: (f64, f64)| (a.1.min(b.1) - a.0.max(b.0)).max(0.0);
    let length = (gap.1 - gap.0).max(0.0);
    let fetch = overlap(gap, fetching).min(length);
    let store = overlap(gap, storing).min(length - fetch);
    time.fetch_ms += fetch;
    time.store_ms += store;
    time.idle_ms += length - fetch - store;
}

/// Items per second in equal steps of the wall time, each batch's items spread over its
/// kernel's run.
fn throughput(records: &[BatchRecord], start_ms: u64, wall_s: f64) -> Vec<(f64, f64)> {
    if wall_s <= 0.0 {
        return Vec::new();
    }
    let step = wall_s / THROUGHPUT_POINTS as f64;
    let mut items = vec![0.0; THROUGHPUT_POINTS];
    for r in records.iter().filter(|r| r.outcome.stored()) {
        let from = r.started_ms.saturating_sub(start_ms) as f64 / 1e3;
        let to = from + (r.kernel_ms / 1e3).max(1e-6);
        let n = (r.items_ok + r.items_failed) as f64;
        for (i, slot) in items.iter_mut().enumerate() {
            let (a, b) = (i as f64 * step, (i + 1) as f64 * step);
            let overlap = (to.min(b) - from.max(a)).max(0.0);
            *slot += n * overlap / (to - from);
        }
    }
    items
        .into_iter()
        .enumerate()
        .map(|(i, n)| ((i as f64 + 0.5) * step, n / step))
        .collect()
}
