//! Measures a job on this machine: a stratified sample of its items through the real pack,
//! giving the kernel's time per item, a batch's fixed cost, the bytes an item moves in and out,
//! and the host's time per item to encode and decode them.

use std::time::{Duration, Instant};

use anyhow::{Result, bail};
use serde::{Deserialize, Serialize};

use crate::batch::{Job, run_packed_batch};
use crate::codec;
use crate::pack::KernelPack;
use crate::packing;
use crate::types::Item;

/// The most items a sample takes.
pub const MAX_SAMPLE: usize = 512;

/// Items of the first probe, which sizes the sample of a heavy kernel.
const PROBE: usize = 16;

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
    /// Runs of the sample measured (the median counts).
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

/// Measures `job` on a sample of `items`: at most [`MAX_SAMPLE`] items, fewer when the kernel
/// is heavy (a probe of a few items sizes the sample to about a quarter of `budget` per run),
/// run as one batch repeatedly for about `budget`, at least three times.
pub fn measure(
    pack: &KernelPack,
    job: &Job<'_>,
    items: &[Item],
    budget: Duration,
) -> Result<Sample> {
    if items.is_empty() {
        bail!("the input holds no items: there is nothing to sample");
    }
    let batch_s = median((0..EMPTY_RUNS).map(|_| time_batch(pack, job, &[]).0));
    let probe = pick(items, PROBE);
    let (probe_s, _) = time_batch(pack, job, &probe);
    let per_item = ((probe_s - batch_s) / probe.len() as f64).max(1e-9);
    let fits = (budget.as_secs_f64() / 4.0 / per_item) as usize;
    let sample = pick(items, fits.clamp(PROBE, MAX_SAMPLE));

    let start = Instant::now();
    let mut times = Vec::new();
    let mut failed = 0;
    while times.len() < 3 || (start.elapsed() < budget && times.len() < 50) {
        let (seconds, fails) = time_batch(pack, job, &sample);
        times.push(seconds);
        failed = fails;
    }
    let runs = times.len();
    let sample_s = median(times.into_iter());
    let n = sample.len() as f64;

    let codec_start = Instant::now();
    let input = codec::encode_items(&sample);
    let decoded = codec::decode_packed(&input)?;
    let outcome = run_packed_batch(pack, job, 0, &decoded);
    let kernel_s = outcome.elapsed.as_secs_f64();
    let output = codec::encode_results(&outcome.results);
    let codec_s = (codec_start.elapsed().as_secs_f64() - kernel_s).max(0.0);
    Ok(Sample {
        items: items.len(),
        sampled: sample.len(),
        failed,
        runs,
        item_s: ((sample_s - batch_s) / n).max(0.0),
        batch_s,
        codec_item_s: codec_s / n,
        input_bytes: input.len() as f64 / n,
        output_bytes: output.len() as f64 / n,
    })
}

fn pick(items: &[Item], count: usize) -> Vec<Item> {
    stratified(items.len(), count)
        .into_iter()
        .map(|i| items[i].clone())
        .collect()
}

/// Seconds one batch of `items` takes through the pack (packing excluded), and how many of its
/// items failed.
fn time_batch(pack: &KernelPack, job: &Job<'_>, items: &[Item]) -> (f64, usize) {
    let packed = packing::pack(items);
    let outcome = run_packed_batch(pack, job, 0, &packed);
    (outcome.elapsed.as_secs_f64(), outcome.results.failed())
}

fn median(values: impl Iterator<Item = f64>) -> f64 {
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
