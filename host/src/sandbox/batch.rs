//! Running batches: each batch in a fresh store and instance with its own time and memory
//! limits, many batches in parallel on OS threads. A trap, a timeout or a memory blow-up fails
//! its own batch with an error naming kernel, batch and reason; the other batches go on.

use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use rayon::prelude::*;

use crate::data::text;
use crate::data::types::{BatchResults, Item, ItemError, PackedRef, Tensor};
use crate::data::wire;
use crate::plan::sizing::{self, Sizing, Venue};
use crate::sandbox::engine::{StopCheck, Stopped};
use crate::sandbox::pack::KernelPack;

/// Backtrace lines kept in a batch error (deep recursion would otherwise fill pages).
const MAX_BACKTRACE_LINES: usize = 16;

/// Innermost frames that must repeat (one function, or a cycle of up to 4) for a trap to be
/// read as deep recursion. wasmtime keeps 20 frames of a backtrace.
const RECURSION_FRAMES: usize = 16;

/// What to compute: the kernel, its parameters, and each batch's time limit.
#[derive(Clone, Copy, Debug)]
pub struct KernelCall<'a> {
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
    pub results: wire::Results,
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
pub fn run_batch(
    pack: &KernelPack,
    call: &KernelCall<'_>,
    index: usize,
    items: &[Item],
) -> BatchOutcome {
    run_wire_batch(pack, call, index, &wire::Batch::from_items(items))
}

/// Runs one batch, already in the wire layout (as workers read it from Redis), in a fresh instance.
pub fn run_wire_batch(
    pack: &KernelPack,
    call: &KernelCall<'_>,
    index: usize,
    batch: &wire::Batch<'_>,
) -> BatchOutcome {
    run_wire_batch_until(pack, call, index, batch, None)
}

/// Runs one wire batch like [`run_wire_batch`]; with `stop`, the batch also ends (failing
/// with [`BatchError::Stopped`]) within one epoch tick of `stop` returning true.
pub fn run_wire_batch_until(
    pack: &KernelPack,
    call: &KernelCall<'_>,
    index: usize,
    batch: &wire::Batch<'_>,
    stop: Option<StopCheck>,
) -> BatchOutcome {
    let start = Instant::now();
    let len = batch.len();
    let result = call_pack(pack, call, index, batch, stop, start + call.batch_time);
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
            results: wire::Results::all_failed(len, ItemError::BatchFailed(error.headline())),
            error: Some(error),
            elapsed,
        },
    }
}

/// Calls the pack on `batch` in a fresh instance that must finish by `deadline`. Results too
/// large to hand back in one call (wasmtime's hostcall limit, see [`Limits::result_bytes`])
/// are asked for in two halves, and so on down to one item, which then fails alone with an
/// error that names the limit.
///
/// [`Limits::result_bytes`]: crate::sandbox::engine::Limits::result_bytes
fn call_pack(
    pack: &KernelPack,
    call: &KernelCall<'_>,
    index: usize,
    batch: &wire::Batch<'_>,
    stop: Option<StopCheck>,
    deadline: Instant,
) -> Result<wire::Results, BatchError> {
    let engine = pack.engine();
    let remaining = deadline.saturating_duration_since(Instant::now());
    let mut store = match stop.clone() {
        Some(stop) => engine.new_stoppable_store(remaining, stop),
        None => engine.new_store(remaining),
    };
    // Instantiation is the host's part (an instance slot, memory for it); the kernel only
    // starts to run in `run.call` below.
    let instance = pack
        .pre()
        .instance_pre()
        .instantiate(&mut store)
        .map_err(|e| {
            if store.data().memory_denied() {
                // The pack's own initial memory is over the limit: the pack's fault.
                return BatchError::MemoryLimit {
                    kernel: call.kernel.to_string(),
                    batch: index,
                    limit: engine.limits().memory_bytes,
                };
            }
            BatchError::Host {
                kernel: call.kernel.to_string(),
                batch: index,
                reason: format!("instantiating the pack: {e:#}"),
            }
        })?;
    // The generated `call_run` takes the lists owned; this lends them.
    type Run<'a> = (&'a str, &'a [(String, Tensor)], PackedRef<'a>);
    let run = instance
        .get_typed_func::<Run<'_>, (BatchResults,)>(&mut store, pack.run_export())
        .map_err(|e| BatchError::Host {
            kernel: call.kernel.to_string(),
            batch: index,
            reason: format!("the pack's `run` export: {e:#}"),
        })?;
    let outcome = run
        .call(&mut store, (call.kernel, call.params, batch.packed()))
        .map(|(results,)| results);
    let results = match outcome {
        Ok(results) => results,
        Err(e) if is_over_result_limit(&e) => {
            drop(store);
            let Some((first, second)) = batch.split() else {
                let limit = engine.limits().result_bytes();
                return Ok(batch.failed_results(ItemError::BatchFailed(format!(
                    "kernel `{}`, batch {index}: the item's result is over the {} MiB a kernel \
                     may hand back in one call (the limit follows the batch memory limit, \
                     --memory-limit)",
                    call.kernel,
                    limit >> 20
                ))));
            };
            let mut results = call_pack(pack, call, index, &first, stop.clone(), deadline)?;
            results.append(call_pack(pack, call, index, &second, stop, deadline)?);
            return Ok(results);
        }
        Err(e) => {
            let state = store.data();
            return Err(classify(
                e,
                call,
                index,
                state
                    .memory_denied()
                    .then_some(engine.limits().memory_bytes),
                &state.stderr(),
            ));
        }
    };
    batch
        .results(results)
        .map_err(|reason| BatchError::Contract {
            kernel: call.kernel.to_string(),
            batch: index,
            reason,
        })
}

