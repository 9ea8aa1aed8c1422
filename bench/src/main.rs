//! `crunch-bench`: measures Crunch against the same kernels built natively and against
//! NumPy/SciPy, on the same inputs, plus throughput through Redis, cold start and sizes; writes
//! `report.md` and `report.json`. `just bench` runs the criterion benchmarks first and then
//! this, which reads their estimates.

mod baselines;
mod lambda_runs;
mod package;
mod redis_runs;
mod report;
mod whole_array;

use std::fs;
use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::Parser;
use crunch::{Engine, KernelPack, Limits};
use crunch_bench::workloads::{Workload, workloads};
use crunch_tests::paths;

use crate::report::{KernelRow, Report, Sizes};

/// Writes the benchmark report (run `cargo bench -p crunch-bench` first for the kernel figures).
#[derive(Parser, Debug)]
struct Args {
    /// Where the report and the Python inputs go. Default: target/bench.
    #[arg(long)]
    out: Option<PathBuf>,
    /// Python with numpy, scipy and redis (`just py-env` makes it). Default: target/py-env.
    #[arg(long)]
    python: Option<PathBuf>,
    /// Skip the Python baselines and the Python worker.
    #[arg(long)]
    no_python: bool,
    /// Items of the end-to-end Redis job.
    #[arg(long, default_value_t = 1_000_000)]
    e2e_items: usize,
    /// Process starts measured per cold-start case.
    #[arg(long, default_value_t = 7)]
    cold_runs: usize,
    /// Drains measured per vCPU count of the Lambda comparison.
    #[arg(long, default_value_t = 3)]
    lambda_runs: usize,
}

fn main() -> Result<()> {
    // The in-process worker below runs as `crunch worker` does.
    crunch::process::memory::keep_freed_memory();
    crunch::queue::store::install_tls_provider();
    let args = Args::parse();
    let target = paths::target_dir();
    let out = args.out.unwrap_or_else(|| target.join("bench"));
    fs::create_dir_all(&out).with_context(|| format!("creating {}", out.display()))?;
    let python = match args.no_python {
        true => None,
        false => Some(
            args.python
                .unwrap_or_else(|| target.join("py-env/bin/python")),
        ),
    };

    let engine = Engine::new(Limits::default())?;
    let component = paths::component("crunch_kernels");
    let pack = KernelPack::load(&engine, &component)?;
    let workloads = workloads();
    let mut report = Report {
        machine: machine(),
        ..Report::default()
    };

    let criterion = target.join("criterion");
    report.kernels = workloads
        .iter()
        .map(|w| kernel_row(&criterion, w))
        .collect();
    report.fixed_cost_us =
        baselines::criterion_ms(&criterion, "fixed_cost", "empty_batch").map(|ms| ms * 1e3);

    if let Some(python) = &python {
        eprintln!("Python baselines ...");
        let inputs = out.join("inputs");
        baselines::write_inputs(&inputs, &pack, &workloads)?;
        let results = baselines::run_python(python, &inputs, &out.join("python.json"))?;
        merge_python(&mut report.kernels, &results);
        report.python = Some(serde_json::json!({
            "python": results["python"], "numpy": results["numpy"],
            "scipy": results["scipy"], "blas": results["blas"],
        }));
    }

    if let Some(python) = &python {
        report.whole_arrays =
            whole_array::measure(&out.join("whole"), &paths::crunch_bin(), &component, python)?;
        eprintln!("Python package ...");
        let crunch = target.join("release/crunch");
        report.python_package = Some(package::measure(
            python,
            &crunch,
            &out.join("package.json"),
        )?);
    }

    eprintln!("Redis runs ...");
    let bench = redis_runs::Bench::start(pack, &component)?;
    report.end_to_end = Some(bench.end_to_end(python.as_deref(), args.e2e_items)?);
    report.cold_start = Some(bench.cold_start(args.cold_runs)?);
    if std::thread::available_parallelism().map_or(1, |n| n.get()) >= 2 {
        eprintln!("Lambda with 1 and 2 vCPUs ...");
        // About 4 s of one core's work.
        let implied_vol = workloads.iter().find(|w| w.kernel == "implied_vol");
        if let Some(w) = implied_vol {
            report.lambda_vcpus = Some(bench.lambda_vcpus(&w.items, 4.0, args.lambda_runs)?);
        }
    }
    for w in workloads
        .iter()
        .filter(|w| ["black_scholes", "implied_vol", "matmul", "describe"].contains(&w.kernel))
    {
        // Batches of at least 10 ms: repeat the workload's items as needed.
        let row = report.kernels.iter().find(|k| k.kernel == w.kernel);
        let repeat = row
            .and_then(|r| r.wasm_ms)
            .map_or(4, |ms| (15.0 / ms).ceil().max(1.0) as usize);
        let batch: Vec<_> = w
            .items
            .iter()
            .cycle()
            .take(w.items.len() * repeat)
            .cloned()
            .collect();
        report
            .kernel_share
            .push(bench.kernel_share(w.kernel, &w.params, &batch, 20)?);
    }

    report.sizes = sizes(&component, &target);
    report.check_targets();
    let json_path = out.join("report.json");
    let md_path = out.join("report.md");
    fs::write(&json_path, serde_json::to_string_pretty(&report)?)?;
    let markdown = report.markdown();
    fs::write(&md_path, &markdown)?;
    println!("{markdown}");
    eprintln!("wrote {} and {}", md_path.display(), json_path.display());
    Ok(())
}

