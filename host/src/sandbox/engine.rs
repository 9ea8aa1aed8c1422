//! The process-wide wasmtime engine: one `Engine` and `Linker`, pooling allocation, epoch
//! interruption driven by a ticker on its own OS thread, and the per-batch sandbox (a fresh
//! `Store` with WASI denied by default and memory limits).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

use anyhow::{Context, Result};
use wasmtime::component::{Linker, ResourceTable};
use wasmtime::{
    Config, InstanceAllocationStrategy, PoolingAllocationConfig, ResourceLimiter, Store,
};
use wasmtime_wasi::p2::pipe::MemoryOutputPipe;
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

/// How often the epoch advances; batch time limits are counted in these ticks.
pub const EPOCH_TICK: Duration = Duration::from_millis(10);

/// The most kernel stderr (panic messages) kept per batch.
const STDERR_CAPACITY: usize = 16 * 1024;

/// Bytes of each pooled linear memory kept resident between batches (see [`Engine::new`]): a
/// batch of 51 MB (6400 items of 1000 values) no longer faults its memory past 32 MiB back in,
/// which took its instance from 34 to 28 ms. A slot holds no more than its largest batch used.
const MEMORY_KEEP_RESIDENT: usize = 128 << 20;

/// Bytes of each pooled table kept resident between batches (zeroed, not decommitted).
const TABLE_KEEP_RESIDENT: usize = 1 << 20;

/// Limits applied to every batch.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    /// Wall-clock time one batch may run before it is interrupted.
    pub batch_time: Duration,
    /// Linear memory one batch's instance may grow to, in bytes.
    pub memory_bytes: usize,
    /// Wasm stack, in bytes; deeper recursion traps.
    pub stack_bytes: usize,
    /// Instances that may be alive at once (sizes the pooling allocator).
    pub max_concurrent_batches: u32,
    /// The most data a batch's call may hand back to the host (wasmtime's hostcall fuel);
    /// `None`: as much as the batch's memory may hold, at least wasmtime's default 128 MiB. See
    /// [`result_bytes`](Self::result_bytes).
    pub max_result_bytes: Option<usize>,
}

impl Limits {
    /// The most data one call into a pack may hand back. A pack's results lie in its linear
    /// memory, so the memory limit already bounds them: this only stops a pack from making the
    /// host copy more than that (one region returned many times over).
    pub fn result_bytes(&self) -> usize {
        self.max_result_bytes
            .unwrap_or_else(|| self.memory_bytes.max(128 << 20))
    }
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            batch_time: Duration::from_secs(60),
            memory_bytes: 1 << 30,
            stack_bytes: 1 << 20,
            max_concurrent_batches: 64,
            max_result_bytes: None,
        }
    }
}

/// State held by each batch's `Store`: a deny-by-default WASI context and the limits.
pub struct BatchState {
    wasi: WasiCtx,
    table: ResourceTable,
    limiter: MemoryLimiter,
    stderr: MemoryOutputPipe,
}

impl BatchState {
    /// What the kernel wrote to stderr (for example a panic message), lossily decoded.
    pub fn stderr(&self) -> String {
        String::from_utf8_lossy(&self.stderr.contents()).into_owned()
    }

    /// Whether the kernel tried to grow its memory past the limit (and trapped for it).
    pub fn memory_denied(&self) -> bool {
        self.limiter.denied
    }
}

/// Refuses linear memory past the limit with a trap, and records that it did, so that the
/// failure is told apart from any other trap by what happened rather than by an error's text.
struct MemoryLimiter {
    memory_bytes: usize,
    denied: bool,
}

impl ResourceLimiter for MemoryLimiter {
    fn memory_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        if desired > self.memory_bytes {
            self.denied = true;
            wasmtime::bail!(
                "the kernel asked for {desired} bytes of memory, over the limit of {} bytes",
                self.memory_bytes
            );
        }
        Ok(true)
    }

    fn table_growing(
        &mut self,
        _current: usize,
        _desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        Ok(true)
    }
}

impl WasiView for BatchState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

/// One wasmtime engine and linker for the whole process, with its epoch ticker.
///
/// Cloning is cheap and shares everything; the ticker stops when the last clone is dropped.
#[derive(Clone)]
pub struct Engine {
    inner: Arc<Inner>,
}

