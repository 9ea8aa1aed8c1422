//! Running batches: each batch in a fresh store and instance with its own time and memory
//! limits, many batches in parallel on OS threads. A trap, a timeout or a memory blow-up fails
//! its own batch with an error naming kernel, batch and reason; the other batches go on.

use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use rayon::prelude::*;

use crate::engine::{StopCheck, Stopped};
use crate::pack::KernelPack;
use crate::packing::{self, PackedBatch};
use crate::results::PackedResults;
use crate::types::{Item, ItemError, Tensor};

/// Backtrace lines kept in a batch error (deep recursion would otherwise fill pages).
const MAX_BACKTRACE_LINES: usize = 16;

/// What to compute: the kernel, its parameters, and each batch's time limit.
#[derive(Clone, Copy, Debug)]
pub struct Job<'a> {
    /// Kernel name within the pack.
    pub kernel: &'a str,
    /// Named parameters passed to every batch.
    pub params: &'a [(String, Tensor)],
    /// Wall-clock limit per batch.
    pub batch_time: Duration,
}

/// The result of one batch.
#[derive(Debug)]
pub struct BatchOutcome {
    /// Position of the batch in the run, from 0.
    pub index: usize,
    /// One result per item, in order; every item fails when the batch failed.
    pub results: PackedResults,
    /// Why the whole batch failed, if it did.
    pub error: Option<BatchError>,
    /// Time spent instantiating and running the kernel.
    pub elapsed: Duration,
}

/// Why a whole batch failed.
#[derive(Clone, Debug, thiserror::Error)]
pub enum BatchError {
    /// The batch ran past its time limit and was interrupted.
    #[error(
        "kernel `{kernel}`, batch {batch}: interrupted after exceeding its time limit of {limit:?}"
    )]
    Timeout {
        /// Kernel name.
        kernel: String,
        /// Batch index.
        batch: usize,
        /// The limit it exceeded.
        limit: Duration,
    },
    /// The batch tried to grow its memory past the limit.
    #[error("kernel `{kernel}`, batch {batch}: exceeded the memory limit of {limit} bytes")]
    MemoryLimit {
        /// Kernel name.
        kernel: String,
        /// Batch index.
        batch: usize,
        /// The limit in bytes.
        limit: usize,
    },
    /// The kernel trapped (panic, unreachable, stack overflow, out-of-bounds access...).
    #[error("kernel `{kernel}`, batch {batch}: trapped: {reason}")]
    Trap {
        /// Kernel name.
        kernel: String,
        /// Batch index.
        batch: usize,
        /// The trap, the kernel's stderr (e.g. its panic message) and the wasm backtrace.
        reason: String,
    },
    /// The batch was stopped before it finished (its caller gave up on the run, for example
    /// on Ctrl-C).
    #[error("kernel `{kernel}`, batch {batch}: stopped before it finished")]
    Stopped {
        /// Kernel name.
        kernel: String,
        /// Batch index.
        batch: usize,
    },
    /// The pack broke the contract (for example returned the wrong number of results).
    #[error("kernel `{kernel}`, batch {batch}: {reason}")]
    Contract {
        /// Kernel name.
        kernel: String,
        /// Batch index.
        batch: usize,
        /// What the pack did wrong.
        reason: String,
    },
}

impl BatchError {
    /// The first line of the message: kernel, batch and reason, without the backtrace.
    pub fn headline(&self) -> String {
        let text = self.to_string();
        text.lines().next().unwrap_or_default().to_string()
    }
}

/// Runs one batch in a fresh instance of `pack`.
pub fn run_batch(pack: &KernelPack, job: &Job<'_>, index: usize, items: &[Item]) -> BatchOutcome {
    run_packed_batch(pack, job, index, &packing::pack(items))
}

/// Runs one batch, already packed (as workers read it from Redis), in a fresh instance.
pub fn run_packed_batch(
    pack: &KernelPack,
    job: &Job<'_>,
    index: usize,
    batch: &PackedBatch,
) -> BatchOutcome {
    run_packed_batch_until(pack, job, index, batch, None)
}

/// Runs one packed batch like [`run_packed_batch`]; with `stop`, the batch also ends (failing
/// with [`BatchError::Stopped`]) within one epoch tick of `stop` returning true.
pub fn run_packed_batch_until(
    pack: &KernelPack,
    job: &Job<'_>,
    index: usize,
    batch: &PackedBatch,
    stop: Option<StopCheck>,
) -> BatchOutcome {
    let start = Instant::now();
    let len = batch.len();
    let result = call(pack, job, index, batch, stop);
    let elapsed = start.elapsed();
    match result {
        Ok(results) => BatchOutcome {
            index,
            results,
            error: None,
            elapsed,
        },
        Err(error) => BatchOutcome {
            index,
            results: PackedResults::all_failed(len, ItemError::BatchFailed(error.headline())),
            error: Some(error),
            elapsed,
        },
    }
}

