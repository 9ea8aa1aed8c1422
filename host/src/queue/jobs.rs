//! The client side of protocol v1: submit a job to Redis, follow its progress, gather its
//! results in input order, list and cancel jobs.

use std::collections::HashMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result, bail, ensure};
use serde::{Deserialize, Serialize};

use crate::data::codec;
use crate::data::types::{Item, Tensor};
use crate::data::wire;
use crate::plan::SpecPlan;
use crate::plan::sizing::{self, Sizing, Venue};
use crate::queue::store::keys::{self, JobKeys};
use crate::queue::store::spec::{JobSpec, JobState, Progress};
use crate::queue::store::{Redis, queue, scripts};
use crate::sandbox::batch;
use crate::sandbox::engine::Limits;
use crate::sandbox::pack::KernelPack;

/// Batches written per pipeline round trip at submit.
const PIPELINE_CHUNK: usize = 64;

/// How a job is cut into batches and how it is run.
#[derive(Clone, Debug)]
pub struct SubmitOptions {
    /// Kernel name.
    pub kernel: String,
    /// Kernel parameters.
    pub params: Vec<(String, Tensor)>,
    /// Path of the pack, which workers must be able to read.
    pub pack_path: String,
    /// Items per batch; `None` picks one (see [`auto_batch_size`]).
    pub batch_size: Option<usize>,
    /// Lifetime of every key of the job.
    pub ttl: Duration,
    /// Deliveries after which a failing batch is dead-lettered.
    pub max_deliveries: u64,
    /// Time limit of one batch.
    pub batch_time: Duration,
    /// Idle time after which another worker takes a claim over; default twice the batch
    /// time limit plus 10 s.
    pub lease: Option<Duration>,
}

/// The batch size of a queued job when nothing was measured, by the one policy of
/// [`plan::sizing`](crate::plan::sizing): about 256 batches, each of 64 to 8192 items (fewer
/// when there are fewer items), and no more than fit a worker's default memory limit (see
/// [`batch::items_within_memory`]) or move more than [`sizing::MAX_QUEUED_BATCH_BYTES`] of
/// input. `crunch submit --batch-size auto` measures instead.
pub fn auto_batch_size(items: &[Item]) -> usize {
    sizing::batch_size(&Sizing {
        items: items.len(),
        loops: Venue::Queue.default_loops(1),
        memory_cap: batch::items_within_memory(items, Limits::default().memory_bytes),
        cost: None,
        item_bytes: batch::input_bytes_per_item(items),
        venue: Venue::Queue,
    })
}

/// A new job id: the creation time in ms (hex, so ids sort by age) and 32 random bits.
pub fn new_job_id() -> String {
    use std::hash::{BuildHasher, Hasher};
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_u128(now_ms() as u128 ^ u128::from(std::process::id()));
    format!("{:011x}{:08x}", now_ms(), hasher.finish() as u32)
}

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// Writes the spec, the input batches and the queue entries, then marks the job queued.
pub fn submit(
    store: &mut Redis,
    pack: &KernelPack,
    items: &[Item],
    opts: &SubmitOptions,
) -> Result<JobSpec> {
    submit_planned(store, pack, items, opts, None)
}

