//! How many items go in a batch: the one policy behind `crunch run`, `crunch submit` and
//! `crunch plan`. Enough batches to keep every claim loop busy to the end (about
//! [`BATCHES_PER_LOOP`] each), batches large enough that their fixed cost stays under
//! [`MAX_OVERHEAD`] of their time and small enough to end well within their time limit, inputs
//! that fit a batch's memory, and at most [`MAX_QUEUED_BATCH_BYTES`] a batch through Redis or
//! [`MAX_LOCAL_BATCH_BYTES`] of input in this process. Without a measurement, fixed bounds by
//! venue stand in for the cost-based ones.

use serde::{Deserialize, Serialize};

/// Batches per claim loop the policy aims for, so that loops finish close together.
pub const BATCHES_PER_LOOP: usize = 8;

/// The most a batch's fixed cost may be of its whole time.
pub const MAX_OVERHEAD: f64 = 0.05;

/// The longest a batch should take, seconds, whatever its time limit: a claim lost with its
/// worker costs at most this much work, and a Lambda deadline wastes little.
pub const LONGEST_BATCH_S: f64 = 10.0;

/// The most bytes a queued batch moves to and from Redis, input and results together. Larger
/// values hold Redis's one thread for longer and cost more per byte on both ends (buffers past
/// the allocator's reuse threshold are fresh pages each time): a 64 MB value took 1.5-2x longer
/// per byte than a 16 MB one here, while a batch of 16 MB already spends well under 1% of its
/// time on its round trips.
pub const MAX_QUEUED_BATCH_BYTES: f64 = 16.0 * 1024.0 * 1024.0;

/// The most bytes of input a batch run in this process takes: small enough that its copies
/// into and out of its instance stay in a core's cache. `crunch run --threads 1` of norm_cdf on
/// 2000 x 2000 values: 0.076-0.080 s of compute at 512 KiB of input a batch, 0.090-0.136 s at
/// 4 MB.
pub const MAX_LOCAL_BATCH_BYTES: f64 = 512.0 * 1024.0;

/// Where the batches run, which sets the bounds used when nothing was measured.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Venue {
    /// In this process (`crunch run`): 1 to 4096 items per batch.
    Local,
    /// Through the Redis queue (`crunch submit`): 64 to 8192 items per batch, each batch also
    /// paying its round trips.
    Queue,
}

impl Venue {
    /// (fewest, most) items per batch when the cost is not measured.
    fn unmeasured_bounds(self) -> (usize, usize) {
        match self {
            Venue::Local => (1, 4096),
            Venue::Queue => (64, 8192),
        }
    }

    /// Claim loops assumed when the caller does not know how many will run the job: a queue
    /// job is cut for up to 32 loops (about 256 batches).
    pub fn default_loops(self, threads: usize) -> usize {
        match self {
            Venue::Local => threads.max(1),
            Venue::Queue => 32,
        }
    }
}

/// A measured cost of a batch where it will run.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct BatchCost {
    /// Seconds per item.
    pub item_s: f64,
    /// Fixed seconds per batch (instance, call, and the queue's round trips).
    pub batch_s: f64,
    /// The longest a batch may take, seconds.
    pub longest_s: f64,
}

/// What the batch size is chosen from.
#[derive(Clone, Copy, Debug)]
pub struct Sizing {
    /// Items in the job.
    pub items: usize,
    /// Claim loops (threads, workers' loops, invocations' vCPUs) that will run it.
    pub loops: usize,
    /// The most items whose inputs fit one batch's memory (see
    /// [`items_within_memory`](crate::sandbox::batch::items_within_memory)).
    pub memory_cap: usize,
    /// The measured cost, if any.
    pub cost: Option<BatchCost>,
    /// Bytes of an item: queued, what it moves to and from Redis (its input and results, as
    /// far as known), which bounds a batch to [`MAX_QUEUED_BATCH_BYTES`]; local, its input,
    /// which bounds a batch to [`MAX_LOCAL_BATCH_BYTES`]. 0 when unknown.
    pub item_bytes: f64,
    /// Where the batches run.
    pub venue: Venue,
}

