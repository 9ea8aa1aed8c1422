//! Claim loops. Each runs on three threads so that a batch's Redis round trips overlap the
//! kernels: a prefetch thread claims the next batch and reads its input, the loop's own thread
//! runs batches, and a store thread writes the previous batch's results. At most one batch
//! waits claimed and one waits to be stored. The loops of one serve or drain share a deadline
//! estimate and count the batches running at once.

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc::{self, TryRecvError};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow};

use super::lifecycle::{self, Claimed, Ran, Ready};
use super::{Deadline, Step, WorkSummary, Worker};
use crate::queue::store::records::{self, BatchRecord, Outcome};
use crate::queue::store::{Redis, StoreError};
use crate::sandbox::batch::BatchError;

/// The first and the longest wait between polls of an idle loop.
const IDLE_MIN: Duration = Duration::from_millis(20);
const IDLE_MAX: Duration = Duration::from_millis(500);

/// How long a loop waits after the host failed to run a batch (an exhausted instance pool
/// frees up as other batches end), so that it does not claim and hand back in a tight loop.
const HOST_FAILURE_PAUSE: Duration = Duration::from_millis(200);

/// What the loops work on and when they stop.
pub(crate) struct Plan<'a> {
    /// Only this job; else every job in the index.
    pub job: Option<&'a str>,
    /// Stop before the deadline (a Lambda invocation).
    pub deadline: Option<Deadline>,
    /// Asked whenever a loop finds nothing to claim: false stops it.
    pub keep_going: &'a (dyn Fn(&mut Redis) -> bool + Sync),
}

/// What the loops of one serve or drain share.
#[derive(Default)]
pub(crate) struct Shared {
    longest_batch_ns: AtomicU64,
    running: AtomicUsize,
    peak: AtomicUsize,
    at_deadline: AtomicBool,
}

impl Shared {
    /// The time limit a batch starting now may have before the deadline, or `None` (and from
    /// then on for every loop) when the next batch might not finish in time: one batch is
    /// estimated at 1.5 times the longest so far. Before any batch has been measured, the time
    /// left is the limit, so that even a slow first batch ends before the deadline.
    fn room(&self, deadline: Deadline) -> Option<Duration> {
        let available = deadline
            .at
            .saturating_duration_since(Instant::now())
            .saturating_sub(deadline.margin);
        let longest = self.longest_batch_ns.load(Ordering::Relaxed);
        let estimate = Duration::from_nanos(longest).mul_f64(1.5);
        if self.at_deadline() || available.is_zero() || estimate > available {
            self.at_deadline.store(true, Ordering::Relaxed);
            return None;
        }
        Some(available)
    }

    fn at_deadline(&self) -> bool {
        self.at_deadline.load(Ordering::Relaxed)
    }

    /// Whether the loops stopped because the deadline left no room for another batch.
    pub fn stopped_at_deadline(&self) -> bool {
        self.at_deadline()
    }

    /// The most batches that ran at the same moment.
    pub fn peak_batches(&self) -> usize {
        self.peak.load(Ordering::Relaxed)
    }

    fn batch_started(&self) {
        let now = self.running.fetch_add(1, Ordering::Relaxed) + 1;
        self.peak.fetch_max(now, Ordering::Relaxed);
    }

    fn batch_ended(&self, took: Duration) {
        self.running.fetch_sub(1, Ordering::Relaxed);
        let ns = u64::try_from(took.as_nanos()).unwrap_or(u64::MAX);
        self.longest_batch_ns.fetch_max(ns, Ordering::Relaxed);
    }
}

/// How a claim loop ended: its work or its error, and its connections (for reuse).
pub(crate) struct LoopEnd {
    pub result: Result<WorkSummary>,
    pub stores: Vec<Redis>,
}

/// What the run thread hands the store thread.
enum Finish {
    /// A batch that ran: store, retry, dead-letter or release it.
    Ran(Box<Ran>),
    /// A batch claimed but not run (deadline or shutdown): hand it back.
    Release(Claimed),
}

/// Runs `loops` claim loops, each with two connections from `connect`, until every one has
/// stopped.
pub(crate) fn run_loops(
    worker: &Worker,
    loops: usize,
    connect: impl Fn() -> Result<Redis>,
    plan: &Plan<'_>,
    shared: &Shared,
) -> Result<Vec<LoopEnd>> {
    let mut connections = Vec::new();
    for _ in 0..loops.max(1) {
        connections.push((connect()?, connect()?));
    }
    std::thread::scope(|scope| {
        let handles = connections
            .into_iter()
            .enumerate()
            .map(|(thread, stores)| {
                std::thread::Builder::new()
                    .name(format!("crunch-worker-{thread}"))
                    .spawn_scoped(scope, move || {
                        claim_loop(worker, thread, stores, plan, shared)
                    })
            })
            .collect::<std::io::Result<Vec<_>>>()
            .context("starting a worker thread")?;
        Ok(handles
            .into_iter()
            .map(|h| {
                h.join().unwrap_or_else(|_| LoopEnd {
                    result: Err(anyhow!("a worker thread panicked")),
                    stores: Vec::new(),
                })
            })
            .collect())
    })
}