struct Inner {
    engine: wasmtime::Engine,
    linker: Linker<BatchState>,
    limits: Limits,
    /// Held for its `Drop`, which stops the ticker thread with the last clone of the engine.
    _ticker: Ticker,
}

impl Engine {
    /// Builds the engine, the linker (WASI p2 with no environment, arguments, files or
    /// network) and starts the epoch ticker.
    pub fn new(limits: Limits) -> Result<Self> {
        Self::build(limits, true, false)
    }

    /// [`Engine::new`], naming the generated code in `/tmp/perf-PID.map` when `perf_map`, so
    /// that `perf` profiles show kernel functions by name (the binaries set it from
    /// `CRUNCH_PERF_MAP=1`, see [`crate::process::settings`]).
    pub fn with_perf_map(limits: Limits, perf_map: bool) -> Result<Self> {
        Self::build(limits, true, perf_map)
    }

    /// An engine whose generated code has no epoch checks, so a batch's time limit is NOT
    /// enforced: only for measuring what the checks cost (the benchmark's figures for running
    /// trusted packs without them). Never used to run work.
    pub fn without_time_limit_checks(limits: Limits) -> Result<Self> {
        Self::build(limits, false, false)
    }

    fn build(limits: Limits, epoch_checks: bool, perf_map: bool) -> Result<Self> {
        let mut pool = PoolingAllocationConfig::new();
        let slots = limits.max_concurrent_batches.max(1);
        pool.total_component_instances(slots)
            .total_memories(slots * 2)
            .total_tables(slots * 4)
            .total_core_instances(slots * 8)
            .total_stacks(slots)
            .max_memory_size(limits.memory_bytes)
            // A batch's memory is reset when its instance goes: up to this much by zeroing in
            // place rather than returning the pages to the kernel, so the next batch in the slot
            // does not fault its working set back in page by page.
            .linear_memory_keep_resident(MEMORY_KEEP_RESIDENT)
            .table_keep_resident(TABLE_KEEP_RESIDENT)
            // Where the kernel can say which pages a batch wrote (Linux 6.7 and later), only
            // those are reset: a small batch no longer zeroes its whole initial memory (stack,
            // heap), which cut the fixed cost of a batch from 11.5 to 9.6 us. Older kernels,
            // Lambda's among them, reset as above.
            .pagemap_scan(wasmtime::Enabled::Auto);

        let mut config = Config::new();
        config
            .wasm_component_model(true)
            .epoch_interruption(epoch_checks)
            // A pack's fused multiply-adds (`f64x2.relaxed_madd`) round once on every CPU, so
            // its results do not depend on the machine (crunch-math relies on it).
            .relaxed_simd_deterministic(true)
            .max_wasm_stack(limits.stack_bytes)
            .allocation_strategy(InstanceAllocationStrategy::Pooling(pool));
        if perf_map {
            config.profiler(wasmtime::ProfilingStrategy::PerfMap);
        }
        let engine = wasmtime::Engine::new(&config)
            .map_err(anyhow::Error::from)
            .context("creating the wasmtime engine")?;

        let mut linker = Linker::new(&engine);
        wasmtime_wasi::p2::add_to_linker_sync(&mut linker)
            .map_err(anyhow::Error::from)
            .context("adding WASI to the linker")?;

        let ticker = Ticker::start(engine.clone()).context("starting the epoch ticker thread")?;
        Ok(Self {
            inner: Arc::new(Inner {
                engine,
                linker,
                limits,
                _ticker: ticker,
            }),
        })
    }

    /// The underlying wasmtime engine.
    pub fn wasmtime(&self) -> &wasmtime::Engine {
        &self.inner.engine
    }

    /// The linker every pack is instantiated against.
    pub fn linker(&self) -> &Linker<BatchState> {
        &self.inner.linker
    }

    /// The limits every batch runs under.
    pub fn limits(&self) -> Limits {
        self.inner.limits
    }

    /// A fresh store for one batch: empty WASI context, memory limit, epoch deadline.
    pub fn new_store(&self, batch_time: Duration) -> Store<BatchState> {
        let mut store = self.sandboxed_store();
        store.set_epoch_deadline(epoch_ticks(batch_time));
        store.epoch_deadline_trap();
        store
    }

