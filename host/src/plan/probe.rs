//! Measures the Redis a job will use: a round trip, and the time per byte to write a batch's
//! bytes and read them back, on a key of its own that expires within a minute.

use std::time::Instant;

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};

use super::sample::{LARGE_BATCH, Sample, median};
use crate::store::Store;
use crate::store::keys::JobKeys;

/// Round trips timed (the median counts).
const ROUND_TRIPS: usize = 21;

/// Writes and reads of the probe's bytes timed (the median counts).
const TRANSFERS: usize = 5;

/// What one Redis costs a worker.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct RedisCost {
    /// One round trip, seconds.
    pub round_trip_s: f64,
    /// Writing one byte and reading it back (client and server), seconds.
    pub byte_s: f64,
}

/// Times `store` with about as many bytes as a large batch of the sample's items moves in and
/// out (64 KB to 16 MB).
pub fn measure_for(store: &mut Store, sample: &Sample) -> Result<RedisCost> {
    let per_item = sample.input_bytes + sample.output_bytes;
    let size = (per_item * LARGE_BATCH as f64).clamp(64e3, 16e6) as usize;
    measure(store, size)
}

/// Times `store`: [`ROUND_TRIPS`] small reads, then `size` bytes written (`SET ... EX 60`) and read
/// back [`TRANSFERS`] times, under a key of the `plan-probe` job that expires within a minute.
pub fn measure(store: &mut Store, size: usize) -> Result<RedisCost> {
    let bytes = vec![0x5a_u8; size.max(1)];
    let key = JobKeys::new(&format!("plan-probe-{}", std::process::id())).input(0);
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
    let mut transfers = Vec::with_capacity(TRANSFERS);
    for _ in 0..TRANSFERS {
        let start = Instant::now();
        store.run(|c| {
            redis::cmd("SET")
                .arg(&key)
                .arg(&bytes)
                .arg("EX")
                .arg(60)
                .query::<()>(c)
        })?;
        let back: Vec<u8> = store.run(|c| redis::cmd("GET").arg(&key).query(c))?;
        transfers.push(start.elapsed().as_secs_f64());
        anyhow::ensure!(back.len() == bytes.len(), "{url} handed back other bytes");
    }
    store.run(|c| redis::cmd("DEL").arg(&key).query::<()>(c))?;
    let transfer_s = (median(transfers.into_iter()) - 2.0 * round_trip_s).max(0.0);
    Ok(RedisCost {
        round_trip_s,
        byte_s: transfer_s / bytes.len().max(1) as f64,
    })
}
