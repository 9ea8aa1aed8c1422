//! The `crunch` Python package against the CLI: `python/package.py` (in the venv that
//! `just py-dev` installed the package into) times `crunch.run` on 1,000,000 `black_scholes`
//! contracts against `crunch run`'s compute time on the same contracts, and one one-item call.

use std::ffi::OsString;
use std::path::Path;

use anyhow::Result;
use serde::{Deserialize, Serialize};

/// What `package.py` measured.
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct PythonPackage {
    /// Contracts in the run.
    pub items: usize,
    /// `crunch run`'s compute time, median, seconds.
    pub cli_compute_s: f64,
    /// `crunch.run`'s whole call, median, seconds.
    pub package_s: f64,
    /// package / CLI.
    pub package_over_cli: f64,
    /// Whether both gave the same bytes.
    pub identical_outputs: bool,
    /// One `crunch.run` call on one contract, median, microseconds.
    pub one_item_call_us: f64,
}

/// Runs `bench/python/package.py` with `python` (where `just py-dev` installed the package)
/// against `crunch`; the JSON goes to `out`.
pub fn measure(python: &Path, crunch: &Path, out: &Path) -> Result<PythonPackage> {
    let mut crunch_arg = OsString::from("--crunch=");
    crunch_arg.push(crunch);
    crate::baselines::python_json(python, "package.py", &[crunch_arg], &[], out)
}