/// Submits like [`submit`]; with `plan`, in batches of the plan's size, and the spec records
/// the plan (field `plan`).
pub fn submit_planned(
    store: &mut Redis,
    pack: &KernelPack,
    items: &[Item],
    opts: &SubmitOptions,
    plan: Option<&SpecPlan>,
) -> Result<JobSpec> {
    ensure!(!items.is_empty(), "the input holds no items");
    ensure!(
        pack.has_kernel(&opts.kernel),
        "the pack has no kernel `{}` (it has: {})",
        opts.kernel,
        pack.kernels()
            .iter()
            .map(|k| k.name.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    );
    let batch_size = plan
        .map(|p| p.estimate.batch_size)
        .or(opts.batch_size)
        .unwrap_or_else(|| auto_batch_size(items))
        .max(1);
    let job = new_job_id();
    let keys = JobKeys::new(&job);
    // Redis takes a TTL as a signed number: a larger one would read as negative and delete.
    let ttl = opts.ttl.as_secs().clamp(1, i64::MAX as u64 / 1000);
    let lease = opts.lease.unwrap_or(
        opts.batch_time
            .saturating_mul(2)
            .saturating_add(Duration::from_secs(10)),
    );
    let spec = JobSpec {
        job: job.clone(),
        kernel: opts.kernel.clone(),
        pack_digest: pack.digest().to_string(),
        pack_path: opts.pack_path.clone(),
        params: opts.params.clone(),
        batch_count: items.len().div_ceil(batch_size) as u64,
        item_count: items.len() as u64,
        batch_size: batch_size as u64,
        ttl_seconds: ttl,
        max_deliveries: opts.max_deliveries.max(1),
        batch_time_ms: opts.batch_time.as_millis() as u64,
        lease_ms: lease.as_millis() as u64,
        created_ms: now_ms(),
        plan: plan.map(serde_json::to_string).transpose()?,
    };
    let fields = spec.to_fields()?;
    let mut pipe = redis::pipe();
    pipe.hset_multiple(keys.spec(), &fields)
        .ignore()
        .expire(keys.spec(), ttl as i64)
        .ignore()
        .hset_multiple(
            keys.progress(),
            &[
                ("state", JobState::Submitting.as_str().to_string()),
                ("batch_count", spec.batch_count.to_string()),
                ("item_count", spec.item_count.to_string()),
                ("batches_done", "0".into()),
                ("batches_dead", "0".into()),
                ("items_ok", "0".into()),
                ("items_failed", "0".into()),
            ],
        )
        .ignore()
        .expire(keys.progress(), ttl as i64)
        .ignore()
        .cmd("XGROUP")
        .arg("CREATE")
        .arg(keys.queue())
        .arg(keys::GROUP)
        .arg("0")
        .arg("MKSTREAM")
        .ignore()
        .expire(keys.queue(), ttl as i64)
        .ignore();
    let url = store.url().to_string();
    store
        .pipeline::<()>(&pipe)
        .with_context(|| format!("writing job {job} to {url}"))?;
    let batches: Vec<&[Item]> = items.chunks(batch_size).collect();
    for (chunk_index, chunk) in batches.chunks(PIPELINE_CHUNK).enumerate() {
        let encoded: Vec<(u64, Vec<u8>)> = chunk
            .iter()
            .enumerate()
            .map(|(i, batch)| {
                (
                    (chunk_index * PIPELINE_CHUNK + i) as u64,
                    codec::encode_items(batch),
                )
            })
            .collect();
        let mut pipe = redis::pipe();
        for (b, bytes) in &encoded {
            pipe.set_ex(keys.input(*b), bytes, ttl).ignore();
        }
        store
            .pipeline::<()>(&pipe)
            .with_context(|| format!("writing the batches of job {job}"))?;
        // Queue entries with explicit ids, so that a retry after a lost reply adds none twice.
        let (first, last) = (encoded[0].0, encoded[encoded.len() - 1].0);
        store
            .run(|c| {
                scripts::ENQUEUE
                    .key(keys.queue())
                    .arg(first)
                    .arg(last)
                    .invoke::<()>(c)
            })
            .with_context(|| format!("queueing the batches of job {job}"))?;
    }
    store.run(|c| {
        redis::cmd("HSET")
            .arg(keys.progress())
            .arg("state")
            .arg(JobState::Queued.as_str())
            .query::<()>(c)
    })?;
    store.run(|c| {
        redis::cmd("ZADD")
            .arg(keys::JOBS)
            .arg(spec.created_ms)
            .arg(&job)
            .query::<()>(c)
    })?;
    Ok(spec)
}

/// A job that Redis does not hold: never submitted there, or expired with its TTL.
#[derive(Clone, Debug, thiserror::Error)]
#[error("no job `{job}` in {url} (unknown, or expired with its TTL)")]
pub struct JobNotFound {
    /// The job id.
    pub job: String,
    /// Where it was looked for (without the password).
    pub url: String,
}

impl JobNotFound {
    fn new(job: &str, store: &Redis) -> Self {
        Self {
            job: job.to_string(),
            url: store.url().to_string(),
        }
    }
}

/// The spec of `job`, or [`JobNotFound`].
pub fn spec(store: &mut Redis, job: &str) -> Result<JobSpec> {
    let spec = find_spec(store, job)?;
    spec.ok_or_else(|| JobNotFound::new(job, store).into())
}

/// The spec of `job`; `None` when it does not exist (unknown, or expired with its TTL).
pub fn find_spec(store: &mut Redis, job: &str) -> Result<Option<JobSpec>> {
    ensure!(keys::valid_job_id(job), "`{job}` is not a valid job id");
    let keys = JobKeys::new(job);
    let fields: HashMap<String, String> =
        store.run(|c| redis::cmd("HGETALL").arg(keys.spec()).query(c))?;
    if fields.is_empty() {
        return Ok(None);
    }
    JobSpec::from_fields(&fields)
        .map(Some)
        .with_context(|| format!("reading the spec of job {job}"))
}

/// The state and counters of `job`, or [`JobNotFound`].
pub fn progress(store: &mut Redis, job: &str) -> Result<Progress> {
    let progress = find_progress(store, job)?;
    progress.ok_or_else(|| JobNotFound::new(job, store).into())
}

/// The state and counters of `job`; `None` when it does not exist (unknown, or expired).
pub fn find_progress(store: &mut Redis, job: &str) -> Result<Option<Progress>> {
    ensure!(keys::valid_job_id(job), "`{job}` is not a valid job id");
    let keys = JobKeys::new(job);
    let fields: HashMap<String, String> =
        store.run(|c| redis::cmd("HGETALL").arg(keys.progress()).query(c))?;
    Ok((!fields.is_empty()).then(|| Progress::from_fields(&fields)))
}

/// One failed item, as recorded with its batch.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct FailedItem {
    /// Index of the item in the job's input.
    pub item: u64,
    /// Error kind, as [`ErrorKind`](crate::data::types::ErrorKind) spells it.
    pub kind: String,
    /// The reason.
    pub message: String,
}

