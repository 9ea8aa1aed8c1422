//! `crunch.Client`'s engine room: jobs and kernel packs in Redis through the host library's
//! own protocol code (`crunch::queue::jobs`, `crunch::queue::pack_registry`), so that the package and the CLI
//! write and read exactly the same keys. Redis round trips run without the GIL.

use std::sync::{Arc, Mutex};

use anyhow::Context;
use crunch::data::wire;
use crunch::lambda::fanout;
use crunch::plan::{self, SubmitVenue};
use crunch::queue::jobs::{self, SubmitOptions};
use crunch::queue::pack_registry;
use crunch::queue::store::Redis;
use crunch::queue::store::keys::valid_job_id;
use crunch::queue::store::spec::Progress;
use crunch::{Item, KernelCall, KernelPack, Tensor};
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyList, PyTuple};

use crate::errors::{self, Invalid, invalid};
use crate::items::read_items;
use crate::outputs::{split_results, to_python};
use crate::packs::{self, PackSource, STANDARD_DIGEST, STANDARD_PACK};

/// Name under which a client stores the embedded standard pack in the registry, so that
/// workers anywhere can fetch the digest its jobs pin.
const STANDARD_PACK_NAME: &str = "crunch-standard";

/// The most Lambda invocations started by default (as `crunch submit --max-concurrency`).
const DEFAULT_MAX_CONCURRENCY: u32 = 10;

/// The Lambda memory size an automatic batch size plans for, MB (as `crunch submit`'s
/// `--lambda-memory`).
const DEFAULT_LAMBDA_MEMORY_MB: u64 = 1769;

/// How long the sample of an automatic batch size may take (as `crunch submit`'s
/// `--sample-time`).
const SAMPLE_TIME: std::time::Duration = std::time::Duration::from_millis(500);

/// Memory limit of the engine that checks packs for the client (it runs no batches): the one
/// `crunch.run` uses by default, so that both share an engine and its compiled packs.
const CLIENT_MEMORY: usize = crate::DEFAULT_MEMORY_MIB << 20;

/// A connection to one Redis (or Redis Cluster).
#[pyclass(module = "crunch._native", frozen)]
pub struct NativeClient {
    store: Mutex<Redis>,
    url: String,
}

impl NativeClient {
    fn with_store<T: Send>(
        &self,
        py: Python<'_>,
        op: impl FnOnce(&mut Redis) -> anyhow::Result<T> + Send,
    ) -> PyResult<T> {
        py.detach(|| {
            let mut store = self
                .store
                .lock()
                .map_err(|_| anyhow::anyhow!("the Redis connection is poisoned"))?;
            op(&mut store)
        })
        .map_err(errors::host)
    }

    fn check_id(job: &str) -> PyResult<()> {
        if valid_job_id(job) {
            Ok(())
        } else {
            Err(invalid(format!(
                "`{job}` is not a job id (1 to 64 of A-Z, a-z, 0-9, `_`, `-`)"
            )))
        }
    }

    /// The pack a job will pin, and where workers read it (`""`: the registry).
    fn submit_pack(
        store: &mut Redis,
        pack: &PackChoice,
    ) -> anyhow::Result<(Arc<KernelPack>, String)> {
        let entry = packs::engine(CLIENT_MEMORY, 1)?;
        match pack {
            PackChoice::Standard => {
                let compiled = entry.pack(&PackSource::Standard)?;
                if pack_registry::resolve(store, STANDARD_DIGEST).is_err() {
                    let checked = pack_registry::CheckedPack {
                        digest: STANDARD_DIGEST.to_string(),
                        size: STANDARD_PACK.len(),
                        kernels: compiled.kernels().iter().map(|k| k.name.clone()).collect(),
                    };
                    pack_registry::push(
                        store,
                        STANDARD_PACK,
                        &checked,
                        STANDARD_PACK_NAME,
                        "latest",
                    )
                    .context("storing the standard kernel pack in the registry")?;
                }
                Ok((compiled, String::new()))
            }
            PackChoice::Reference(reference) => {
                let digest = pack_registry::resolve(store, reference)?;
                let bytes = pack_registry::fetch(store, &digest)?;
                Ok((entry.pack(&PackSource::Bytes(bytes))?, String::new()))
            }
            PackChoice::File(path) => {
                let compiled = entry.pack(&PackSource::File(path.clone()))?;
                let absolute = std::path::absolute(path)
                    .with_context(|| format!("resolving {}", path.display()))?;
                Ok((compiled, absolute.display().to_string()))
            }
        }
    }
}

/// The pack a job runs: the standard one, one in the registry, or a file workers can read.
enum PackChoice {
    Standard,
    Reference(String),
    File(std::path::PathBuf),
}

fn pack_choice(pack: Option<std::path::PathBuf>) -> PackChoice {
    match pack {
        None => PackChoice::Standard,
        Some(path) => match path.to_str() {
            Some(text) if pack_registry::is_reference(text) => {
                PackChoice::Reference(text.to_string())
            }
            _ => PackChoice::File(path),
        },
    }
}