/// One claim loop: the prefetch and store threads, and batches run on this one.
fn claim_loop(
    worker: &Worker,
    thread: usize,
    (claim_store, finish_store): (Redis, Redis),
    plan: &Plan<'_>,
    shared: &Shared,
) -> LoopEnd {
    let (ready_tx, ready_rx) = mpsc::sync_channel::<Box<Ready>>(0);
    let (ran_tx, ran_rx) = mpsc::sync_channel::<Finish>(1);
    // Tells the prefetch thread that a batch is stored (the job may be done, or the batch
    // requeued for a retry).
    let (finished_tx, finished_rx) = mpsc::channel::<()>();
    // Set when one of the loop's threads meets an error that ends the loop.
    let stop = AtomicBool::new(false);
    let consumer = worker.consumer(thread);
    std::thread::scope(|scope| {
        let prefetch = std::thread::Builder::new()
            .name(format!("crunch-prefetch-{thread}"))
            .spawn_scoped(scope, || {
                let channels = (ready_tx, finished_rx);
                prefetch(
                    worker,
                    claim_store,
                    &consumer,
                    plan,
                    shared,
                    &stop,
                    channels,
                )
            });
        let stored = std::thread::Builder::new()
            .name(format!("crunch-store-{thread}"))
            .spawn_scoped(scope, || {
                let channels = (ran_rx, finished_tx);
                store_results(worker, finish_store, &consumer, channels, &stop)
            });
        let (prefetch, stored) = match (prefetch, stored) {
            (Ok(p), Ok(s)) => (p, s),
            (p, s) => {
                // Dropping the channels' ends here stops whichever thread did start.
                drop(ready_rx);
                drop(ran_tx);
                let error = p.err().or(s.err()).map(anyhow::Error::from);
                return LoopEnd {
                    result: Err(error.unwrap_or_else(|| anyhow!("a thread failed to start")))
                        .context("starting a claim loop's threads"),
                    stores: Vec::new(),
                };
            }
        };
        for ready in ready_rx {
            if ran_tx
                .send(run_or_release(worker, *ready, plan, shared))
                .is_err()
            {
                break;
            }
        }
        drop(ran_tx);
        let mut stores = Vec::new();
        let stored = match stored.join() {
            Ok((result, store)) => {
                stores.push(store);
                result
            }
            Err(_) => Err(anyhow!("a store thread panicked")),
        };
        let prefetched = match prefetch.join() {
            Ok((result, store)) => {
                stores.push(store);
                result
            }
            Err(_) => Err(anyhow!("a prefetch thread panicked")),
        };
        let result = stored.and_then(|mut summary| {
            summary.add(prefetched?);
            Ok(summary)
        });
        LoopEnd { result, stores }
    })
}

/// Runs a batch with the time the deadline leaves it, or hands it back when the worker is
/// shutting down or the deadline leaves no room.
fn run_or_release(worker: &Worker, ready: Ready, plan: &Plan<'_>, shared: &Shared) -> Finish {
    if worker.shutting_down() || shared.at_deadline() {
        return Finish::Release(ready.claimed);
    }
    let limit = Duration::from_millis(ready.claimed.spec.batch_time_ms);
    let batch_time = match plan.deadline {
        None => limit,
        Some(deadline) => match shared.room(deadline) {
            Some(room) => limit.min(room),
            None => return Finish::Release(ready.claimed),
        },
    };
    shared.batch_started();
    let ran = lifecycle::run(ready, batch_time);
    shared.batch_ended(ran.outcome.elapsed);
    if matches!(ran.outcome.error, Some(BatchError::Host { .. })) {
        std::thread::sleep(HOST_FAILURE_PAUSE);
    }
    Finish::Ran(Box::new(ran))
}

