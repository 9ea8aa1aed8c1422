//! Measures a job on this machine: a stratified sample of its items through the real pack,
//! giving the kernel's time per item, a batch's fixed cost, the bytes an item moves in and out,
//! and the host's time per item to encode and decode them.

use std::time::{Duration, Instant};

use anyhow::{Result, bail};
use serde::{Deserialize, Serialize};

use crate::data::codec;
use crate::data::types::Item;
use crate::data::wire;
use crate::sandbox::batch::{KernelCall, run_wire_batch};
use crate::sandbox::pack::KernelPack;

/// The most items a sample takes.
pub const MAX_SAMPLE: usize = 512;

/// Items of the first probe, which sizes the sample of a heavy kernel.
const PROBE: usize = 16;

/// The sample repeated into a batch of up to this many items measures the time per item.
pub const LARGE_BATCH: usize = 262_144;

/// Runs of an empty batch that give its fixed cost (the median counts).
const EMPTY_RUNS: usize = 15;

/// What a sample measured, per item and per batch, on this machine.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Sample {
    /// Items in the job.
    pub items: usize,
    /// Items sampled (evenly spread over the job).
    pub sampled: usize,
    /// Sampled items that failed.
    pub failed: usize,
    /// Runs of the sample measured at each size (the medians count).
    pub runs: usize,
    /// Kernel time per item, seconds.
    pub item_s: f64,
    /// Fixed cost of a batch (a fresh instance and one call), seconds.
    pub batch_s: f64,
    /// Host time per item to decode its input and encode its result (a worker does both),
    /// seconds.
    pub codec_item_s: f64,
    /// Bytes per item of input, in Crunch binary.
    pub input_bytes: f64,
    /// Bytes per item of results, in Crunch binary.
    pub output_bytes: f64,
}

/// `count` item indices spread evenly over `len` items: the middle of each of `count` equal
/// strata, so that a file sorted by size or kind is sampled across its whole length.
pub fn stratified(len: usize, count: usize) -> Vec<usize> {
    let count = count.min(len);
    (0..count)
        .map(|i| ((2 * i + 1) * len / (2 * count)).min(len - 1))
        .collect()
}

/// Measures `call` on a sample of `items`: at most [`MAX_SAMPLE`] items, fewer when the kernel
/// is heavy (a probe of a few items sizes the sample to about a tenth of `budget` per run). The
/// sample runs as one batch, and a second, larger stratified sample of up to [`LARGE_BATCH`]
/// items as another (what a batch's memory and caches cost shows at that size), each several
/// times within about `budget`; the medians give the time per item (the slope between the two
/// sizes) and the fixed cost of a batch.
pub fn measure(
    pack: &KernelPack,
    call: &KernelCall<'_>,
    items: &[Item],
    budget: Duration,
) -> Result<Sample> {
    if items.is_empty() {
        bail!("the input holds no items: there is nothing to sample");
    }
    // The first instance of a pack costs more than the rest: the fastest of three probes.
    let probe = wire::Batch::from_items(&pick(items, PROBE));
    let probe_s = (0..3)
        .map(|_| time_batch(pack, call, &probe).0)
        .fold(f64::INFINITY, f64::min);
    let per_item = (probe_s / probe.len() as f64).max(1e-9);
    let run_s = budget.as_secs_f64() / 10.0;
    let sample = pick(
        items,
        ((run_s / per_item) as usize).clamp(PROBE, MAX_SAMPLE),
    );
    // The large batch holds items of its own, as many distinct ones as the input has: a short
    // sample repeated many times runs faster than the job will (the branch predictors learn
    // its pattern; implied_vol's time per item came out 30% low).
    let want = ((run_s / per_item) as usize).clamp(sample.len(), LARGE_BATCH);
    let distinct = pick(items, want);
    let large: Vec<Item> = distinct.iter().cycle().take(want).cloned().collect();

    let (small_wire, large_wire) = (
        wire::Batch::from_items(&sample),
        wire::Batch::from_items(&large),
    );
    let start = Instant::now();
    let (mut small_times, mut large_times) = (Vec::new(), Vec::new());
    let mut failed = 0;
    while small_times.len() < 3 || (start.elapsed() < budget && small_times.len() < 50) {
        let (seconds, fails) = time_batch(pack, call, &small_wire);
        small_times.push(seconds);
        failed = fails;
        if large.len() > sample.len() {
            large_times.push(time_batch(pack, call, &large_wire).0);
        }
    }
    let runs = small_times.len();
    let (n_small, n_large) = (sample.len() as f64, large.len() as f64);
    let small_s = median(small_times.into_iter());
    let (item_s, batch_s) = if large.len() > sample.len() {
        let large_s = median(large_times.into_iter());
        let item_s = ((large_s - small_s) / (n_large - n_small)).max(0.0);
        (item_s, (small_s - n_small * item_s).max(0.0))
    } else {
        let empty_s = median(
            (0..EMPTY_RUNS).map(|_| time_batch(pack, call, &wire::Batch::from_items(&[])).0),
        );
        (((small_s - empty_s) / n_small).max(0.0), empty_s)
    };

    // What a worker does besides the kernel, at the large size: decode the input, encode the
    // results.
    let input = codec::encode_items(&large);
    let decode_start = Instant::now();
    let decoded = codec::decode_batch(&input)?;
    let decode_s = decode_start.elapsed().as_secs_f64();
    let outcome = run_wire_batch(pack, call, 0, &decoded);
    let encode_start = Instant::now();
    let output = codec::encode_results(&outcome.results);
    let codec_s = decode_s + encode_start.elapsed().as_secs_f64();
    Ok(Sample {
        items: items.len(),
        sampled: sample.len(),
        failed,
        runs,
        item_s,
        batch_s,
        codec_item_s: codec_s / n_large,
        input_bytes: input.len() as f64 / n_large,
        output_bytes: output.len() as f64 / n_large,
    })
}

fn pick(items: &[Item], count: usize) -> Vec<Item> {
    stratified(items.len(), count)
        .into_iter()
        .map(|i| items[i].clone())
        .collect()
}

/// Seconds one wire batch takes through the pack, and how many of its items failed.
fn time_batch(pack: &KernelPack, call: &KernelCall<'_>, batch: &wire::Batch<'_>) -> (f64, usize) {
    let outcome = run_wire_batch(pack, call, 0, batch);
    (outcome.elapsed.as_secs_f64(), outcome.results.failed())
}

/// The median of `values` (0 when there are none).
pub(super) fn median(values: impl Iterator<Item = f64>) -> f64 {
    let mut v: Vec<f64> = values.collect();
    v.sort_by(f64::total_cmp);
    v.get(v.len() / 2).copied().unwrap_or(0.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stratified_sample_spans_the_whole_input() {
        assert_eq!(stratified(10, 5), vec![1, 3, 5, 7, 9]);
        assert_eq!(stratified(3, 10), vec![0, 1, 2]);
        let s = stratified(1_000_000, 512);
        assert_eq!(s.len(), 512);
        assert!(s[0] < 1000 && s[511] > 999_000);
        assert!(s.windows(2).all(|w| w[0] < w[1]));
    }
}