#[pymethods]
impl NativeClient {
    /// Connects to `url`.
    #[new]
    fn new(py: Python<'_>, url: String) -> PyResult<Self> {
        let store = py.detach(|| Redis::connect(&url)).map_err(errors::host)?;
        Ok(Self {
            url: store.url().to_string(),
            store: Mutex::new(store),
        })
    }

    /// The URL, without its password.
    #[getter]
    fn url(&self) -> &str {
        &self.url
    }

    /// Submits a job; returns `(job id, batch count, item count, lambda report or None)`.
    #[pyo3(signature = (kernel, items, params, pack, batch_size, ttl, time_limit, max_deliveries, lam, workers))]
    #[allow(clippy::too_many_arguments)]
    fn submit<'py>(
        &self,
        py: Python<'py>,
        kernel: String,
        items: &Bound<'py, PyAny>,
        params: Option<&Bound<'py, PyAny>>,
        pack: Option<std::path::PathBuf>,
        batch_size: Option<usize>,
        ttl: f64,
        time_limit: f64,
        max_deliveries: u64,
        lam: Option<String>,
        workers: Option<u32>,
    ) -> PyResult<Bound<'py, PyTuple>> {
        if batch_size == Some(0) {
            return Err(invalid("batch_size must be a positive number or \"auto\""));
        }
        let ttl = crate::positive_seconds("ttl", ttl)?;
        let batch_time = crate::positive_seconds("time_limit", time_limit)?;
        if max_deliveries == 0 {
            return Err(invalid("max_deliveries must be at least 1"));
        }
        let held = read_items(items)?;
        let input = held.input()?;
        if input.len() == 0 {
            return Err(invalid("items holds no items: a job needs at least one"));
        }
        let owned: Vec<Item> = (0..input.len())
            .map(|i| {
                input
                    .item(i)
                    .iter()
                    .map(|t| Tensor {
                        shape: t.shape.to_vec(),
                        data: t.data.to_vec(),
                    })
                    .collect()
            })
            .collect();
        let params = crate::items::read_params(params)?;
        let choice = pack_choice(pack);
        let spec = self.with_store(py, |store| {
            let (pack, pack_path) = Self::submit_pack(store, &choice)?;
            if !pack.has_kernel(&kernel) {
                return Err(Invalid(crate::unknown_kernel(&pack, &kernel)).into());
            }
            // An automatic batch size follows a plan: a sample through the pack, then the
            // model of this machine, or of the Lambda invocations `lam` starts.
            let plan = match batch_size {
                Some(_) => None,
                None => {
                    let venue = match &lam {
                        None => SubmitVenue::ThisMachine,
                        Some(_) => SubmitVenue::Lambda {
                            memory_mb: DEFAULT_LAMBDA_MEMORY_MB,
                            concurrency: u64::from(DEFAULT_MAX_CONCURRENCY),
                        },
                    };
                    let call = KernelCall {
                        kernel: &kernel,
                        params: &params,
                        batch_time,
                    };
                    Some(
                        plan::for_submit(store, &pack, &call, &owned, SAMPLE_TIME, venue)
                            .with_context(|| {
                                format!("sampling the items through kernel {kernel}")
                            })?,
                    )
                }
            };
            let options = SubmitOptions {
                kernel,
                params,
                pack_path,
                batch_size,
                ttl,
                max_deliveries,
                batch_time,
                lease: None,
            };
            let spec = jobs::submit_planned(store, &pack, &owned, &options, plan.as_ref())?;
            Ok((spec, plan))
        });
        let (spec, plan) = spec?;
        let report = match lam {
            None => py.None().into_bound(py),
            Some(function) => {
                let workers = workers.unwrap_or_else(|| match &plan {
                    Some(plan) => plan.invocations(DEFAULT_MAX_CONCURRENCY),
                    None => fanout::default_workers(spec.batch_count, DEFAULT_MAX_CONCURRENCY),
                });
                let target = fanout::FanoutTarget {
                    function,
                    endpoint: std::env::var("CRUNCH_LAMBDA_ENDPOINT").ok(),
                };
                let job = spec.job.clone();
                let report = py
                    .detach(|| fanout::Fanout::connect(&target)?.invoke_workers(&job, workers))
                    .map_err(errors::host)?;
                (report.invoked, report.retries, report.failed)
                    .into_pyobject(py)?
                    .into_any()
            }
        };
        PyTuple::new(
            py,
            [
                spec.job.into_pyobject(py)?.into_any(),
                spec.batch_count.into_pyobject(py)?.into_any(),
                spec.item_count.into_pyobject(py)?.into_any(),
                report,
            ],
        )
    }

    /// The spec of `job` as a dict (kernel, pack_digest, item_count, batch_count, ..., and
    /// `plan`: the followed plan's JSON, or None).
    fn spec<'py>(&self, py: Python<'py>, job: String) -> PyResult<Bound<'py, PyDict>> {
        Self::check_id(&job)?;
        let spec = self.with_store(py, |store| jobs::spec(store, &job))?;
        let dict = PyDict::new(py);
        dict.set_item("job", &spec.job)?;
        dict.set_item("kernel", &spec.kernel)?;
        dict.set_item("pack_digest", &spec.pack_digest)?;
        dict.set_item("pack_path", &spec.pack_path)?;
        dict.set_item("item_count", spec.item_count)?;
        dict.set_item("batch_count", spec.batch_count)?;
        dict.set_item("batch_size", spec.batch_size)?;
        dict.set_item("ttl_seconds", spec.ttl_seconds)?;
        dict.set_item("created_ms", spec.created_ms)?;
        dict.set_item("plan", spec.plan)?;
        Ok(dict)
    }

    /// The state and counters of `job` as a dict.
    fn status<'py>(&self, py: Python<'py>, job: String) -> PyResult<Bound<'py, PyDict>> {
        Self::check_id(&job)?;
        let progress = self.with_store(py, |store| jobs::progress(store, &job))?;
        progress_dict(py, &progress)
    }

    /// Every result of `job`, in input order: `(values, failures)` like `run`.
    fn results<'py>(&self, py: Python<'py>, job: String) -> PyResult<Bound<'py, PyTuple>> {
        Self::check_id(&job)?;
        let (results, batch_size) = self.with_store(py, |store| {
            let batch_size = jobs::spec(store, &job)?.batch_size;
            Ok((jobs::results(store, &job)?, batch_size))
        })?;
        let (values, failures) = py.detach(|| {
            let results = results.iter().flat_map(wire::Results::to_vec).collect();
            split_results(results, batch_size)
        });
        to_python(py, values, &failures)
    }

    /// The failed items of `job` recorded so far: `(item, batch, kind, message)` tuples.
    fn failures<'py>(&self, py: Python<'py>, job: String) -> PyResult<Bound<'py, PyList>> {
        Self::check_id(&job)?;
        let (failed, batch_size) = self.with_store(py, |store| {
            let batch_size = jobs::spec(store, &job)?.batch_size.max(1);
            Ok((jobs::failed_items(store, &job)?, batch_size))
        })?;
        PyList::new(
            py,
            failed.iter().map(|f| {
                (
                    f.item,
                    f.item / batch_size,
                    f.kind.as_str(),
                    f.message.as_str(),
                )
            }),
        )
    }

    /// Cancels `job`; returns its state and counters.
    fn cancel<'py>(&self, py: Python<'py>, job: String) -> PyResult<Bound<'py, PyDict>> {
        Self::check_id(&job)?;
        let progress = self.with_store(py, |store| jobs::cancel(store, &job))?;
        progress_dict(py, &progress)
    }

    /// Every job in Redis, oldest first: `(id, status dict)` pairs.
    fn jobs<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyList>> {
        let listed = self.with_store(py, jobs::list)?;
        let list = PyList::empty(py);
        for (id, progress) in &listed {
            list.append((id, progress_dict(py, progress)?))?;
        }
        Ok(list)
    }

    /// Checks the component at `path` and pushes it as `name:tag`; returns its digest, size
    /// and kernel names.
    fn push_pack<'py>(
        &self,
        py: Python<'py>,
        path: std::path::PathBuf,
        name: String,
        tag: String,
    ) -> PyResult<Bound<'py, PyTuple>> {
        let reference = format!("{name}:{tag}");
        pack_registry::parse_name(&reference).map_err(|e| invalid(e.to_string()))?;
        let bytes = std::fs::read(&path)
            .map_err(|e| invalid(format!("reading kernel pack {}: {e}", path.display())))?;
        let checked = py
            .detach(|| {
                let entry = packs::engine(CLIENT_MEMORY, 1)?;
                anyhow::Ok(pack_registry::check(
                    entry.engine(),
                    &bytes,
                    pack_registry::DEFAULT_MAX_SIZE,
                ))
            })
            .map_err(errors::host)?
            .map_err(|e| invalid(format!("refused {}: {e}", path.display())))?;
        self.with_store(py, |store| {
            pack_registry::push(store, &bytes, &checked, &name, &tag)
        })?;
        (checked.digest, checked.size, checked.kernels).into_pyobject(py)
    }

    /// Every tag in the registry: `(tag, digest, size, kernel names)`.
    fn packs<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyList>> {
        let listed = self.with_store(py, pack_registry::list)?;
        PyList::new(
            py,
            listed
                .into_iter()
                .map(|p| (p.tag, p.digest, p.size, p.kernels)),
        )
    }
}

fn progress_dict<'py>(py: Python<'py>, p: &Progress) -> PyResult<Bound<'py, PyDict>> {
    let dict = PyDict::new(py);
    dict.set_item("state", p.state.as_str())?;
    dict.set_item("batches_done", p.batches_done)?;
    dict.set_item("batches_dead", p.batches_dead)?;
    dict.set_item("batch_count", p.batch_count)?;
    dict.set_item("items_ok", p.items_ok)?;
    dict.set_item("items_failed", p.items_failed)?;
    dict.set_item("item_count", p.item_count)?;
    dict.set_item("error", &p.error)?;
    Ok(dict)
}
