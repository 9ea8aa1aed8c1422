//! `crunch._native`: the Rust half of the `crunch` Python package. It runs kernels through the
//! host library (`crunch`) with the standard kernel pack embedded, reads NumPy arrays in place,
//! releases the GIL while kernels run, and speaks protocol v1 to Redis through the host's own
//! job and registry code. The Python half (`crunch/`) holds the public API, the exceptions,
//! progress bars and the notebook view.

mod client;
mod errors;
mod items;
mod local;
mod outputs;
mod packs;
mod per_process;

use std::path::PathBuf;
use std::sync::OnceLock;
use std::time::Duration;

use crunch::process::settings::Settings;
use crunch::{KernelCall, KernelPack};
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyList, PyTuple};

use crate::errors::invalid;
use crate::packs::PackSource;

/// Default time limit of one batch, seconds (as `crunch run`).
const DEFAULT_TIME_LIMIT: f64 = 60.0;

/// Default memory limit of one batch, MiB (as `crunch run`).
const DEFAULT_MEMORY_MIB: usize = 1024;

/// Runs `kernel` on `items` locally; returns `(values, failures)` (see `crunch.run`).
#[pyfunction]
#[pyo3(signature = (kernel, items, params=None, threads=None, batch_size=None, time_limit=None, memory_limit=None, pack=None, progress=None))]
#[allow(clippy::too_many_arguments)]
fn run<'py>(
    py: Python<'py>,
    kernel: &str,
    items: &Bound<'py, PyAny>,
    params: Option<&Bound<'py, PyAny>>,
    threads: Option<usize>,
    batch_size: Option<usize>,
    time_limit: Option<f64>,
    memory_limit: Option<usize>,
    pack: Option<&Bound<'py, PyAny>>,
    progress: Option<Py<PyAny>>,
) -> PyResult<Bound<'py, PyTuple>> {
    let threads = match threads {
        Some(0) => return Err(invalid("threads must be at least 1")),
        Some(n) => n,
        None => cores(),
    };
    if batch_size == Some(0) {
        return Err(invalid("batch_size must be at least 1"));
    }
    let batch_time = positive_seconds("time_limit", time_limit.unwrap_or(DEFAULT_TIME_LIMIT))?;
    let memory_mib = memory_limit.unwrap_or(DEFAULT_MEMORY_MIB);
    if memory_mib == 0 {
        return Err(invalid("memory_limit must be at least 1 (MiB)"));
    }
    let memory_bytes = memory_mib.saturating_mul(1 << 20);
    let pack = load_pack(py, pack, memory_bytes, threads)?;
    if !pack.has_kernel(kernel) {
        return Err(invalid(unknown_kernel(&pack, kernel)));
    }
    let params = items::read_params(params)?;
    let held = items::read_items(items)?;
    let input = held.input()?;
    let count = input.len();
    let settings = local::Settings {
        call: KernelCall {
            kernel,
            params: &params,
            batch_time,
        },
        batch_size: batch_size.unwrap_or_else(|| {
            crunch::sandbox::batch::local_batch_size(count, input.values(), threads, memory_bytes)
        }),
        threads,
    };
    let watch = local::Watch { progress };
    let (values, failures) = py.detach(|| local::run(&pack, &input, &settings, &watch))?;
    let values = match values {
        outputs::Values::Each(each) if each.is_empty() && held.is_array() => {
            outputs::Values::Rows {
                count: 0,
                item_shape: Vec::new(),
                data: Vec::new(),
            }
        }
        values => values,
    };
    outputs::to_python(py, values, &failures)
}

/// The kernels of a pack: `(name, summary)` pairs.
#[pyfunction]
#[pyo3(signature = (pack=None))]
fn kernels<'py>(py: Python<'py>, pack: Option<&Bound<'py, PyAny>>) -> PyResult<Bound<'py, PyList>> {
    let pack = load_pack(py, pack, DEFAULT_MEMORY_MIB << 20, 1)?;
    PyList::new(
        py,
        pack.kernels()
            .iter()
            .map(|k| (k.name.as_str(), k.summary.as_str())),
    )
}

/// `(digest, bytes)` of the embedded standard kernel pack.
#[pyfunction]
fn standard_pack(py: Python<'_>) -> (&'static str, Bound<'_, PyBytes>) {
    (
        packs::STANDARD_DIGEST,
        PyBytes::new(py, packs::STANDARD_PACK),
    )
}

/// The pack `pack` names (None: the standard pack; a path; or a component's bytes), compiled
/// for the engine of `memory_bytes` and `threads` (without the GIL: a first compile takes a
/// while).
fn load_pack(
    py: Python<'_>,
    pack: Option<&Bound<'_, PyAny>>,
    memory_bytes: usize,
    threads: usize,
) -> PyResult<std::sync::Arc<KernelPack>> {
    let source = match pack.filter(|p| !p.is_none()) {
        None => PackSource::Standard,
        Some(p) => {
            if let Ok(bytes) = p.cast::<PyBytes>() {
                PackSource::Bytes(bytes.as_bytes().to_vec())
            } else if let Ok(path) = p.extract::<PathBuf>() {
                PackSource::File(path)
            } else {
                return Err(invalid(
                    "pack must be a path to a kernel pack component (.wasm) or its bytes",
                ));
            }
        }
    };
    py.detach(|| {
        let entry = packs::engine(memory_bytes, threads)?;
        entry.pack(&source)
    })
    .map_err(errors::host)
}

/// The cores this process may use, asked once (the question reads cgroup files: tens of
/// microseconds, as much as a small run).
fn cores() -> usize {
    static CORES: OnceLock<usize> = OnceLock::new();
    *CORES.get_or_init(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
}

/// `seconds` as a duration, or an error naming `name` unless it is positive and finite.
fn positive_seconds(name: &str, seconds: f64) -> PyResult<Duration> {
    if seconds > 0.0 && seconds.is_finite() {
        Ok(Duration::from_secs_f64(seconds))
    } else {
        Err(invalid(format!(
            "{name} must be a positive number of seconds, got {seconds}"
        )))
    }
}

/// The message for a kernel the pack does not have, listing those it has.
fn unknown_kernel(pack: &KernelPack, kernel: &str) -> String {
    let names: Vec<&str> = pack.kernels().iter().map(|k| k.name.as_str()).collect();
    format!(
        "unknown kernel `{kernel}`: the pack ({}) has {}",
        pack.digest(),
        names.join(", ")
    )
}

/// What this process takes from the environment (the disk cache, the Redis CA), read once.
pub(crate) fn settings() -> &'static Settings {
    static SETTINGS: OnceLock<Settings> = OnceLock::new();
    SETTINGS.get_or_init(Settings::from_env)
}

/// The module.
#[pymodule]
fn _native(m: &Bound<'_, PyModule>) -> PyResult<()> {
    // The package is one of the edges that read the environment (`crunch::process::settings`).
    crunch::queue::store::install_tls_provider();
    crunch::queue::store::trust_redis_ca(settings().redis_ca.clone());
    m.add_function(wrap_pyfunction!(run, m)?)?;
    m.add_function(wrap_pyfunction!(kernels, m)?)?;
    m.add_function(wrap_pyfunction!(standard_pack, m)?)?;
    m.add_class::<client::NativeClient>()?;
    m.add("STANDARD_DIGEST", packs::STANDARD_DIGEST)?;
    Ok(())
}
