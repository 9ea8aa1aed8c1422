//! The model of a job's run on one deployment: this machine with N claim loops, or Lambda at a
//! memory size and architecture. From a [`Sample`] it predicts the batch size (the policy of
//! [`sizing`](super::sizing)), the batch and invocation counts, the wall time, the bill and
//! the share of billed time spent in kernels, and warns where the deployment fits the job
//! badly.

use serde::{Deserialize, Serialize};

use super::price::{Bill, PriceTable};
use super::sample::Sample;
use super::sizing::{self, BatchCost, Sizing, Venue};
use crate::lambda::sizing::{MB_PER_VCPU, vcpus_for_memory};

/// Round trips to Redis per batch: claim, read the input, complete, record the batch.
pub const ROUND_TRIPS: f64 = 4.0;

/// What the model assumes about the places it cannot measure from here.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Assumptions {
    /// One Redis round trip from a worker on this machine (Redis here too), seconds.
    pub local_round_trip_s: f64,
    /// Reading a byte of input from Redis on this machine (it shares the cores), seconds.
    pub local_read_byte_s: f64,
    /// Writing a byte of results to Redis on this machine through the `COMPLETE` script,
    /// seconds.
    pub local_write_byte_s: f64,
    /// Cores a transfer to or from Redis on this machine keeps busy while it lasts: the
    /// worker's thread at one end and redis-server at the other, each for part of it (1.5 fits
    /// `just bench-plan` on a 2-core machine).
    pub local_transfer_cores: f64,
    /// Starting a worker process and loading the compiled pack from its cache, seconds.
    pub local_start_s: f64,
    /// One Redis round trip from Lambda to ElastiCache in the same region, seconds.
    pub lambda_round_trip_s: f64,
    /// Bytes per second one invocation moves to and from Redis.
    pub lambda_bytes_per_s: f64,
    /// A new execution environment's start, before the pack is compiled, seconds.
    pub lambda_init_s: f64,
    /// The longest an invocation may run, seconds (Lambda's 15 minutes).
    pub lambda_timeout_s: f64,
}

impl Assumptions {
    /// The defaults, with the local Redis's round trip and cost per byte as measured.
    pub fn with_local_redis(cost: Option<super::probe::RedisCost>) -> Self {
        let mut a = Self::default();
        if let Some(c) = cost {
            a.local_round_trip_s = c.round_trip_s;
            a.local_read_byte_s = c.read_byte_s;
            a.local_write_byte_s = c.write_byte_s;
        }
        a
    }
}

impl Default for Assumptions {
    fn default() -> Self {
        Self {
            local_round_trip_s: 60e-6,
            local_read_byte_s: 1e-9,
            local_write_byte_s: 3e-9,
            local_transfer_cores: 1.5,
            local_start_s: 0.1,
            lambda_round_trip_s: 0.5e-3,
            lambda_bytes_per_s: 75e6,
            lambda_init_s: 0.3,
            lambda_timeout_s: 900.0,
        }
    }
}

/// The job's limits that bound its batches.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct JobLimits {
    /// Time limit of one batch, seconds.
    pub batch_time_s: f64,
    /// The most items whose inputs fit one batch's memory.
    pub memory_cap: usize,
    /// The most bytes of results one batch may hand back.
    pub result_bytes: usize,
    /// A batch size given by the caller instead of the policy's.
    pub batch_size: Option<usize>,
}

impl JobLimits {
    /// The limits of a job over `items` whose batches run under `limits` with `batch_time` each,
    /// its batch size left to the policy.
    pub fn of(
        items: &[crate::Item],
        batch_time: std::time::Duration,
        limits: &crate::Limits,
    ) -> Self {
        Self {
            batch_time_s: batch_time.as_secs_f64(),
            memory_cap: crate::sandbox::batch::items_within_memory(items, limits.memory_bytes),
            result_bytes: limits.result_bytes(),
            batch_size: None,
        }
    }
}

