//! Whole arrays, as a user runs them: `crunch run --threads 1` on one large `.npy` array against
//! the NumPy/SciPy call on the same array (bench/python/whole_array.py), compute time against
//! compute time (and whole command against load, compute and save).

use std::fs;
use std::path::Path;
use std::process::Command;
use std::time::Instant;

use anyhow::{Context, Result, ensure};
use crunch::data::codec::{self, Format};
use crunch::{Item, Tensor};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde::Serialize;

/// One whole-array comparison.
#[derive(Debug, Default, Serialize)]
pub struct WholeArray {
    /// Kernel.
    pub kernel: String,
    /// The array's shape.
    pub shape: String,
    /// The bar for compute over compute (NumPy's time / Crunch's).
    pub bar: f64,
    /// `crunch run --threads 1`: compute seconds it reports.
    pub crunch_compute_s: f64,
    /// `crunch run --threads 1`: the whole command, seconds.
    pub crunch_wall_s: f64,
    /// NumPy/SciPy: best compute seconds.
    pub numpy_compute_s: f64,
    /// NumPy/SciPy: load + compute + save, seconds.
    pub numpy_wall_s: f64,
    /// NumPy compute / Crunch compute.
    pub compute_ratio: f64,
    /// NumPy load+compute+save / Crunch whole command.
    pub wall_ratio: f64,
}

/// Measures the three whole-array rows of the report.
pub fn measure(dir: &Path, crunch: &Path, pack: &Path, python: &Path) -> Result<Vec<WholeArray>> {
    fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let mut rng = StdRng::seed_from_u64(20_261_130);
    let contracts: Vec<Item> = (0..1_000_000)
        .map(|_| {
            vec![Tensor {
                shape: vec![6],
                data: crunch_bench::workloads::contract(&mut rng).to_vec(),
            }]
        })
        .collect();
    let rows = |lo: f64, hi: f64, rng: &mut StdRng| -> Vec<Item> {
        (0..2000)
            .map(|_| {
                vec![Tensor {
                    shape: vec![2000],
                    data: (0..2000).map(|_| rng.random_range(lo..hi)).collect(),
                }]
            })
            .collect()
    };
    let cases = [
        ("black_scholes", "1,000,000 x 6", contracts, 2.0),
        ("norm_cdf", "2000 x 2000", rows(-6.0, 6.0, &mut rng), 1.5),
        ("norm_ppf", "2000 x 2000", rows(0.0, 1.0, &mut rng), 1.5),
    ];
    let mut out = Vec::new();
    for (kernel, shape, items, bar) in cases {
        eprintln!("whole array: {kernel} ({shape}) ...");
        let input = dir.join(format!("{kernel}.npy"));
        codec::write_items(&input, Format::Npy, &items)?;
        drop(items);
        let (crunch_compute_s, crunch_wall_s) = crunch_run(crunch, pack, kernel, &input, dir)?;
        let numpy = python_run(python, kernel, &input)?;
        let numpy_compute_s = numpy["compute_s"].as_f64().unwrap_or(f64::NAN);
        let numpy_wall_s = numpy_compute_s
            + numpy["load_s"].as_f64().unwrap_or(f64::NAN)
            + numpy["save_s"].as_f64().unwrap_or(f64::NAN);
        out.push(WholeArray {
            kernel: kernel.into(),
            shape: shape.into(),
            bar,
            crunch_compute_s,
            crunch_wall_s,
            numpy_compute_s,
            numpy_wall_s,
            compute_ratio: numpy_compute_s / crunch_compute_s,
            wall_ratio: numpy_wall_s / crunch_wall_s,
        });
        let _ = fs::remove_file(&input);
    }
    Ok(out)
}

/// The best of three `crunch run --threads 1` runs: (compute seconds it reports, wall seconds).
/// The first compiles the pack into a disk cache of its own; the others load it from there, as
/// a user's second command does.
fn crunch_run(
    crunch: &Path,
    pack: &Path,
    kernel: &str,
    input: &Path,
    dir: &Path,
) -> Result<(f64, f64)> {
    let output = dir.join(format!("{kernel}.out.npy"));
    let mut best = (f64::INFINITY, f64::INFINITY);
    for _ in 0..3 {
        let start = Instant::now();
        let run = Command::new(crunch)
            .args(["run", "--kernel", kernel, "--threads", "1", "--pack"])
            .arg(pack)
            .arg("--input")
            .arg(input)
            .arg("--output")
            .arg(&output)
            .env("CRUNCH_CACHE_DIR", dir.join("pack-cache"))
            .output()
            .with_context(|| format!("running {}", crunch.display()))?;
        let wall = start.elapsed().as_secs_f64();
        let stderr = String::from_utf8_lossy(&run.stderr);
        ensure!(run.status.success(), "crunch run {kernel} failed: {stderr}");
        let compute = stderr
            .split("compute ")
            .nth(1)
            .and_then(|rest| rest.split(' ').next())
            .and_then(|s| s.parse::<f64>().ok())
            .with_context(|| format!("no compute time in crunch run's summary: {stderr}"))?;
        best = (best.0.min(compute), best.1.min(wall));
    }
    let _ = fs::remove_file(&output);
    Ok(best)
}

fn python_run(python: &Path, kernel: &str, input: &Path) -> Result<serde_json::Value> {
    let script = crunch_tests::paths::repo_root().join("bench/python/whole_array.py");
    let run = Command::new(python)
        .arg(&script)
        .args(["--kernel", kernel, "--input"])
        .arg(input)
        // These machines may set them for old OpenBLAS builds; they slow a current NumPy.
        .env_remove("OPENBLAS_CORETYPE")
        .env_remove("OPENBLAS_L2_SIZE")
        .output()
        .with_context(|| format!("running {}", script.display()))?;
    ensure!(
        run.status.success(),
        "{} failed: {}",
        script.display(),
        String::from_utf8_lossy(&run.stderr)
    );
    serde_json::from_slice(&run.stdout).context("parsing whole_array.py's JSON")
}