    /// A store like [`new_store`](Self::new_store) whose batch also ends, within one epoch
    /// tick, once `stop` returns true: the call then fails with [`Stopped`]. `stop` is asked
    /// on the thread running the batch, once per tick, and only while the batch runs.
    pub fn new_stoppable_store(&self, batch_time: Duration, stop: StopCheck) -> Store<BatchState> {
        let mut store = self.sandboxed_store();
        let limit = epoch_ticks(batch_time);
        let mut ticks = 0u64;
        store.set_epoch_deadline(1);
        store.epoch_deadline_callback(move |_| {
            ticks += 1;
            if stop() {
                return Err(wasmtime::Error::new(Stopped));
            }
            Ok(if ticks >= limit {
                wasmtime::UpdateDeadline::Interrupt
            } else {
                wasmtime::UpdateDeadline::Continue(1)
            })
        });
        store
    }

    fn sandboxed_store(&self) -> Store<BatchState> {
        let stderr = MemoryOutputPipe::new(STDERR_CAPACITY);
        let wasi = WasiCtx::builder().stderr(stderr.clone()).build();
        let limiter = MemoryLimiter {
            memory_bytes: self.inner.limits.memory_bytes,
            denied: false,
        };
        let mut store = Store::new(
            &self.inner.engine,
            BatchState {
                wasi,
                table: ResourceTable::new(),
                limiter,
                stderr,
            },
        );
        store.limiter(|s| &mut s.limiter);
        store.set_hostcall_fuel(self.inner.limits.result_bytes());
        store
    }
}

/// Asked once per epoch tick while a stoppable batch runs: `true` ends the batch
/// ([`Engine::new_stoppable_store`]).
pub type StopCheck = Arc<dyn Fn() -> bool + Send + Sync>;

/// The error a stoppable batch's call fails with once its [`StopCheck`] said stop.
#[derive(Clone, Copy, Debug, thiserror::Error)]
#[error("stopped before it finished")]
pub struct Stopped;

/// A time limit in epoch ticks: rounded up, plus one for the tick in progress when the store is
/// made (it may be about to end), so that a batch is never interrupted before its limit.
fn epoch_ticks(limit: Duration) -> u64 {
    let tick = EPOCH_TICK.as_nanos();
    let ticks = limit.as_nanos().div_ceil(tick) + 1;
    u64::try_from(ticks).unwrap_or(u64::MAX)
}

/// Advances the engine's epoch every [`EPOCH_TICK`] on a dedicated OS thread.
struct Ticker {
    stop: Arc<AtomicBool>,
    handle: Option<JoinHandle<()>>,
}

impl Ticker {
    fn start(engine: wasmtime::Engine) -> std::io::Result<Self> {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let handle = std::thread::Builder::new()
            .name("crunch-epoch".into())
            .spawn(move || {
                while !flag.load(Ordering::Relaxed) {
                    std::thread::sleep(EPOCH_TICK);
                    engine.increment_epoch();
                }
            })?;
        Ok(Self {
            stop,
            handle: Some(handle),
        })
    }
}

impl Drop for Ticker {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(handle) = self.handle.take() {
            let _ = handle.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ticks_round_up_and_count_the_tick_in_progress() {
        assert_eq!(epoch_ticks(Duration::ZERO), 1);
        assert_eq!(epoch_ticks(Duration::from_millis(15)), 3);
        assert_eq!(epoch_ticks(Duration::from_secs(1)), 101);
    }

    #[test]
    fn no_limit_is_cut_short_by_the_tick_in_progress() {
        // The deadline fires after `ticks` epoch increments; the first may come at once (the
        // tick in progress ends), so at least `ticks - 1` whole ticks pass first.
        for ms in [0, 1, 9, 10, 11, 15, 100, 999, 1000, 60_000] {
            let limit = Duration::from_millis(ms);
            let earliest = EPOCH_TICK * (epoch_ticks(limit) - 1) as u32;
            assert!(
                earliest >= limit,
                "{limit:?}: interrupted as early as {earliest:?}"
            );
        }
    }
}