/// A Lambda deployment and how its fan-out is chosen.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LambdaTarget {
    /// Memory size, MB.
    pub memory_mb: u64,
    /// `arm64` or `x86_64`.
    pub arch: String,
    /// How many times longer a batch takes on one Lambda vCPU than on one core here.
    pub speed_ratio: f64,
    /// The account's (or function's) concurrency quota: the most invocations at once.
    pub concurrency: u64,
    /// The wall time the job should take, seconds: the fan-out is the fewest invocations that
    /// meet it.
    pub deadline_s: f64,
    /// Seconds to compile the pack here (a new environment compiles it once).
    pub compile_s: f64,
}

/// The model's prediction for one deployment.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Estimate {
    /// `local` or `lambda`.
    pub kind: String,
    /// e.g. `local 2 loops`, `lambda arm64 1769 MB`.
    pub deployment: String,
    /// Lambda memory size, MB.
    pub memory_mb: Option<u64>,
    /// Lambda architecture.
    pub arch: Option<String>,
    /// Processes or invocations running at once (1 for a local run).
    pub workers: u64,
    /// Claim loops in each (Lambda: one per vCPU).
    pub loops_per_worker: usize,
    /// Items per batch.
    pub batch_size: usize,
    /// Batches.
    pub batches: u64,
    /// One full batch in its kernel, seconds.
    pub batch_s: f64,
    /// Fetching one full batch (claim, read, decode), beside the kernel, seconds.
    pub fetch_s: f64,
    /// Storing one full batch's results (encode, complete, record), beside the kernel, seconds.
    pub store_s: f64,
    /// Both, seconds.
    pub transfer_s: f64,
    /// Predicted wall time of the whole job, seconds.
    pub wall_s: f64,
    /// Items per second over the whole job.
    pub items_per_s: f64,
    /// The bill (Lambda only).
    pub bill: Option<Bill>,
    /// Share of the loops' time (Lambda: of billed vCPU time) spent in kernels.
    pub kernel_share: f64,
    /// What fits the job badly.
    pub warnings: Vec<String>,
}

/// How a worker reaches Redis: a round trip, and the time per byte read and written.
#[derive(Clone, Copy)]
struct Link {
    round_trip_s: f64,
    read_byte_s: f64,
    write_byte_s: f64,
}

/// The times of one batch of `b` items under a deployment's factors: the kernel's, and the
/// fetch (claim, read, decode) and store (encode, complete, record) that run beside it.
struct BatchTimes {
    kernel_s: f64,
    fetch_s: f64,
    store_s: f64,
    transfer_s: f64,
}

fn batch_times(sample: &Sample, b: usize, speed: f64, link: Link) -> BatchTimes {
    let b = b as f64;
    let trips = ROUND_TRIPS / 2.0 * link.round_trip_s;
    let codec = speed * sample.codec_item_s / 2.0;
    let fetch_s = trips + b * (codec + sample.input_bytes * link.read_byte_s);
    let store_s = trips + b * (codec + sample.output_bytes * link.write_byte_s);
    BatchTimes {
        kernel_s: speed * (sample.batch_s + b * sample.item_s),
        fetch_s,
        store_s,
        transfer_s: fetch_s + store_s,
    }
}

impl BatchTimes {
    /// What paces a claim loop: the slowest of its three threads.
    fn pace(&self) -> f64 {
        self.kernel_s.max(self.fetch_s).max(self.store_s)
    }
}

fn cost_of(sample: &Sample, speed: f64, round_trip_s: f64, limits: &JobLimits) -> BatchCost {
    BatchCost {
        item_s: speed * sample.item_s,
        batch_s: speed * sample.batch_s + ROUND_TRIPS * round_trip_s,
        longest_s: limits.batch_time_s / 4.0,
    }
}

fn size(sample: &Sample, loops: usize, cost: BatchCost, limits: &JobLimits) -> usize {
    limits.batch_size.unwrap_or_else(|| {
        sizing::batch_size(&Sizing {
            items: sample.items,
            loops,
            memory_cap: limits.memory_cap,
            cost: Some(cost),
            item_bytes: sample.input_bytes + sample.output_bytes,
            venue: Venue::Queue,
        })
    })
}