/// Whether the call failed because its results were more than the host takes in one call.
fn is_over_result_limit(error: &wasmtime::Error) -> bool {
    format!("{error:?}").contains("too much data is being copied between the host and the guest")
}

/// Turns a wasmtime error into the batch error that says what happened. `memory_limit` is the
/// limit when the store's limiter refused the kernel memory (what it recorded, not the error's
/// text, says so).
fn classify(
    error: wasmtime::Error,
    call: &KernelCall<'_>,
    batch: usize,
    memory_limit: Option<usize>,
    stderr: &str,
) -> BatchError {
    let kernel = call.kernel.to_string();
    if error.downcast_ref::<Stopped>().is_some() {
        return BatchError::Stopped { kernel, batch };
    }
    if error.downcast_ref::<wasmtime::Trap>() == Some(&wasmtime::Trap::Interrupt) {
        return BatchError::Timeout {
            kernel,
            batch,
            limit: call.batch_time,
        };
    }
    if let Some(limit) = memory_limit {
        return BatchError::MemoryLimit {
            kernel,
            batch,
            limit,
        };
    }
    let recursion = error
        .downcast_ref::<wasmtime::WasmBacktrace>()
        .and_then(recursing_function);
    let trap = match (error.downcast_ref::<wasmtime::Trap>(), recursion) {
        (Some(wasmtime::Trap::StackOverflow), _) => {
            "stack overflow: calls nested deeper than the wasm stack allows (unbounded recursion?)"
                .to_string()
        }
        // A Rust kernel keeps its own stack in its linear memory, below its data: running off
        // its end reads as an out-of-bounds access, deep in a chain of calls.
        (Some(wasmtime::Trap::MemoryOutOfBounds), Some(function)) => format!(
            "stack overflow: an out-of-bounds memory access deep in a recursion of `{function}`, \
             where the kernel's own stack ran out (unbounded recursion?)"
        ),
        (Some(trap), _) => trap.to_string(),
        (None, _) => error.to_string(),
    };
    // One line for the trap and what the kernel printed (its panic message), then the
    // backtrace, so that the first line alone says what happened.
    let mut reason = trap;
    let printed: Vec<&str> = stderr
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with("note: run with"))
        .collect();
    // The kernel wrote its stderr and named its functions: escaped here, so the error is safe
    // to print and log wherever it goes (terminal, Redis, Sentry).
    if !printed.is_empty() {
        let printed = text::escaped(&printed.join(" "), text::MESSAGE_BYTES);
        reason.push_str(&format!("; kernel stderr: {printed}"));
    }
    if let Some(backtrace) = error.downcast_ref::<wasmtime::WasmBacktrace>() {
        let frames: Vec<String> = backtrace
            .to_string()
            .lines()
            .map(|line| text::escaped(line, 200))
            .collect();
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

/// The batch size of a local run (`crunch run`, Python's `crunch.run`) of `items` items
/// holding `values` values on `threads` threads, by the one policy of
/// [`plan::sizing`](crate::plan::sizing) with nothing measured: about eight batches per thread,
/// between 1 and 4096 items each, no more items than a quarter of `memory_bytes` holds (room
/// in the instance for the outputs too), and at most
/// [`MAX_LOCAL_BATCH_BYTES`](crate::plan::sizing::MAX_LOCAL_BATCH_BYTES) of input.
pub fn local_batch_size(items: usize, values: usize, threads: usize, memory_bytes: usize) -> usize {
    sizing::batch_size(&Sizing {
        items,
        loops: threads,
        memory_cap: count_within_memory(items, values, memory_bytes),
        cost: None,
        item_bytes: bytes_per_item(items, values),
        venue: Venue::Local,
    })
}

/// The most items per batch for which a batch's inputs take at most a quarter of
/// `memory_bytes` (at least 1): room in the instance for the inputs, the outputs (often as
/// large) and the kernel's own work, and results that fit in one call (see
/// [`Limits::result_bytes`](crate::sandbox::engine::Limits::result_bytes)).
pub fn items_within_memory(items: &[Item], memory_bytes: usize) -> usize {
    count_within_memory(items.len(), values_in(items), memory_bytes)
}

/// The mean bytes of input values per item of `items` (0 when there are none).
pub fn input_bytes_per_item(items: &[Item]) -> f64 {
    bytes_per_item(items.len(), values_in(items))
}

/// The mean bytes per item of `items` items holding `values` values (0 when there are none).
fn bytes_per_item(items: usize, values: usize) -> f64 {
    (values * 8) as f64 / items.max(1) as f64
}

fn values_in(items: &[Item]) -> usize {
    items.iter().flatten().map(|t| t.data.len()).sum()
}

/// [`items_within_memory`] for `items` items that hold `values` values in all.
pub fn count_within_memory(items: usize, values: usize, memory_bytes: usize) -> usize {
    let item_bytes = values.saturating_mul(8).div_ceil(items.max(1)).max(1);
    (memory_bytes / 4 / item_bytes).max(1)
}

/// The function (escaped) whose calls fill the innermost frames of `backtrace`, repeating with
/// a period of up to 4 calls: the mark of a recursion that ran until something gave out.
fn recursing_function(backtrace: &wasmtime::WasmBacktrace) -> Option<String> {
    let frames = backtrace.frames();
    if frames.len() < RECURSION_FRAMES {
        return None;
    }
    let index = |i: usize| frames[i].func_index();
    (1..=4)
        .find(|&period| (period..RECURSION_FRAMES).all(|i| index(i) == index(i - period)))
        .map(|_| {
            let name = frames[0].func_name().unwrap_or("?");
            text::escaped(&format!("{:#}", rustc_demangle::demangle(name)), 100)
        })
}

/// Runs every batch of an input read in the wire layout (cut into batches of `batch_size`) on `threads`
/// OS threads; each batch's part of the input is copied out where it runs.
///
/// `on_batch` is called as each batch finishes (for progress); the outcomes come back in batch
/// order.
pub fn run_batches(
    pack: &KernelPack,
    call: &KernelCall<'_>,
    input: &wire::Input,
    batch_size: usize,
    threads: usize,
    on_batch: impl Fn(&BatchOutcome) + Sync,
) -> Result<Vec<BatchOutcome>> {
    Ok(batch_threads(threads)?.install(|| {
        input
            .spans(batch_size)
            .into_par_iter()
            .enumerate()
            .map(|(index, span)| {
                let outcome = run_wire_batch(pack, call, index, &input.batch(&span));
                on_batch(&outcome);
                outcome
            })
            .collect()
    }))
}

/// [`run_batches`] on an input that is not needed afterwards: a batch whose outputs fit its part
/// of the input exactly (one vector per item, as many values) writes them there and lets the
/// pack's copy go (see [`wire::BatchInPlace`]). Returns the results, in item order (one
/// [`wire::Results`] for the whole input when every batch's fit), and why batches failed.
pub fn run_batches_in_place(
    pack: &KernelPack,
    call: &KernelCall<'_>,
    mut input: wire::Input,
    batch_size: usize,
    threads: usize,
    on_batch: impl Fn(&BatchOutcome) + Sync,
) -> Result<(Vec<wire::Results>, Vec<BatchError>)> {
    let done: Vec<(wire::Written, Option<BatchError>)> = batch_threads(threads)?.install(|| {
        input
            .batches_in_place(batch_size)
            .into_par_iter()
            .map(|mut part| {
                let outcome = run_wire_batch(pack, call, part.index, &part.batch());
                on_batch(&outcome);
                (part.write(outcome.results), outcome.error)
            })
            .collect()
    });
    let (written, errors): (Vec<_>, Vec<_>) = done.into_iter().unzip();
    let results = input.into_results(batch_size, written);
    Ok((results, errors.into_iter().flatten().collect()))
}

/// The pool that runs a run's batches on `threads` OS threads.
fn batch_threads(threads: usize) -> Result<rayon::ThreadPool> {
    rayon::ThreadPoolBuilder::new()
        .num_threads(threads.max(1))
        .thread_name(|i| format!("crunch-batch-{i}"))
        .build()
        .context("starting the batch threads")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn local_batches_are_bounded() {
        let gib = 1 << 30;
        assert_eq!(local_batch_size(0, 0, 4, gib), 1);
        assert_eq!(local_batch_size(100, 100, 2, gib), 7);
        assert_eq!(local_batch_size(100_000, 100_000, 2, gib), 4096);
        // 2000 values (16,000 bytes) an item: 32 items in 512 KiB.
        assert_eq!(local_batch_size(2000, 2000 * 2000, 1, gib), 32);
        // 1 MiB items: one a batch, however much memory.
        assert_eq!(local_batch_size(100, 100 << 17, 1, gib), 1);
        // 4 KiB items: at most 64 in a quarter of 1 MiB of memory.
        assert_eq!(local_batch_size(1000, 1000 * 512, 1, 1 << 20), 64);
    }
}
