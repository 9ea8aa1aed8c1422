//! `crunch.run`: items through a kernel on this machine.
//!
//! A run of one batch runs on the calling thread. Otherwise the batches run on a pool of
//! threads; the first to finish with a result sizes one output buffer for every item by that
//! result's shape, and each batch copies its rows into its place there as it finishes, at the
//! same time as the others (a result of another shape sends the run to one array per item
//! instead). The calling thread waits without the GIL, waking as batches finish and every
//! [`POLL`] to check for Ctrl-C and report progress; on Ctrl-C, or an exception from the
//! progress callback, every batch stops within one epoch tick and the exception is raised.

use std::ops::Range;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use crunch::data::wire;
use crunch::{BatchOutcome, KernelCall, KernelPack, StopCheck, Tensor, run_wire_batch_until};
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
    pub call: KernelCall<'a>,
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

/// Runs every item of `input` through `settings.call` on `pack`; call without the GIL.
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
    let rows = Mutex::new(None);
    let mut reports = match &batches[..] {
        [] => Vec::new(),
        [only] => {
            let outcome = run_on_caller(pack, &settings.call, input.to_wire(only.clone()))?;
            vec![absorb(outcome, only.start, count, &rows)]
        }
        _ => run_on_pool(pack, input, settings, &batches, &rows, watch)?,
    };
    let failures: Vec<Failure> = reports
        .iter_mut()
        .flat_map(|r| r.failures.drain(..))
        .collect();
    let rows = rows.into_inner().unwrap_or_else(PoisonError::into_inner);
    let values = match rows {
        Some(mut rows) if reports.iter().all(|r| r.kept.is_none()) => {
            for failure in &failures {
                rows.row(failure.item as usize).fill(f64::NAN);
            }
            Values::Rows {
                count,
                item_shape: rows.shape,
                data: rows.data,
            }
        }
        rows => Values::from_each(each_result(&reports, &batches, rows.as_ref(), &failures)),
    };
    Ok((values, failures))
}

/// One buffer for every item's result, all of one shape.
struct Rows {
    shape: Vec<u32>,
    /// Values per result.
    m: usize,
    data: Vec<f64>,
}

impl Rows {
    /// Rows of zeros for `count` results of `shape`.
    fn new(shape: &[u32], count: usize) -> Self {
        let m = shape.iter().map(|&d| d as usize).product();
        let mut data = vec![0.0; count * m];
        crunch::process::memory::prefer_huge_pages(&mut data);
        Self {
            shape: shape.to_vec(),
            m,
            data,
        }
    }

    fn row(&mut self, item: usize) -> &mut [f64] {
        &mut self.data[item * self.m..(item + 1) * self.m]
    }

    /// A way to write the rows without holding their lock, for the batch threads.
    fn writer(&mut self) -> RowsWriter {
        // `Vec::as_mut_ptr` makes no reference to the values, so writes through the pointer
        // from several threads, each to rows of its own, do not alias one another.
        RowsWriter {
            values: self.data.as_mut_ptr(),
            len: self.data.len(),
            m: self.m,
        }
    }
}

/// The rows of `count` results (made now with `shape` if no batch has made them yet), to
/// write without their lock, when `fits` says this batch's results fit them.
fn rows_writer(
    rows: &Mutex<Option<Rows>>,
    shape: &[u32],
    count: usize,
    fits: impl FnOnce(&Rows) -> bool,
) -> Option<RowsWriter> {
    let mut rows = rows.lock().unwrap_or_else(PoisonError::into_inner);
    let rows = rows.get_or_insert_with(|| Rows::new(shape, count));
    fits(rows).then(|| rows.writer())
}

/// Where the batch threads copy their results: the rows' values, written through their
/// pointer so that each thread copies (and faults in the pages of) its own rows at the same
/// time as the others, not one after another under the rows' lock.
#[derive(Clone, Copy)]
struct RowsWriter {
    values: *mut f64,
    len: usize,
    /// Values per row.
    m: usize,
}

impl RowsWriter {
    /// Copies `values` into the rows from the row of `item` on (panics past their end).
    ///
    /// # Safety
    ///
    /// The rows outlive the call, and no other thread reads or writes those values meanwhile:
    /// each batch writes only the rows of its own items, and the rows are read once every
    /// batch is done.
    #[allow(unsafe_code)]
    unsafe fn write(self, item: usize, values: &[f64]) {
        let start = item * self.m;
        let end = start.checked_add(values.len());
        assert!(
            end.is_some_and(|end| end <= self.len),
            "rows written past their end"
        );
        // SAFETY: in bounds (checked above), alive and not shared (the caller's promise).
        unsafe {
            std::ptr::copy_nonoverlapping(values.as_ptr(), self.values.add(start), values.len())
        }
    }
}

/// What became of one batch once its rows are written.
struct Report {
    failures: Vec<Failure>,
    /// The batch's results, kept when they do not fit the rows (another shape).
    kept: Option<wire::Results>,
}