/// The batch size for `s`: `items / (loops x 8)`, raised to the fewest items whose batch keeps
/// its fixed cost under 5%, lowered to the most that end within the longest batch time, fit
/// the memory cap and hold at most [`MAX_QUEUED_BATCH_BYTES`] (queued) or
/// [`MAX_LOCAL_BATCH_BYTES`] (local); at least 1 and at most the items.
pub fn batch_size(s: &Sizing) -> usize {
    let spread = s.items.div_ceil(s.loops.max(1) * BATCHES_PER_LOOP);
    let (fewest, most) = match s.cost {
        Some(c) if c.item_s > 0.0 => {
            let fewest = (c.batch_s * (1.0 - MAX_OVERHEAD) / MAX_OVERHEAD / c.item_s).ceil();
            let most = (c.longest_s.min(LONGEST_BATCH_S) / c.item_s).floor();
            (to_count(fewest), to_count(most).max(1))
        }
        _ => s.venue.unmeasured_bounds(),
    };
    let most_bytes = match s.venue {
        Venue::Queue => MAX_QUEUED_BATCH_BYTES,
        Venue::Local => MAX_LOCAL_BATCH_BYTES,
    };
    let bytes_cap = match s.item_bytes {
        bytes if bytes > 0.0 => to_count((most_bytes / bytes).floor()).max(1),
        _ => usize::MAX,
    };
    spread
        .max(fewest)
        .min(most)
        .min(s.memory_cap)
        .min(bytes_cap)
        .min(s.items)
        .max(1)
}

fn to_count(x: f64) -> usize {
    if x.is_finite() && x > 0.0 {
        x.min(usize::MAX as f64 / 2.0) as usize
    } else {
        0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sizing(items: usize, loops: usize, cost: Option<BatchCost>, venue: Venue) -> Sizing {
        Sizing {
            items,
            loops,
            memory_cap: usize::MAX,
            cost,
            item_bytes: 0.0,
            venue,
        }
    }

    #[test]
    fn unmeasured_bounds_depend_on_the_venue() {
        assert_eq!(batch_size(&sizing(0, 4, None, Venue::Local)), 1);
        assert_eq!(batch_size(&sizing(100, 2, None, Venue::Local)), 7);
        assert_eq!(batch_size(&sizing(100_000, 2, None, Venue::Local)), 4096);
        assert_eq!(batch_size(&sizing(100, 32, None, Venue::Queue)), 64);
        assert_eq!(batch_size(&sizing(10, 32, None, Venue::Queue)), 10);
        assert_eq!(batch_size(&sizing(1_000_000, 32, None, Venue::Queue)), 3907);
        assert_eq!(
            batch_size(&sizing(10_000_000, 32, None, Venue::Queue)),
            8192
        );
    }

    #[test]
    fn a_measured_cost_sets_the_bounds() {
        // 1 us per item, 1 ms fixed: at least 19,000 items keep the fixed cost under 5%.
        let cost = BatchCost {
            item_s: 1e-6,
            batch_s: 1e-3,
            longest_s: 60.0,
        };
        assert_eq!(
            batch_size(&sizing(1_000_000, 2, Some(cost), Venue::Queue)),
            62_500
        );
        assert_eq!(
            batch_size(&sizing(1_000_000, 64, Some(cost), Venue::Queue)),
            19_000
        );
        // 10 ms per item: at most 10 s a batch, 1,000 items.
        let heavy = BatchCost {
            item_s: 0.01,
            ..cost
        };
        assert_eq!(
            batch_size(&sizing(1_000_000, 1, Some(heavy), Venue::Queue)),
            1000
        );
        let short = BatchCost {
            longest_s: 1.0,
            ..heavy
        };
        assert_eq!(
            batch_size(&sizing(1_000_000, 1, Some(short), Venue::Queue)),
            100
        );
        let mut capped = sizing(1_000_000, 1, Some(cost), Venue::Queue);
        capped.memory_cap = 50;
        assert_eq!(batch_size(&capped), 50);
    }

    #[test]
    fn a_queued_batch_moves_at_most_its_bytes() {
        // 1,600 bytes an item (100 values in, 100 out): 10,485 items make 16 MiB.
        let mut heavy = sizing(1_000_000, 1, None, Venue::Queue);
        heavy.item_bytes = 1600.0;
        assert_eq!(batch_size(&heavy), 8192);
        let cost = BatchCost {
            item_s: 1e-6,
            batch_s: 1e-3,
            longest_s: 60.0,
        };
        heavy.cost = Some(cost);
        assert_eq!(batch_size(&heavy), 10_485);
        // In this process the cap is what stays in cache: 327 items of 1,600 bytes in 512 KiB.
        heavy.venue = Venue::Local;
        assert_eq!(batch_size(&heavy), 327);
    }
}