/// Claims and prepares batches, handing each to the run thread, until the plan says stop (asked
/// only when nothing is claimable and none of this loop's batches is still on its way), the
/// deadline leaves no room, the worker shuts down, or an error ends the loop.
fn prefetch(
    worker: &Worker,
    mut store: Redis,
    consumer: &str,
    plan: &Plan<'_>,
    shared: &Shared,
    stop: &AtomicBool,
    (ready_tx, finished_rx): (mpsc::SyncSender<Box<Ready>>, mpsc::Receiver<()>),
) -> (Result<WorkSummary>, Redis) {
    let mut summary = WorkSummary::default();
    let mut idle = IDLE_MIN;
    // Batches handed on and not yet stored: one may come back to the queue for a retry.
    let mut in_flight = 0usize;
    let result = loop {
        // The store thread gone (it failed) ends the loop: nothing could be stored.
        let mut store_thread_gone = false;
        loop {
            match finished_rx.try_recv() {
                Ok(()) => in_flight = in_flight.saturating_sub(1),
                Err(TryRecvError::Empty) => break,
                Err(TryRecvError::Disconnected) => {
                    store_thread_gone = true;
                    break;
                }
            }
        }
        if store_thread_gone || worker.shutting_down() || stop.load(Ordering::Relaxed) {
            break Ok(summary);
        }
        if plan.deadline.is_some_and(|d| shared.room(d).is_none()) {
            break Ok(summary);
        }
        let jobs = match plan.job {
            Some(job) => vec![job.to_string()],
            None => match worker.index.runnable(&mut store) {
                Ok(jobs) => jobs,
                Err(e) if StoreError::fatal_in(&e).is_some() => break Err(e),
                Err(e) => {
                    tracing::error!("reading the job index: {e:#}");
                    Vec::new()
                }
            },
        };
        let mut worked = false;
        let mut fatal = None;
        for job in &jobs {
            match worker.claim_one(&mut store, job, consumer) {
                Ok(Step::Ready(ready)) => {
                    if ready_tx.send(ready).is_err() {
                        // The run thread is gone; the claim lapses and is taken over.
                        return (Ok(summary), store);
                    }
                    in_flight += 1;
                    worked = true;
                    break;
                }
                Ok(Step::Worked(s)) => {
                    summary.add(s);
                    worked = true;
                    break;
                }
                Ok(Step::Idle | Step::NotRunnable) => {}
                Err(e) if StoreError::fatal_in(&e).is_some() => {
                    fatal = Some(e);
                    break;
                }
                Err(e) => tracing::error!(job = %job, "{e:#}"),
            }
        }
        if let Some(e) = fatal {
            break Err(e);
        }
        if worked {
            idle = IDLE_MIN;
            continue;
        }
        if in_flight > 0 {
            // This loop's own batches may yet be requeued: wait for them before deciding that
            // there is nothing left.
            if let Ok(()) = finished_rx.recv_timeout(IDLE_MAX) {
                in_flight -= 1;
            }
            continue;
        }
        // Whether to stop is asked only when there was nothing to claim: the question can
        // cost a round trip per job, which a busy loop should not pay per batch.
        if !(plan.keep_going)(&mut store) {
            break Ok(summary);
        }
        let _ = finished_rx.recv_timeout(idle);
        idle = (idle * 2).min(IDLE_MAX);
    };
    if result.is_err() {
        stop.store(true, Ordering::Relaxed);
    }
    (result, store)
}

/// Stores, retries, dead-letters or releases each batch the run thread hands on. After an
/// error that ends the loop, the rest are left alone: their claims lapse and are taken over.
fn store_results(
    worker: &Worker,
    mut store: Redis,
    consumer: &str,
    (ran_rx, finished_tx): (mpsc::Receiver<Finish>, mpsc::Sender<()>),
    stop: &AtomicBool,
) -> (Result<WorkSummary>, Redis) {
    let mut summary = WorkSummary::default();
    let mut fatal = None;
    for finish in ran_rx {
        if fatal.is_none() {
            let (result, job, batch) = match &finish {
                Finish::Ran(ran) => {
                    let start = Instant::now();
                    let result = lifecycle::finish(&mut store, ran, worker.on_error.as_ref());
                    if let Ok(done) = &result {
                        record(&mut store, consumer, ran, done, start.elapsed());
                    }
                    (result, &ran.claimed.spec.job, ran.claimed.entry.batch)
                }
                Finish::Release(claimed) => (
                    lifecycle::release(&mut store, claimed),
                    &claimed.spec.job,
                    claimed.entry.batch,
                ),
            };
            match result {
                Ok(s) => summary.add(s),
                Err(e) if StoreError::fatal_in(&e).is_some() => {
                    stop.store(true, Ordering::Relaxed);
                    fatal = Some(e);
                }
                Err(e) => tracing::error!(job = %job, batch, "{e:#}"),
            }
        }
        let _ = finished_tx.send(());
    }
    (fatal.map_or(Ok(summary), Err), store)
}

/// Writes the batch's record (see `store::records`); a failure to write it is logged and
/// changes nothing else.
fn record(store: &mut Redis, consumer: &str, ran: &Ran, done: &WorkSummary, stored: Duration) {
    let outcome = if done.dead > 0 {
        Outcome::Dead
    } else if done.batches > 0 {
        Outcome::Done
    } else if done.retried > 0 {
        Outcome::Retried
    } else if done.released > 0 {
        Outcome::Released
    } else {
        Outcome::Repeat
    };
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    let claimed = &ran.claimed;
    let record = BatchRecord {
        worker: consumer.to_string(),
        batch: claimed.entry.batch,
        deliveries: claimed.deliveries(),
        outcome,
        claimed_ms: claimed.claimed_ms,
        started_ms: ran.started_ms,
        finished_ms: crate::queue::jobs::now_ms(),
        fetch_ms: ms(claimed.fetch),
        kernel_ms: ms(ran.outcome.elapsed),
        store_ms: ms(stored),
        items_ok: done.items_ok,
        items_failed: done.items_failed,
    };
    if let Err(e) = records::append(store, &claimed.spec.job, &record, claimed.spec.ttl_seconds) {
        tracing::warn!(job = %claimed.spec.job, batch = record.batch, "{e:#}");
    }
}