fn call(
    pack: &KernelPack,
    job: &Job<'_>,
    index: usize,
    batch: &PackedBatch,
    stop: Option<StopCheck>,
) -> Result<PackedResults, BatchError> {
    let engine = pack.engine();
    let mut store = match stop {
        Some(stop) => engine.new_stoppable_store(job.batch_time, stop),
        None => engine.new_store(job.batch_time),
    };
    let outcome = pack.pre().instantiate(&mut store).and_then(|instance| {
        instance
            .crunch_kernel_kernels()
            .call_run(&mut store, job.kernel, job.params, &batch.packed)
    });
    let results = outcome.map_err(|e| {
        classify(
            e,
            job,
            index,
            engine.limits().memory_bytes,
            &store.data().stderr(),
        )
    })?;
    batch
        .results(results)
        .map_err(|reason| BatchError::Contract {
            kernel: job.kernel.to_string(),
            batch: index,
            reason,
        })
}

/// Turns a wasmtime error into the batch error that says what happened.
fn classify(
    error: wasmtime::Error,
    job: &Job<'_>,
    batch: usize,
    memory_limit: usize,
    stderr: &str,
) -> BatchError {
    let kernel = job.kernel.to_string();
    if error.downcast_ref::<Stopped>().is_some() {
        return BatchError::Stopped { kernel, batch };
    }
    if error.downcast_ref::<wasmtime::Trap>() == Some(&wasmtime::Trap::Interrupt) {
        return BatchError::Timeout {
            kernel,
            batch,
            limit: job.batch_time,
        };
    }
    let text = format!("{error:?}");
    if text.contains("forcing trap when growing memory") {
        return BatchError::MemoryLimit {
            kernel,
            batch,
            limit: memory_limit,
        };
    }
    let trap = match error.downcast_ref::<wasmtime::Trap>() {
        Some(trap) => trap.to_string(),
        None => error.to_string(),
    };
    // One line for the trap and what the kernel printed (its panic message), then the
    // backtrace, so that the first line alone says what happened.
    let mut reason = trap;
    let printed: Vec<&str> = stderr
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with("note: run with"))
        .collect();
    if !printed.is_empty() {
        reason.push_str(&format!("; kernel stderr: {}", printed.join(" ")));
    }
    if let Some(backtrace) = error.downcast_ref::<wasmtime::WasmBacktrace>() {
        let frames: Vec<String> = backtrace.to_string().lines().map(str::to_string).collect();
        reason.push('\n');
        reason.push_str(&frames[..frames.len().min(MAX_BACKTRACE_LINES)].join("\n"));
        if frames.len() > MAX_BACKTRACE_LINES {
            reason.push_str(&format!(
                "\n    ... {} more frames",
                frames.len() - MAX_BACKTRACE_LINES
            ));
        }
    }
    BatchError::Trap {
        kernel,
        batch,
        reason,
    }
}

/// The batch size of a local run (`crunch run`, Python's `crunch.run`) of `items` items on
/// `threads` threads: about eight batches per thread, between 1 and 4096 items each.
pub fn local_batch_size(items: usize, threads: usize) -> usize {
    items.div_ceil(threads.max(1) * 8).clamp(1, 4096)
}

/// Runs every batch of `items` (split into batches of `batch_size`) on `threads` OS threads.
///
/// `on_batch` is called as each batch finishes (for progress); the outcomes come back in batch
/// order.
pub fn run_batches(
    pack: &KernelPack,
    job: &Job<'_>,
    items: &[Item],
    batch_size: usize,
    threads: usize,
    on_batch: impl Fn(&BatchOutcome) + Sync,
) -> Result<Vec<BatchOutcome>> {
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(threads.max(1))
        .thread_name(|i| format!("crunch-batch-{i}"))
        .build()
        .context("starting the batch threads")?;
    let batch_size = batch_size.max(1);
    Ok(pool.install(|| {
        items
            .par_chunks(batch_size)
            .enumerate()
            .map(|(index, batch)| {
                let outcome = run_batch(pack, job, index, batch);
                on_batch(&outcome);
                outcome
            })
            .collect()
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn local_batches_are_bounded() {
        assert_eq!(local_batch_size(0, 4), 1);
        assert_eq!(local_batch_size(100, 2), 7);
        assert_eq!(local_batch_size(10_000_000, 2), 4096);
    }
}
