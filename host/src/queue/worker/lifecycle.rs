//! A claimed batch's lifecycle against a [`Queue`]: dead-lettered at once when it has been
//! delivered more times than allowed, its input read, run, then completed, retried after a
//! kernel failure, dead-lettered on its last delivery, or released unrun (stopped at a deadline,
//! a shutdown, or a failure of the host rather than of the kernel).

use std::sync::Arc;
use std::time::Duration;

use anyhow::Result;

use super::{BatchFailure, ErrorHook, WorkSummary};
use crate::data::codec;
use crate::data::types::ItemError;
use crate::data::wire;
use crate::queue::jobs::batch_failures;
use crate::queue::store::queue::{ClaimedEntry, Completion, Queue};
use crate::queue::store::spec::JobSpec;
use crate::sandbox::batch::{BatchError, BatchOutcome, KernelCall, run_wire_batch};
use crate::sandbox::pack::KernelPack;

/// A claimed batch and everything needed to finish it.
#[derive(Clone, Debug)]
pub(crate) struct Claimed {
    pub spec: Arc<JobSpec>,
    pub entry: ClaimedEntry,
    /// When the claim was asked for, ms since the Unix epoch.
    pub claimed_ms: u64,
    /// Claiming, reading and decoding its input, loading the pack.
    pub fetch: Duration,
}

impl Claimed {
    fn job(&self) -> &str {
        &self.spec.job
    }

    fn batch(&self) -> u64 {
        self.entry.batch
    }

    /// Deliveries so far, this one included.
    pub fn deliveries(&self) -> u64 {
        self.entry.deliveries()
    }

    /// Items in this batch (the last batch may be short).
    fn item_count(&self) -> u64 {
        let first = self.batch() * self.spec.batch_size;
        self.spec
            .batch_size
            .min(self.spec.item_count.saturating_sub(first))
    }
}

/// A claimed batch ready to run.
pub(crate) struct Ready {
    pub claimed: Claimed,
    pub pack: KernelPack,
    pub items: wire::Batch<'static>,
}

/// A batch that has run, its results to be stored.
pub(crate) struct Ran {
    pub claimed: Claimed,
    pub outcome: BatchOutcome,
    /// When the kernel started, ms since the Unix epoch.
    pub started_ms: u64,
    /// Whether its time limit was cut short by the caller's deadline (so a timeout is not the
    /// batch's fault).
    pub cut_off: bool,
}

/// Why a batch delivered more than `max_deliveries` times is dead-lettered without running:
/// its last error, or that its workers were lost. `None`: it may run.
pub(crate) fn overdue<Q: Queue + ?Sized>(
    queue: &mut Q,
    claimed: &Claimed,
) -> Result<Option<String>> {
    if claimed.deliveries() <= claimed.spec.max_deliveries {
        return Ok(None);
    }
    let last = queue.last_error(claimed.job(), claimed.batch())?;
    Ok(Some(last.unwrap_or_else(|| {
        format!(
            "its worker was lost {} times (claim lease of {} ms expired)",
            claimed.deliveries() - 1,
            claimed.spec.lease_ms
        )
    })))
}

/// The batch's input, or why it cannot be run (missing or malformed: dead-letter it).
pub(crate) fn input<Q: Queue + ?Sized>(
    queue: &mut Q,
    claimed: &Claimed,
) -> Result<Result<wire::Batch<'static>, String>> {
    let batch = claimed.batch();
    Ok(match queue.input(claimed.job(), batch)? {
        Some(bytes) => codec::decode_batch(&bytes)
            .map_err(|e| format!("input of batch {batch} is malformed: {e:#}")),
        None => Err(format!(
            "input of batch {batch} is missing (expired or deleted)"
        )),
    })
}

/// Runs a ready batch with time limit `batch_time`.
pub(crate) fn run(ready: Ready, batch_time: Duration) -> Ran {
    let Ready {
        claimed,
        pack,
        items,
    } = ready;
    let spec = &*claimed.spec;
    let call = KernelCall {
        kernel: &spec.kernel,
        params: &spec.params,
        batch_time,
    };
    let started_ms = crate::queue::jobs::now_ms();
    let outcome = run_wire_batch(&pack, &call, claimed.batch() as usize, &items);
    Ran {
        started_ms,
        cut_off: batch_time < Duration::from_millis(spec.batch_time_ms),
        claimed,
        outcome,
    }
}