fn kernel_row(criterion: &std::path::Path, w: &Workload) -> KernelRow {
    let wasm_ms = baselines::criterion_ms(criterion, w.kernel, "wasm");
    let native_ms = baselines::criterion_ms(criterion, w.kernel, "native");
    let wasm_unchecked_ms = baselines::criterion_ms(criterion, w.kernel, "wasm_unchecked");
    KernelRow {
        wasm_unchecked_ms,
        checks_cost: wasm_ms.zip(wasm_unchecked_ms).map(|(w, u)| w / u),
        kernel: w.kernel.into(),
        items: w.items.len(),
        wasm_ms,
        native_ms,
        wasm_over_native: wasm_ms.zip(native_ms).map(|(w, n)| w / n),
        wasm_items_per_s: wasm_ms.map(|ms| w.items.len() as f64 / (ms / 1e3)),
        ..KernelRow::default()
    }
}

fn merge_python(rows: &mut [KernelRow], results: &serde_json::Value) {
    for row in rows {
        let k = &results["kernels"][&row.kernel];
        row.scipy_per_item_items_per_s = k["per_item"]["items_per_s"].as_f64();
        row.numpy_vectorized_items_per_s = k["vectorized"]["items_per_s"].as_f64();
        row.speedup_vs_per_item = row
            .wasm_items_per_s
            .zip(row.scipy_per_item_items_per_s)
            .map(|(c, p)| c / p);
        row.speedup_vs_vectorized = row
            .wasm_items_per_s
            .zip(row.numpy_vectorized_items_per_s)
            .map(|(c, p)| c / p);
        row.python_max_rel_diff = [
            &k["per_item"]["max_rel_diff"],
            &k["vectorized"]["max_rel_diff"],
        ]
        .iter()
        .filter_map(|v| v.as_f64())
        .reduce(f64::max);
    }
}

fn sizes(component: &std::path::Path, target: &std::path::Path) -> Sizes {
    let len = |p: PathBuf| fs::metadata(p).ok().map(|m| m.len());
    Sizes {
        component: len(component.to_path_buf()).unwrap_or_default(),
        bootstrap: len(target.join("release/bootstrap")),
        wheel: fs::read_dir(target.join("wheels")).ok().and_then(|dir| {
            dir.flatten()
                .map(|e| e.path())
                .find(|p| p.extension().is_some_and(|x| x == "whl"))
                .and_then(len)
        }),
        lambda_zips: ["arm64", "x86-64"]
            .iter()
            .filter_map(|arch| {
                let zip = target
                    .join("lambda")
                    .join(arch)
                    .join("bootstrap/bootstrap.zip");
                Some((arch.to_string(), len(zip)?))
            })
            .collect(),
    }
}

/// CPU model, core count and the date, for the report's first line.
fn machine() -> String {
    let cpu = fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|info| {
            info.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split(':').nth(1))
                .map(|m| m.trim().to_string())
        })
        .unwrap_or_else(|| "unknown CPU".into());
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let date = std::process::Command::new("date")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default();
    format!(
        "{cpu}, {cores} cores, {} {}; {date}",
        std::env::consts::OS,
        std::env::consts::ARCH
    )
}
