//! `crunch.run`: items through a kernel on this machine.
//!
//! The first batch runs on the calling thread; the shape of its first result sizes one output
//! buffer for every item, and the other batches run on a pool of threads, each writing its rows
//! straight into its own share of that buffer (a result of another shape sends the run to one
//! array per item instead). The calling thread waits without the GIL, waking as batches finish
//! and every [`POLL`] to check for Ctrl-C and report progress; on Ctrl-C, or an exception from
//! the progress callback, every batch stops within one epoch tick and the exception is raised.

use std::ops::Range;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crunch::results::PackedResults;
use crunch::{BatchOutcome, Job, KernelPack, StopCheck, Tensor, run_packed_batch_until};
use pyo3::prelude::*;
use rayon::prelude::*;

use crate::errors::CrunchError;
use crate::items::Input;
use crate::outputs::{Failure, Values};
use crate::per_process::PerProcess;

/// How often the waiting thread checks for Ctrl-C and reports progress.
const POLL: Duration = Duration::from_millis(50);

/// How a run is cut and spread.
pub struct Settings<'a> {
    /// Kernel, parameters and the time limit of one batch.
    pub job: Job<'a>,
    /// Items per batch.
    pub batch_size: usize,
    /// Threads running batches.
    pub threads: usize,
}

/// What the waiting thread does when it wakes: check for Ctrl-C (and other signals Python
/// handles), then report how many items are done.
pub struct Watch {
    /// Called with the number of items done so far.
    pub progress: Option<Py<PyAny>>,
}

impl Watch {
    fn check(&self, done: usize) -> PyResult<()> {
        Python::attach(|py| {
            py.check_signals()?;
            if let Some(progress) = &self.progress {
                progress.call1(py, (done,))?;
            }
            Ok(())
        })
    }
}

/// Runs every item of `input` through `settings.job` on `pack`; call without the GIL.
pub fn run(
    pack: &KernelPack,
    input: &Input<'_>,
    settings: &Settings<'_>,
    watch: &Watch,
) -> PyResult<(Values, Vec<Failure>)> {
    let count = input.len();
    let size = settings.batch_size.max(1);
    let batches: Vec<Range<usize>> = (0..count)
        .step_by(size)
        .map(|start| start..(start + size).min(count))
        .collect();
    let Some(first_batch) = batches.first().cloned() else {
        return Ok((Values::Each(Vec::new()), Vec::new()));
    };
    let first = run_on_caller(pack, &settings.job, input.pack(first_batch.clone()))?;
    let row_shape = first
        .results
        .iter()
        .find_map(|r| r.ok().map(|t| t.shape.to_vec()));
    let m: usize = row_shape.iter().flatten().map(|&d| d as usize).product();
    let mut data = if row_shape.is_some() {
        vec![0.0; count * m]
    } else {
        Vec::new()
    };
    let mut shares = split_rows(&mut data, &batches, if row_shape.is_some() { m } else { 0 });
    let first_share = shares.remove(0);
    let rows = row_shape.as_deref();
    let mut reports = vec![absorb(first, first_batch.start, rows, first_share)];
    if batches.len() > 1 {
        watch.check(first_batch.len())?;
        let rest = batches[1..].iter().cloned().enumerate().zip(shares);
        let work = rest
            .map(|((i, range), share)| (i + 1, range, share))
            .collect();
        reports.extend(run_on_pool(
            pack,
            input,
            settings,
            work,
            rows,
            watch,
            first_batch.len(),
        )?);
    }
    let failures: Vec<Failure> = reports
        .iter_mut()
        .flat_map(|r| r.failures.drain(..))
        .collect();
    let values = match row_shape {
        Some(item_shape) if reports.iter().all(|r| r.kept.is_none()) => Values::Rows {
            count,
            item_shape,
            data,
        },
        _ => Values::from_each(each_result(
            &reports,
            &batches,
            row_shape.as_deref(),
            &data,
            &failures,
        )),
    };
    Ok((values, failures))
}

/// What became of one batch once its rows are written.
struct Report {
    failures: Vec<Failure>,
    /// The batch's results, kept when its rows could not all be written (no row shape yet,
    /// or a result of another shape).
    kept: Option<PackedResults>,
}

/// Writes a batch's results of shape `rows` into `share` (failed items' rows NaN) and lists
/// its failures; keeps the results whole when some do not fit.
fn absorb(
    outcome: BatchOutcome,
    first_item: usize,
    rows: Option<&[u32]>,
    share: &mut [f64],
) -> Report {
    let mut failures = Vec::new();
    let mut fits = rows.is_some();
    let m = share.len() / outcome.results.len().max(1);
    for (j, result) in outcome.results.iter().enumerate() {
        let row = &mut share[j * m..(j + 1) * m];
        match result {
            Ok(t) if Some(t.shape) == rows => row.copy_from_slice(t.data),
            Ok(_) => fits = false,
            Err(e) => {
                row.fill(f64::NAN);
                failures.push(Failure {
                    item: (first_item + j) as u64,
                    batch: outcome.index as u64,
                    kind: e.kind().to_string(),
                    message: e.message().to_string(),
                });
            }
        }
    }
    Report {
        failures,
        kept: (!fits).then_some(outcome.results),
    }
}

