//! The figures measured outside this process: criterion's estimates for the wasm and native
//! kernels, and the Python baselines script run on the same workloads.

use std::fs;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use anyhow::{Context, Result, ensure};
use crunch::data::codec;
use crunch::{KernelCall, KernelPack, run_batch};
use serde_json::{Value, json};

use crunch_bench::Workload;

/// Criterion's median estimate for `group/function`, in ms, if that benchmark has run.
pub fn criterion_ms(criterion_dir: &Path, group: &str, function: &str) -> Option<f64> {
    let path = criterion_dir
        .join(group)
        .join(function)
        .join("new/estimates.json");
    let text = fs::read_to_string(path).ok()?;
    let estimates: Value = serde_json::from_str(&text).ok()?;
    Some(estimates["median"]["point_estimate"].as_f64()? / 1e6)
}

/// Writes each workload's items, parameters and Crunch's own results (the Python outputs are
/// checked against them) under `dir`, with a `manifest.json`.
pub fn write_inputs(dir: &Path, pack: &KernelPack, workloads: &[Workload]) -> Result<()> {
    fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let mut manifest = Vec::new();
    for w in workloads {
        let call = KernelCall {
            kernel: w.kernel,
            params: &w.params,
            batch_time: Duration::from_secs(60),
        };
        let outcome = run_batch(pack, &call, 0, &w.items);
        ensure!(
            outcome.error.is_none(),
            "the {} workload failed: {:?}",
            w.kernel,
            outcome.error
        );
        let items = format!("{}.crb", w.kernel);
        let expected = format!("{}.results.crb", w.kernel);
        fs::write(dir.join(&items), codec::encode_items(&w.items))?;
        fs::write(dir.join(&expected), codec::encode_results(&outcome.results))?;
        let params: serde_json::Map<String, Value> = w
            .params
            .iter()
            .map(|(name, t)| (name.clone(), json!(t.data)))
            .collect();
        manifest.push(json!({
            "kernel": w.kernel,
            "items": items,
            "expected": expected,
            "params": params,
            "count": w.items.len(),
        }));
    }
    let manifest = json!({ "workloads": manifest });
    fs::write(
        dir.join("manifest.json"),
        serde_json::to_string_pretty(&manifest)?,
    )?;
    Ok(())
}

/// Runs `bench/python/baselines.py` on the inputs in `dir`, one thread for every library, and
/// returns its JSON.
pub fn run_python(python: &Path, dir: &Path, out: &Path) -> Result<Value> {
    let mut inputs = std::ffi::OsString::from("--inputs=");
    inputs.push(dir);
    let single_thread = [
        ("OPENBLAS_NUM_THREADS", "1"),
        ("OMP_NUM_THREADS", "1"),
        ("MKL_NUM_THREADS", "1"),
    ];
    python_json(python, "baselines.py", &[inputs], &single_thread, out)
}

/// Runs `bench/python/SCRIPT ARGS --out OUT` with `python` and `envs`, and reads the JSON it
/// writes to `out`.
pub fn python_json<T: serde::de::DeserializeOwned>(
    python: &Path,
    script: &str,
    args: &[std::ffi::OsString],
    envs: &[(&str, &str)],
    out: &Path,
) -> Result<T> {
    let script = crunch_tests::paths::repo_root()
        .join("bench/python")
        .join(script);
    let status = Command::new(python)
        .arg(&script)
        .args(args)
        .arg("--out")
        .arg(out)
        .envs(envs.iter().copied())
        // These machines may set them for old OpenBLAS builds; they slow a current NumPy.
        .env_remove("OPENBLAS_CORETYPE")
        .env_remove("OPENBLAS_L2_SIZE")
        .status()
        .with_context(|| format!("running {} {}", python.display(), script.display()))?;
    ensure!(status.success(), "{} failed: {status}", script.display());
    let text = fs::read_to_string(out).with_context(|| format!("reading {}", out.display()))?;
    serde_json::from_str(&text).with_context(|| format!("parsing {}", out.display()))
}