/// Every recorded failed item of `job`, in item order.
pub fn failed_items(store: &mut Redis, job: &str) -> Result<Vec<FailedItem>> {
    let keys = JobKeys::new(job);
    let fields: HashMap<String, String> =
        store.run(|c| redis::cmd("HGETALL").arg(keys.errors()).query(c))?;
    let mut items = Vec::new();
    for (batch, json) in fields {
        let list: Vec<FailedItem> = serde_json::from_str(&json)
            .with_context(|| format!("errors of batch {batch} of job {job}"))?;
        items.extend(list);
    }
    items.sort_by_key(|f| f.item);
    Ok(items)
}

/// A batch in the dead-letter stream.
#[derive(Clone, Debug, PartialEq)]
pub struct DeadLetter {
    /// Batch index.
    pub batch: u64,
    /// Deliveries it had.
    pub deliveries: u64,
    /// Its last error.
    pub error: String,
}

/// The dead-lettered batches of `job`.
pub fn dead_letters(store: &mut Redis, job: &str) -> Result<Vec<DeadLetter>> {
    let keys = JobKeys::new(job);
    let entries: Vec<(String, HashMap<String, String>)> = store.run(|c| {
        redis::cmd("XRANGE")
            .arg(keys.dead())
            .arg("-")
            .arg("+")
            .query(c)
    })?;
    Ok(entries
        .into_iter()
        .map(|(_, f)| DeadLetter {
            batch: f.get("batch").and_then(|v| v.parse().ok()).unwrap_or(0),
            deliveries: f
                .get("deliveries")
                .and_then(|v| v.parse().ok())
                .unwrap_or(0),
            error: f.get("error").cloned().unwrap_or_default(),
        })
        .collect())
}

/// Every result of `job` in input order, batch by batch, kept in the wire layout as the workers stored
/// them (see [`crate::data::wire::each`]); an error while any batch has no result yet.
pub fn results(store: &mut Redis, job: &str) -> Result<Vec<wire::Results>> {
    let spec = spec(store, job)?;
    let keys = JobKeys::new(job);
    let mut results = Vec::with_capacity(spec.batch_count as usize);
    let all: Vec<u64> = (0..spec.batch_count).collect();
    for chunk in all.chunks(PIPELINE_CHUNK) {
        let mut pipe = redis::pipe();
        for b in chunk {
            pipe.get(keys.output(*b));
        }
        let blobs: Vec<Option<Vec<u8>>> = store.pipeline(&pipe)?;
        for (b, blob) in chunk.iter().zip(blobs) {
            let Some(bytes) = blob else {
                let p = progress(store, job)?;
                bail!(
                    "job {job} is {} with {} of {} batches finished: batch {b} has no results yet",
                    p.state,
                    p.batches_done,
                    p.batch_count
                );
            };
            results.push(
                codec::decode_results(&bytes)
                    .with_context(|| format!("results of batch {b} of job {job}"))?,
            );
        }
    }
    let count = wire::count(&results);
    ensure!(
        count as u64 == spec.item_count,
        "job {job} has {count} results for {} items",
        spec.item_count
    );
    Ok(results)
}

/// Cancels `job`: workers stop taking its batches; results already written stay. A job that
/// has finished keeps its state (the check and the change are one step, script `END`).
pub fn cancel(store: &mut Redis, job: &str) -> Result<Progress> {
    ensure!(keys::valid_job_id(job), "`{job}` is not a valid job id");
    if queue::end_job(store, job, JobState::Cancelled, "", true)?.is_none() {
        return Err(JobNotFound::new(job, store).into());
    }
    progress(store, job)
}

/// Every job still in Redis, oldest first. Ids whose job is gone (its progress expired or was
/// deleted) are dropped from the index as a side effect; a job that cannot be read for any
/// other reason stays in the index, and the listing fails with that reason.
pub fn list(store: &mut Redis) -> Result<Vec<(String, Progress)>> {
    let ids: Vec<String> =
        store.run(|c| redis::cmd("ZRANGE").arg(keys::JOBS).arg(0).arg(-1).query(c))?;
    let mut out = Vec::new();
    for id in ids {
        // An id that cannot name a job is no job either.
        let found = if keys::valid_job_id(&id) {
            find_progress(store, &id).with_context(|| format!("reading job {id}"))?
        } else {
            None
        };
        match found {
            Some(p) => out.push((id, p)),
            None => {
                store.run(|c| redis::cmd("ZREM").arg(keys::JOBS).arg(&id).query::<()>(c))?;
            }
        }
    }
    Ok(out)
}

/// The failed items of one batch's results, as recorded in `crunch:{JOB}:errors`.
pub fn batch_failures(first_item: u64, results: &wire::Results) -> Vec<FailedItem> {
    results
        .iter()
        .enumerate()
        .filter_map(|(i, r)| {
            r.err().map(|e| FailedItem {
                item: first_item + i as u64,
                kind: e.kind().to_string(),
                message: e.message().to_string(),
            })
        })
        .collect()
}