/// `data` cut into one share per batch, `m` values per item.
fn split_rows<'d>(
    mut data: &'d mut [f64],
    batches: &[Range<usize>],
    m: usize,
) -> Vec<&'d mut [f64]> {
    batches
        .iter()
        .map(|range| {
            let (share, rest) = std::mem::take(&mut data).split_at_mut(range.len() * m);
            data = rest;
            share
        })
        .collect()
}

/// One result per item when the rows could not hold them all.
fn each_result(
    reports: &[Report],
    batches: &[Range<usize>],
    rows: Option<&[u32]>,
    data: &[f64],
    failures: &[Failure],
) -> Vec<Option<Tensor>> {
    let failed: std::collections::HashSet<u64> = failures.iter().map(|f| f.item).collect();
    let m: usize = rows
        .iter()
        .copied()
        .flatten()
        .map(|&d| d as usize)
        .product();
    let mut out = Vec::with_capacity(batches.last().map_or(0, |b| b.end));
    for (report, range) in reports.iter().zip(batches) {
        match (&report.kept, rows) {
            (Some(results), _) => out.extend(results.iter().map(|r| {
                r.ok().map(|t| Tensor {
                    shape: t.shape.to_vec(),
                    data: t.data.to_vec(),
                })
            })),
            (None, Some(shape)) => out.extend(range.clone().map(|i| {
                (!failed.contains(&(i as u64))).then(|| Tensor {
                    shape: shape.to_vec(),
                    data: data[i * m..(i + 1) * m].to_vec(),
                })
            })),
            (None, None) => out.extend(range.clone().map(|_| None)),
        }
    }
    out
}

/// Runs one batch on the calling thread; Ctrl-C stops it (and is raised).
fn run_on_caller(
    pack: &KernelPack,
    job: &Job<'_>,
    batch: crunch::packing::PackedBatch,
) -> PyResult<BatchOutcome> {
    let interrupted: Arc<Mutex<Option<PyErr>>> = Arc::default();
    let slot = interrupted.clone();
    let stop: StopCheck = Arc::new(move || {
        Python::attach(|py| match py.check_signals() {
            Ok(()) => false,
            Err(e) => {
                if let Ok(mut slot) = slot.lock() {
                    *slot = Some(e);
                }
                true
            }
        })
    });
    let outcome = run_packed_batch_until(pack, job, 0, &batch, Some(stop));
    let raised = interrupted.lock().ok().and_then(|mut e| e.take());
    match raised {
        Some(e) => Err(e),
        None => Ok(outcome),
    }
}

type Work<'d> = Vec<(usize, Range<usize>, &'d mut [f64])>;

/// Runs `work` (batch index, items, their rows) on the pool while the calling thread watches.
fn run_on_pool(
    pack: &KernelPack,
    input: &Input<'_>,
    settings: &Settings<'_>,
    work: Work<'_>,
    rows: Option<&[u32]>,
    watch: &Watch,
    already_done: usize,
) -> PyResult<Vec<Report>> {
    let pool = pool(settings.threads)?;
    let stop = Arc::new(AtomicBool::new(false));
    let done = AtomicUsize::new(already_done);
    let total = work.len();
    let (finished_tx, finished_rx) = mpsc::channel::<()>();
    let mut reports: Option<Vec<Option<Report>>> = None;
    let mut raised = None;
    pool.in_place_scope(|scope| {
        let (stop, done, reports) = (&stop, &done, &mut reports);
        scope.spawn(move |_| {
            let finished = &finished_tx;
            *reports = Some(
                work.into_par_iter()
                    .map(|(index, range, share)| {
                        if stop.load(Ordering::Relaxed) {
                            return None;
                        }
                        let flag = stop.clone();
                        let check: StopCheck = Arc::new(move || flag.load(Ordering::Relaxed));
                        let batch = input.pack(range.clone());
                        let outcome =
                            run_packed_batch_until(pack, &settings.job, index, &batch, Some(check));
                        let report = absorb(outcome, range.start, rows, share);
                        done.fetch_add(range.len(), Ordering::Relaxed);
                        let _ = finished.send(());
                        Some(report)
                    })
                    .collect(),
            );
        });
        let mut finished = 0;
        while finished < total {
            match finished_rx.recv_timeout(POLL) {
                Ok(()) => finished += 1 + finished_rx.try_iter().count(),
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => break,
            }
            if let Err(e) = watch.check(done.load(Ordering::Relaxed)) {
                stop.store(true, Ordering::Relaxed);
                raised = Some(e);
                break;
            }
        }
    });
    if let Some(e) = raised {
        return Err(e);
    }
    reports
        .into_iter()
        .flatten()
        .map(|r| r.ok_or_else(|| CrunchError::new_err("a batch of the run was skipped")))
        .collect()
}

/// The pool of `threads` batch threads, made on first use and kept for later runs.
fn pool(threads: usize) -> PyResult<Arc<rayon::ThreadPool>> {
    static POOLS: PerProcess<usize, rayon::ThreadPool> = PerProcess::new();
    POOLS.get_or_make(threads, || {
        rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .thread_name(|i| format!("crunch-batch-{i}"))
            .build()
            .map_err(|e| CrunchError::new_err(format!("starting {threads} batch threads: {e}")))
    })
}
