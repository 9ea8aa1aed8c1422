//! Measures the Redis a job will use: a round trip, and the time per byte to write a batch's
//! bytes and read them back, on a key of its own that expires within a minute.

use std::time::Instant;

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};

use super::sample::{LARGE_BATCH, Sample, median};
use super::sizing::MAX_QUEUED_BATCH_BYTES;
use crate::queue::store::Redis;
use crate::queue::store::keys::JobKeys;

/// Round trips timed (the median counts).
const ROUND_TRIPS: usize = 21;

/// Writes and reads of the probe's bytes timed (the median counts).
const TRANSFERS: usize = 4;

/// What one Redis costs a worker.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct RedisCost {
    /// One round trip, seconds.
    pub round_trip_s: f64,
    /// Reading one byte of a batch's input (`GET`), client and server, seconds.
    pub read_byte_s: f64,
    /// Writing one byte of a batch's results through a script, as `COMPLETE` does (the
    /// argument is copied into the script and again into the key), seconds.
    pub write_byte_s: f64,
}

/// Stores its argument as `COMPLETE` stores a batch's results.
static WRITE: std::sync::LazyLock<redis::Script> = std::sync::LazyLock::new(|| {
    redis::Script::new("redis.call('SET', KEYS[1], ARGV[1], 'EX', 60) return 1")
});

/// Times `store` with about as many bytes as a large batch of the sample's items moves in and
/// out (64 KB up to the most a queued batch moves, and no more than the whole job).
pub fn measure_for(store: &mut Redis, sample: &Sample) -> Result<RedisCost> {
    let per_item = sample.input_bytes + sample.output_bytes;
    let items = sample.items.min(LARGE_BATCH) as f64;
    let size = (per_item * items).clamp(64e3, MAX_QUEUED_BATCH_BYTES) as usize;
    measure(store, size)
}

/// Times `store`: [`ROUND_TRIPS`] small reads, then `size` bytes written through a script to
/// [`TRANSFERS`] keys of the `plan-probe` job (each expiring within a minute) and read back.
pub fn measure(store: &mut Redis, size: usize) -> Result<RedisCost> {
    let bytes = vec![0x5a_u8; size.max(1)];
    let job = JobKeys::new(&format!("plan-probe-{}", std::process::id()));
    let key = job.input(0);
    let url = store.url().to_string();
    let mut trips = Vec::with_capacity(ROUND_TRIPS);
    for _ in 0..ROUND_TRIPS {
        let start = Instant::now();
        store
            .run(|c| redis::cmd("EXISTS").arg(&key).query::<i64>(c))
            .with_context(|| format!("timing a round trip to {url}"))?;
        trips.push(start.elapsed().as_secs_f64());
    }
    let round_trip_s = median(trips.into_iter());
    // Each write goes to a key of its own, as a job's results do: Redis takes fresh memory.
    let keys: Vec<String> = (0..TRANSFERS).map(|i| job.input(i as u64)).collect();
    let (mut writes, mut reads) = (Vec::new(), Vec::new());
    for key in &keys {
        let start = Instant::now();
        store.run(|c| WRITE.key(key).arg(&bytes).invoke::<i64>(c))?;
        writes.push(start.elapsed().as_secs_f64());
    }
    for key in &keys {
        let start = Instant::now();
        let back: Vec<u8> = store.run(|c| redis::cmd("GET").arg(key).query(c))?;
        reads.push(start.elapsed().as_secs_f64());
        anyhow::ensure!(back.len() == bytes.len(), "{url} handed back other bytes");
    }
    store.run(|c| redis::cmd("DEL").arg(&keys).query::<()>(c))?;
    let per_byte =
        |times: Vec<f64>| (median(times.into_iter()) - round_trip_s).max(0.0) / bytes.len() as f64;
    Ok(RedisCost {
        round_trip_s,
        read_byte_s: per_byte(reads),
        write_byte_s: per_byte(writes),
    })
}
