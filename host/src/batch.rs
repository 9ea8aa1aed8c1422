//! Running batches: each batch in a fresh store and instance with its own time and memory
//! limits, many batches in parallel on OS threads. A trap, a timeout or a memory blow-up fails
//! its own batch with an error naming kernel, batch and reason; the other batches go on.

use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use rayon::prelude::*;

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
    /// The host could not run the batch (for example no instance slot was free): not the
    /// kernel's fault, so it is neither retried as a failure nor dead-lettered.
    #[error("kernel `{kernel}`, batch {batch}: the host could not run it: {reason}")]
    Host {
        /// Kernel name.
        kernel: String,
        /// Batch index.
        batch: usize,
        /// What failed.
        reason: String,
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
    let start = Instant::now();
    let len = batch.len();
    let result = call(pack, job, index, batch);
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
) -> Result<PackedResults, BatchError> {
    let engine = pack.engine();
    let mut store = engine.new_store(job.batch_time);
    // Instantiation is the host's part (an instance slot, memory for it); the kernel only
    // starts to run in `call_run`.
    let instance = pack.pre().instantiate(&mut store).map_err(|e| {
        if store.data().memory_denied() {
            // The pack's own initial memory is over the limit: the pack's fault.
            return BatchError::MemoryLimit {
                kernel: job.kernel.to_string(),
                batch: index,
                limit: engine.limits().memory_bytes,
            };
        }
        BatchError::Host {
            kernel: job.kernel.to_string(),
            batch: index,
            reason: format!("instantiating the pack: {e:#}"),
        }
    })?;
    let outcome = instance.crunch_kernel_kernels().call_run(
        &mut store,
        job.kernel,
        job.params,
        &batch.packed,
    );
    let results = outcome.map_err(|e| {
        let state = store.data();
        classify(
            e,
            job,
            index,
            state
                .memory_denied()
                .then_some(engine.limits().memory_bytes),
            &state.stderr(),
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

/// Turns a wasmtime error into the batch error that says what happened. `memory_limit` is the
/// limit when the store's limiter refused the kernel memory (what it recorded, not the error's
/// text, says so).
fn classify(
    error: wasmtime::Error,
    job: &Job<'_>,
    batch: usize,
    memory_limit: Option<usize>,
    stderr: &str,
) -> BatchError {
    let kernel = job.kernel.to_string();
    if error.downcast_ref::<wasmtime::Trap>() == Some(&wasmtime::Trap::Interrupt) {
        return BatchError::Timeout {
            kernel,
            batch,
            limit: job.batch_time,
        };
    }
    if let Some(limit) = memory_limit {
        return BatchError::MemoryLimit {
            kernel,
            batch,
            limit,
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