/// Stores a run batch's results; or retries or dead-letters it after a kernel failure; or
/// releases it when the failure was not the kernel's (cut off at the caller's deadline, or the
/// host could not run it).
pub(crate) fn finish<Q: Queue + ?Sized>(
    queue: &mut Q,
    ran: &Ran,
    on_error: Option<&ErrorHook>,
) -> Result<WorkSummary> {
    let Ran {
        claimed,
        outcome,
        cut_off,
        ..
    } = ran;
    let (job, batch) = (claimed.job(), claimed.batch());
    let mut summary = match &outcome.error {
        None => complete(queue, claimed, &outcome.results, "")?,
        Some(BatchError::Timeout { .. }) if *cut_off => {
            tracing::warn!(
                job,
                batch,
                "cut off at the deadline; handed back to the queue"
            );
            release(queue, claimed)?
        }
        Some(error @ BatchError::Host { .. }) => {
            tracing::error!(job, batch, "{error}; handed back to the queue");
            release(queue, claimed)?
        }
        Some(error) => failed(queue, claimed, error, on_error)?,
    };
    summary.kernel_time = outcome.elapsed;
    Ok(summary)
}

/// A kernel failure (trap, timeout, memory limit, broken contract): retry, or dead-letter on
/// the last allowed delivery.
fn failed<Q: Queue + ?Sized>(
    queue: &mut Q,
    claimed: &Claimed,
    error: &BatchError,
    on_error: Option<&ErrorHook>,
) -> Result<WorkSummary> {
    let spec = &*claimed.spec;
    let reason = format!("job {}: {error}", spec.job);
    let deliveries = claimed.deliveries();
    tracing::warn!(job = %spec.job, batch = claimed.batch(), deliveries, "{reason}");
    let dead = deliveries >= spec.max_deliveries;
    if let Some(hook) = on_error {
        hook(&BatchFailure {
            job: spec.job.clone(),
            kernel: spec.kernel.clone(),
            batch: claimed.batch(),
            deliveries,
            dead_lettered: dead,
            error: error.clone(),
        });
    }
    if dead {
        return dead_letter(queue, claimed, &reason);
    }
    let requeued = queue.retry(
        &spec.job,
        &claimed.entry.entry,
        claimed.batch(),
        deliveries + 1,
        &reason,
        spec.ttl_seconds,
    )?;
    Ok(WorkSummary {
        retried: u64::from(requeued),
        ..WorkSummary::default()
    })
}

/// Hands the batch back unrun: this delivery does not count.
pub(crate) fn release<Q: Queue + ?Sized>(queue: &mut Q, claimed: &Claimed) -> Result<WorkSummary> {
    let released = queue.release(
        claimed.job(),
        &claimed.entry.entry,
        claimed.batch(),
        claimed.deliveries(),
    )?;
    Ok(WorkSummary {
        released: u64::from(released),
        ..WorkSummary::default()
    })
}

/// Completes the batch with results that fail every item with `reason`'s first line, and
/// records it in the dead-letter stream.
pub(crate) fn dead_letter<Q: Queue + ?Sized>(
    queue: &mut Q,
    claimed: &Claimed,
    reason: &str,
) -> Result<WorkSummary> {
    tracing::error!(job = %claimed.job(), batch = claimed.batch(), deliveries = claimed.deliveries(), "dead-lettered: {reason}");
    let headline = reason.lines().next().unwrap_or_default().to_string();
    let results = wire::Results::all_failed(
        claimed.item_count() as usize,
        ItemError::BatchFailed(headline),
    );
    let mut summary = complete(queue, claimed, &results, reason)?;
    summary.dead = summary.batches;
    Ok(summary)
}