/// The warnings every deployment shares: a batch near its time limit or its result limit.
fn batch_warnings(sample: &Sample, b: usize, t: &BatchTimes, limits: &JobLimits) -> Vec<String> {
    let mut warnings = Vec::new();
    if t.kernel_s > 0.5 * limits.batch_time_s {
        warnings.push(format!(
            "a batch of {b} items takes about {:.1} s, near its time limit of {:.1} s (--time-limit)",
            t.kernel_s, limits.batch_time_s
        ));
    }
    let out = b as f64 * sample.output_bytes;
    if out > 0.5 * limits.result_bytes as f64 {
        warnings.push(format!(
            "a batch's results take about {:.0} MB, near the {:.0} MB one batch may hand back",
            out / 1e6,
            limits.result_bytes as f64 / 1e6
        ));
    }
    warnings
}

/// This machine with `loops` claim loops (over one or more `crunch worker` processes) on
/// `cores` cores, Redis here too. The loops' kernels run in parallel up to the cores; a batch's
/// reads and writes overlap its kernel but share the cores, each keeping both its own thread
/// and redis-server busy.
pub fn local(
    sample: &Sample,
    loops: usize,
    cores: usize,
    limits: &JobLimits,
    a: &Assumptions,
) -> Estimate {
    let loops = loops.max(1);
    let cost = cost_of(sample, 1.0, a.local_round_trip_s, limits);
    let b = size(sample, loops, cost, limits);
    let link = Link {
        round_trip_s: a.local_round_trip_s,
        read_byte_s: a.local_read_byte_s,
        write_byte_s: a.local_write_byte_s,
    };
    let t = batch_times(sample, b, 1.0, link);
    let batches = sample.items.div_ceil(b) as u64;
    let rounds = batches.div_ceil(loops as u64) as f64;
    // A loop reads the next batch and stores the last on two helper threads while its kernel
    // runs: the slowest of the three paces it, and all of them (and Redis) share the cores.
    let by_loops = rounds * t.pace();
    let cpu = t.kernel_s + a.local_transfer_cores * t.transfer_s;
    let by_cores = batches as f64 * cpu / cores.max(1) as f64;
    let wall = a.local_start_s + by_loops.max(by_cores) + t.transfer_s;
    let mut e = estimate(sample, b, &t, wall, limits);
    e.deployment = format!("local {loops} loop{}", if loops == 1 { "" } else { "s" });
    e.loops_per_worker = loops;
    e.kernel_share = batches as f64 * t.kernel_s / (loops as f64 * wall);
    e
}

/// The figures of `b`-item batches taking `t` and a job taking `wall` seconds, as for one local
/// run; the callers set what differs.
fn estimate(sample: &Sample, b: usize, t: &BatchTimes, wall: f64, limits: &JobLimits) -> Estimate {
    Estimate {
        kind: "local".into(),
        deployment: String::new(),
        memory_mb: None,
        arch: None,
        workers: 1,
        loops_per_worker: 1,
        batch_size: b,
        batches: sample.items.div_ceil(b) as u64,
        batch_s: t.kernel_s,
        fetch_s: t.fetch_s,
        store_s: t.store_s,
        transfer_s: t.transfer_s,
        wall_s: wall,
        items_per_s: sample.items as f64 / wall,
        bill: None,
        kernel_share: 0.0,
        warnings: batch_warnings(sample, b, t, limits),
    }
}