/// Lists a batch's failures and copies its results into the rows of `count` items (made now,
/// shaped like this batch's first result, if no batch has made them yet); keeps the results
/// whole when one has another shape.
fn absorb(
    outcome: BatchOutcome,
    first_item: usize,
    count: usize,
    rows: &Mutex<Option<Rows>>,
) -> Report {
    if let Some(report) = absorb_vectors(&outcome, first_item, count, rows) {
        return report;
    }
    let failures = outcome
        .results
        .iter()
        .enumerate()
        .filter_map(|(j, r)| {
            r.err().map(|e| Failure {
                item: (first_item + j) as u64,
                batch: outcome.index as u64,
                kind: e.kind().to_string(),
                message: e.message().to_string(),
            })
        })
        .collect();
    let Some(shape) = outcome.results.iter().find_map(|r| r.ok().map(|t| t.shape)) else {
        return Report {
            failures,
            kept: None,
        };
    };
    let fits = |rows: &Rows| {
        outcome
            .results
            .iter()
            .all(|r| r.is_err() || r.is_ok_and(|t| t.shape == rows.shape))
    };
    let Some(writer) = rows_writer(rows, shape, count, fits) else {
        return Report {
            failures,
            kept: Some(outcome.results),
        };
    };
    for (j, result) in outcome.results.iter().enumerate() {
        if let Ok(t) = result {
            // SAFETY: the rows outlive the run's batches, and these are this batch's items.
            #[allow(unsafe_code)]
            unsafe {
                writer.write(first_item + j, t.data);
            }
        }
    }
    Report {
        failures,
        kept: None,
    }
}

/// [`absorb`] for results that are one vector per item, every one of the rows' shape (or of the
/// first shape when no rows are made yet): one copy for the whole batch, no walk per item.
/// `None` for results of another form or shape.
fn absorb_vectors(
    outcome: &BatchOutcome,
    first_item: usize,
    count: usize,
    rows: &Mutex<Option<Rows>>,
) -> Option<Report> {
    let (len, values) = outcome.results.as_vectors()?;
    let writer = rows_writer(rows, &[len], count, |rows| rows.shape == [len])?;
    // SAFETY: the rows outlive the run's batches, and these are this batch's items.
    #[allow(unsafe_code)]
    unsafe {
        writer.write(first_item, values);
    }
    Some(Report {
        failures: Vec::new(),
        kept: None,
    })
}

/// One result per item when the rows could not hold them all.
fn each_result(
    reports: &[Report],
    batches: &[Range<usize>],
    rows: Option<&Rows>,
    failures: &[Failure],
) -> Vec<Option<Tensor>> {
    let failed: std::collections::HashSet<u64> = failures.iter().map(|f| f.item).collect();
    let mut out = Vec::with_capacity(batches.last().map_or(0, |b| b.end));
    for (report, range) in reports.iter().zip(batches) {
        match (&report.kept, rows) {
            (Some(results), _) => out.extend(results.iter().map(|r| {
                r.ok().map(|t| Tensor {
                    shape: t.shape.to_vec(),
                    data: t.data.to_vec(),
                })
            })),
            (None, Some(rows)) => out.extend(range.clone().map(|i| {
                (!failed.contains(&(i as u64))).then(|| Tensor {
                    shape: rows.shape.clone(),
                    data: rows.data[i * rows.m..(i + 1) * rows.m].to_vec(),
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
    call: &KernelCall<'_>,
    batch: wire::Batch<'_>,
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
    let outcome = run_wire_batch_until(pack, call, 0, &batch, Some(stop));
    let raised = interrupted.lock().ok().and_then(|mut e| e.take());
    match raised {
        Some(e) => Err(e),
        None => Ok(outcome),
    }
}

/// Runs `batches` on the pool while the calling thread watches.
fn run_on_pool(
    pack: &KernelPack,
    input: &Input<'_>,
    settings: &Settings<'_>,
    batches: &[Range<usize>],
    rows: &Mutex<Option<Rows>>,
    watch: &Watch,
) -> PyResult<Vec<Report>> {
    let pool = pool(settings.threads)?;
    let count = input.len();
    let stop = Arc::new(AtomicBool::new(false));
    let done = AtomicUsize::new(0);
    let (finished_tx, finished_rx) = mpsc::channel::<()>();
    let mut reports: Option<Vec<Option<Report>>> = None;
    let mut raised = None;
    pool.in_place_scope(|scope| {
        let (stop, done, reports) = (&stop, &done, &mut reports);
        scope.spawn(move |_| {
            let finished = &finished_tx;
            *reports = Some(
                batches
                    .par_iter()
                    .enumerate()
                    .map(|(index, range)| {
                        if stop.load(Ordering::Relaxed) {
                            return None;
                        }
                        let flag = stop.clone();
                        let check: StopCheck = Arc::new(move || flag.load(Ordering::Relaxed));
                        let batch = input.to_wire(range.clone());
                        let outcome =
                            run_wire_batch_until(pack, &settings.call, index, &batch, Some(check));
                        let report = absorb(outcome, range.start, count, rows);
                        done.fetch_add(range.len(), Ordering::Relaxed);
                        let _ = finished.send(());
                        Some(report)
                    })
                    .collect(),
            );
        });
        let mut finished = 0;
        while finished < batches.len() {
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