/// Stores results, acknowledges and counts the batch in one step.
fn complete<Q: Queue + ?Sized>(
    queue: &mut Q,
    claimed: &Claimed,
    results: &wire::Results,
    dead_reason: &str,
) -> Result<WorkSummary> {
    let spec = &*claimed.spec;
    let failures = batch_failures(claimed.batch() * spec.batch_size, results);
    let failed = failures.len() as u64;
    let ok = results.len() as u64 - failed;
    let errors = if failures.is_empty() {
        String::new()
    } else {
        serde_json::to_string(&failures)?
    };
    let encoded = codec::encode_results(results);
    let counted = queue.complete(
        &spec.job,
        &Completion {
            batch: claimed.batch(),
            entry: &claimed.entry.entry,
            results: &encoded,
            items_ok: ok,
            items_failed: failed,
            errors: &errors,
            dead_reason,
            deliveries: claimed.deliveries(),
            ttl_seconds: spec.ttl_seconds,
        },
    )?;
    if !counted {
        return Ok(WorkSummary::default());
    }
    Ok(WorkSummary {
        batches: 1,
        items_ok: ok,
        items_failed: failed,
        ..WorkSummary::default()
    })
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use crunch_abi::TensorRef;

    use super::*;
    use crate::data::wire::ResultsBuilder;
    use crate::queue::store::queue::Claim;
    use crate::queue::store::spec::JobState;
    use crate::queue::worker::memory_queue::MemoryQueue;

    const JOB: &str = "job1";

    fn spec(max_deliveries: u64) -> Arc<JobSpec> {
        Arc::new(JobSpec {
            job: JOB.into(),
            kernel: "k".into(),
            pack_digest: String::new(),
            pack_path: String::new(),
            params: Vec::new(),
            batch_count: 1,
            item_count: 2,
            batch_size: 2,
            ttl_seconds: 60,
            max_deliveries,
            batch_time_ms: 1000,
            lease_ms: 5000,
            created_ms: 0,
            plan: None,
        })
    }

    /// A queue holding one batch of two items.
    fn queue() -> MemoryQueue {
        MemoryQueue::new(vec![codec::encode_items(&[])])
    }

    fn claim(queue: &mut MemoryQueue, spec: &Arc<JobSpec>) -> Claimed {
        match queue.claim(JOB, "c", spec.lease_ms, "r").expect("claim") {
            Claim::Batch(entry) => Claimed {
                spec: Arc::clone(spec),
                entry,
                claimed_ms: 0,
                fetch: Duration::ZERO,
            },
            other => panic!("expected a batch, got {other:?}"),
        }
    }

    fn ran(claimed: Claimed, error: Option<BatchError>, cut_off: bool) -> Ran {
        let results = match &error {
            Some(e) => wire::Results::all_failed(2, ItemError::BatchFailed(e.headline())),
            None => {
                let (shapes, data) = (vec![], vec![1.0, 2.0]);
                let mut built = ResultsBuilder::new(&shapes, &data, 2);
                for i in 0..2 {
                    built.output(TensorRef {
                        shape: &shapes,
                        data: &data[i..=i],
                    });
                }
                let built = built.finish();
                wire::Results::from_parts(shapes.clone(), data.clone(), built)
            }
        };
        Ran {
            claimed,
            started_ms: 0,
            outcome: BatchOutcome {
                index: 0,
                results,
                error,
                elapsed: Duration::from_millis(3),
            },
            cut_off,
        }
    }

    fn trap() -> BatchError {
        BatchError::Trap {
            kernel: "k".into(),
            batch: 0,
            reason: "unreachable".into(),
        }
    }

    #[test]
    fn a_batch_that_always_traps_is_retried_then_dead_lettered_on_its_last_delivery() {
        let (spec, mut q) = (spec(3), queue());
        let calls = Arc::new(AtomicUsize::new(0));
        let counted = Arc::clone(&calls);
        let hook: ErrorHook = Box::new(move |f: &BatchFailure| {
            let n = counted.fetch_add(1, Ordering::Relaxed) as u64 + 1;
            assert_eq!((f.deliveries, f.dead_lettered), (n, n == 3));
        });
        let mut total = WorkSummary::default();
        for delivery in 1..=3 {
            let claimed = claim(&mut q, &spec);
            assert_eq!(claimed.deliveries(), delivery);
            assert_eq!(overdue(&mut q, &claimed).expect("overdue"), None);
            total.add(
                finish(&mut q, &ran(claimed, Some(trap()), false), Some(&hook)).expect("finish"),
            );
        }
        assert_eq!(calls.load(Ordering::Relaxed), 3);
        assert_eq!((total.retried, total.dead, total.batches), (2, 1, 1));
        assert_eq!((q.batches_dead, q.batches_done, q.items_failed), (1, 0, 2));
        assert_eq!(q.dead[0].deliveries, 3);
        assert!(
            q.dead[0].error.contains("trapped: unreachable"),
            "{:?}",
            q.dead
        );
        assert_eq!((q.state, q.entries()), (JobState::DoneWithFailures, 0));
        assert!(
            q.last_errors.is_empty(),
            "the last error goes with the dead letter"
        );
    }

    #[test]
    fn a_batch_whose_workers_die_is_dead_lettered_on_the_delivery_after_the_last() {
        let (spec, mut q) = (spec(2), queue());
        for delivery in 1..=2 {
            let claimed = claim(&mut q, &spec);
            assert_eq!(claimed.deliveries(), delivery);
            assert_eq!(overdue(&mut q, &claimed).expect("overdue"), None);
            q.lose_claims();
        }
        let claimed = claim(&mut q, &spec);
        assert_eq!(claimed.deliveries(), 3);
        let reason = overdue(&mut q, &claimed)
            .expect("overdue")
            .expect("overdue now");
        assert!(reason.contains("its worker was lost 2 times"), "{reason}");
        let summary = dead_letter(&mut q, &claimed, &reason).expect("dead letter");
        assert_eq!(
            (summary.dead, q.batches_dead, q.dead[0].deliveries),
            (1, 1, 3)
        );
    }

    #[test]
    fn a_retry_carries_the_deliveries_of_the_entries_before_it() {
        let (spec, mut q) = (spec(3), queue());
        let first = claim(&mut q, &spec);
        finish(&mut q, &ran(first, Some(trap()), false), None).expect("retry");
        // The retried entry (delivery 2) is delivered, its worker dies, it is taken over.
        assert_eq!(claim(&mut q, &spec).deliveries(), 2);
        q.lose_claims();
        let third = claim(&mut q, &spec);
        assert_eq!(third.deliveries(), 3);
        // Its last error is the trap's, not a lost worker.
        assert_eq!(overdue(&mut q, &third).expect("overdue"), None);
        let summary = finish(&mut q, &ran(third, Some(trap()), false), None).expect("finish");
        assert_eq!(summary.dead, 1);
    }

    #[test]
    fn a_batch_handed_back_unrun_keeps_its_delivery_count() {
        let (spec, mut q) = (spec(1), queue());
        for _ in 0..5 {
            let claimed = claim(&mut q, &spec);
            assert_eq!(claimed.deliveries(), 1);
            assert_eq!(release(&mut q, &claimed).expect("release").released, 1);
        }
        let claimed = claim(&mut q, &spec);
        assert_eq!(overdue(&mut q, &claimed).expect("overdue"), None);
        let summary = finish(&mut q, &ran(claimed, None, false), None).expect("finish");
        assert_eq!((summary.batches, summary.items_ok), (1, 2));
        assert_eq!((q.state, q.batches_dead), (JobState::Done, 0));
    }

    #[test]
    fn a_timeout_at_the_callers_deadline_is_handed_back_not_retried() {
        let (spec, mut q) = (spec(1), queue());
        let claimed = claim(&mut q, &spec);
        let timeout = BatchError::Timeout {
            kernel: "k".into(),
            batch: 0,
            limit: Duration::from_millis(10),
        };
        let summary = finish(&mut q, &ran(claimed, Some(timeout), true), None).expect("finish");
        assert_eq!((summary.released, summary.retried, summary.dead), (1, 0, 0));
        assert_eq!(
            claim(&mut q, &spec).deliveries(),
            1,
            "the cut-off delivery does not count"
        );
    }

    #[test]
    fn a_host_failure_is_handed_back_and_not_blamed_on_the_kernel() {
        let (spec, mut q) = (spec(1), queue());
        let claimed = claim(&mut q, &spec);
        let host = BatchError::Host {
            kernel: "k".into(),
            batch: 0,
            reason: "no instance slot".into(),
        };
        let hook: ErrorHook = Box::new(|f| panic!("a kernel failure was reported: {f:?}"));
        let summary =
            finish(&mut q, &ran(claimed, Some(host), false), Some(&hook)).expect("finish");
        assert_eq!((summary.released, summary.dead), (1, 0));
        assert!(q.last_errors.is_empty() && q.dead.is_empty());
        assert_eq!(claim(&mut q, &spec).deliveries(), 1);
    }

    #[test]
    fn results_stored_twice_are_counted_once() {
        let (spec, mut q) = (spec(3), queue());
        let claimed = claim(&mut q, &spec);
        let again = claimed.clone();
        let first = finish(&mut q, &ran(claimed, None, false), None).expect("first");
        let second = finish(&mut q, &ran(again, None, false), None).expect("second");
        assert_eq!((first.batches, second.batches), (1, 0));
        assert_eq!((q.items_ok, q.batches_done), (2, 1));
    }
}