/// Lambda at `target`: each invocation runs one claim loop per vCPU (1,769 MB buys one, at most
/// 6); a function under 1,769 MB gets that share of one vCPU. The fan-out is the fewest
/// invocations that finish by the deadline, within the concurrency quota and at most one per
/// vCPU's worth of batches. Every invocation starts cold (compiling the pack), drains until
/// the queue is empty, and is billed by the millisecond.
pub fn lambda(
    sample: &Sample,
    target: &LambdaTarget,
    limits: &JobLimits,
    prices: &PriceTable,
    a: &Assumptions,
) -> anyhow::Result<Estimate> {
    let mb = target.memory_mb;
    let vcpus = vcpus_for_memory(mb);
    let share = (mb as f64 / MB_PER_VCPU as f64).min(1.0);
    let speed = target.speed_ratio / share;
    let byte_s = 1.0 / a.lambda_bytes_per_s;
    let link = Link {
        round_trip_s: a.lambda_round_trip_s,
        read_byte_s: byte_s,
        write_byte_s: byte_s,
    };
    let cold = a.lambda_init_s + target.compile_s * speed;
    let quota = target.concurrency.max(1);
    let mut cost = cost_of(sample, speed, a.lambda_round_trip_s, limits);
    cost.longest_s = cost.longest_s.min(a.lambda_timeout_s / 20.0);

    // The fan-out the deadline needs for batches of size `b`.
    let fan_out = |b: usize| -> (u64, bool) {
        let t = batch_times(sample, b, speed, link);
        // A loop's share of its invocation's network.
        let shared = b as f64 * (sample.input_bytes + sample.output_bytes) * vcpus as f64 * byte_s;
        let per_batch = t.pace().max(shared);
        let batches = sample.items.div_ceil(b) as u64;
        let room = target.deadline_s - cold - t.transfer_s;
        let per_loop = (room / per_batch).floor();
        let wanted = if per_loop >= 1.0 {
            (batches as f64 / (per_loop * vcpus as f64)).ceil() as u64
        } else {
            u64::MAX
        };
        let needed = wanted.min(batches.div_ceil(vcpus as u64));
        (needed.clamp(1, quota), needed > quota)
    };
    let widest = size(sample, quota as usize * vcpus, cost, limits);
    let (first, _) = fan_out(widest);
    let b = size(sample, first as usize * vcpus, cost, limits);
    let (invocations, over_quota) = fan_out(b);

    let t = batch_times(sample, b, speed, link);
    let batches = sample.items.div_ceil(b) as u64;
    let loops = invocations * vcpus as u64;
    let rounds = batches.div_ceil(loops) as f64;
    // An invocation's loops share its network: its bytes take at least this long.
    let bytes_s = batches as f64 * b as f64 * (sample.input_bytes + sample.output_bytes)
        / (invocations as f64 * a.lambda_bytes_per_s);
    let wall = cold + (rounds * t.pace()).max(bytes_s) + t.transfer_s;
    let bill = prices.bill(&target.arch, mb, invocations, wall)?;
    let billed_vcpu_s = loops as f64 * bill.billed_ms_per_invocation as f64 / 1e3;
    let kernel_share = batches as f64 * t.kernel_s / billed_vcpu_s;

    let mut e = estimate(sample, b, &t, wall, limits);
    let warnings = &mut e.warnings;
    if over_quota {
        warnings.push(format!(
            "meeting the deadline of {:.0} s needs more than the concurrency quota of {quota} invocations",
            target.deadline_s
        ));
    }
    if wall > a.lambda_timeout_s - 2.0 {
        warnings.push(format!(
            "an invocation would run {:.0} s, past Lambda's {:.0} s limit: work left at the deadline stays queued for more invocations",
            wall, a.lambda_timeout_s
        ));
    }
    if t.transfer_s > t.kernel_s {
        warnings.push(format!(
            "per-item work is too small for Lambda to pay off: a batch moves data for {:.1} ms and computes for {:.1} ms; run it on workers near Redis",
            t.transfer_s * 1e3,
            t.kernel_s * 1e3
        ));
    } else if kernel_share < 0.5 {
        warnings.push(format!(
            "only {:.0}% of billed time runs kernels (start-up and idle vCPUs take the rest)",
            kernel_share * 100.0
        ));
    }
    let held = 2.0 * b as f64 * (sample.input_bytes + sample.output_bytes) * vcpus as f64;
    if held > 0.5 * mb as f64 * 1e6 {
        warnings.push(format!(
            "the claim loops hold about {:.0} MB of batches, over half of the function's {mb} MB",
            held / 1e6
        ));
    }
    e.kind = "lambda".into();
    e.deployment = format!("lambda {} {mb} MB", target.arch);
    e.memory_mb = Some(mb);
    e.arch = Some(target.arch.clone());
    e.workers = invocations;
    e.loops_per_worker = vcpus;
    e.bill = Some(bill);
    e.kernel_share = kernel_share;
    Ok(e)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// 1,000,000 items of 1 us each, no fixed cost, no bytes.
    fn sample() -> Sample {
        Sample {
            items: 1_000_000,
            sampled: 512,
            item_s: 1e-6,
            ..Sample::default()
        }
    }

    fn limits() -> JobLimits {
        JobLimits {
            batch_time_s: 60.0,
            memory_cap: usize::MAX,
            result_bytes: 1 << 30,
            batch_size: None,
        }
    }

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() <= 1e-9 * b.abs()
    }

    #[test]
    fn one_local_loop_is_paced_by_its_kernels() {
        // 8 batches of 125,000 (eight per loop); each 0.125 s of kernel and 2 + 2 round trips
        // of 60 us beside it; one loop: 8 x 0.125 s, plus the start and the last store.
        let e = local(&sample(), 1, 2, &limits(), &Assumptions::default());
        assert_eq!((e.batch_size, e.batches), (125_000, 8));
        assert!(close(e.batch_s, 0.125) && close(e.transfer_s, 240e-6));
        assert!(close(e.wall_s, 0.1 + 1.0 + 240e-6), "{}", e.wall_s);
        // Two loops on two cores: the cores pace them, a transfer keeping 1.5 of them busy.
        let e = local(&sample(), 2, 2, &limits(), &Assumptions::default());
        assert_eq!((e.batch_size, e.batches), (62_500, 16));
        let cpu = 16.0 * (0.0625 + 1.5 * 240e-6) / 2.0;
        assert!(close(e.wall_s, 0.1 + cpu + 240e-6), "{}", e.wall_s);
    }

    #[test]
    fn lambda_fans_out_no_wider_than_the_deadline_needs() {
        let target = LambdaTarget {
            memory_mb: 1769,
            arch: "arm64".into(),
            speed_ratio: 1.0,
            concurrency: 1000,
            deadline_s: 60.0,
            compile_s: 0.0,
        };
        let prices = PriceTable::built_in();
        let e = lambda(
            &sample(),
            &target,
            &limits(),
            &prices,
            &Assumptions::default(),
        )
        .unwrap();
        // One invocation meets 60 s: 8 batches of 125,000 on its one vCPU, after 0.3 s of
        // start, and the last batch's 2 + 2 round trips of 0.5 ms.
        assert_eq!((e.workers, e.loops_per_worker, e.batches), (1, 1, 8));
        let wall = 0.3 + 8.0 * 0.125 + 0.002;
        assert!(close(e.wall_s, wall), "{}", e.wall_s);
        let bill = e.bill.unwrap();
        assert_eq!(bill.billed_ms_per_invocation, 1302);
        assert!(close(bill.gb_seconds, 1769.0 / 1024.0 * 1.302));
        assert!(close(
            bill.total_usd,
            0.2e-6 + 1769.0 / 1024.0 * 1.302 * 0.000_013_333_4
        ));
        assert!(close(e.kernel_share, 1.0 / 1.302));
        // A deadline of 0.5 s needs more invocations: each fits 1 batch of 0.125 s after its
        // start, so the batches (of the size for that fan-out) spread over that many.
        let tight = LambdaTarget {
            deadline_s: 0.5,
            ..target.clone()
        };
        let e = lambda(
            &sample(),
            &tight,
            &limits(),
            &prices,
            &Assumptions::default(),
        )
        .unwrap();
        assert!(e.workers > 1 && e.wall_s < 1.0, "{e:?}");
        // Half a vCPU's memory runs at half speed.
        let small = LambdaTarget {
            memory_mb: 884,
            ..target
        };
        let e = lambda(
            &sample(),
            &small,
            &limits(),
            &prices,
            &Assumptions::default(),
        )
        .unwrap();
        assert!(e.batch_s > 0.24 && e.loops_per_worker == 1, "{e:?}");
    }
}
