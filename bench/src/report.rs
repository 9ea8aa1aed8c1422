//! The benchmark report: what was measured, the targets checked against it, and its
//! rendering as JSON and markdown.

use serde::Serialize;

use crate::whole_array::WholeArray;

/// One kernel's figures: wasm and native from criterion, Python from the baselines script.
#[derive(Debug, Default, Serialize)]
pub struct KernelRow {
    /// Kernel name.
    pub kernel: String,
    /// Items in the workload (one batch).
    pub items: usize,
    /// Median time of the batch through the component (fresh instance), in ms.
    pub wasm_ms: Option<f64>,
    /// Median time of the same batch through the natively built kernels, in ms.
    pub native_ms: Option<f64>,
    /// wasm / native.
    pub wasm_over_native: Option<f64>,
    /// Median time through the component compiled without epoch checks, in ms.
    pub wasm_unchecked_ms: Option<f64>,
    /// wasm / wasm without epoch checks: what dropping the checks would buy.
    pub checks_cost: Option<f64>,
    /// Items per second through the component, one thread.
    pub wasm_items_per_s: Option<f64>,
    /// Items per second of the per-item SciPy code, one thread.
    pub scipy_per_item_items_per_s: Option<f64>,
    /// Items per second of vectorised NumPy, one thread.
    pub numpy_vectorized_items_per_s: Option<f64>,
    /// Crunch items/s over per-item SciPy items/s.
    pub speedup_vs_per_item: Option<f64>,
    /// Crunch items/s over vectorised NumPy items/s.
    pub speedup_vs_vectorized: Option<f64>,
    /// Largest relative difference between the Python outputs and Crunch's.
    pub python_max_rel_diff: Option<f64>,
}

/// Items/s through Redis: the same job drained by different workers.
#[derive(Debug, Default, Serialize)]
pub struct EndToEnd {
    /// Kernel of the job.
    pub kernel: String,
    /// Items in the job.
    pub items: usize,
    /// Items per batch.
    pub batch_size: usize,
    /// One and two `crunch worker --threads 1` processes, free to use every core.
    pub unpinned: Scaling,
    /// The same with each worker pinned to a core of its own (`taskset`), so that one worker
    /// cannot use the core a second one would add; absent on a machine with one core.
    pub pinned: Option<Scaling>,
    /// One Python worker process (redis-py, NumPy/SciPy) following docs/protocol.md.
    pub python_worker_items_per_s: Option<f64>,
}

/// One job drained by one worker, then by two.
#[derive(Debug, Default, Serialize)]
pub struct Scaling {
    /// One worker, items/s.
    pub one_worker_items_per_s: f64,
    /// Two workers, items/s.
    pub two_workers_items_per_s: f64,
    /// two / one.
    pub ratio: f64,
}

/// Process start to the first batch's result.
#[derive(Debug, Default, Serialize)]
pub struct ColdStart {
    /// With the compiled pack in the disk cache (median of the runs), ms.
    pub cached_ms: f64,
    /// With an empty cache: the pack is compiled (median), ms.
    pub compile_ms: f64,
    /// Runs of each.
    pub runs: usize,
}

/// Share of a worker's wall time spent instantiating and running kernels.
#[derive(Debug, Default, Serialize)]
pub struct KernelShare {
    /// Kernel of the job.
    pub kernel: String,
    /// Median batch compute time, ms.
    pub batch_ms: f64,
    /// Batches in the job.
    pub batches: u64,
    /// Kernel time / worker wall time.
    pub share: f64,
}

/// One CPU-bound job drained by one Lambda invocation (the bootstrap under cargo-lambda's
/// emulator) with 1 vCPU and with 2.
#[derive(Debug, Default, Serialize)]
pub struct LambdaVcpus {
    /// Items of the implied_vol job.
    pub items: usize,
    /// Batches of the job.
    pub batches: usize,
    /// Drain time with 1 vCPU (one claim loop), median, s.
    pub one_vcpu_s: f64,
    /// Drain time with 2 vCPUs (two claim loops), median, s.
    pub two_vcpus_s: f64,
    /// one / two.
    pub ratio: f64,
    /// Runs of each.
    pub runs: usize,
}

/// Artefact sizes in bytes.
#[derive(Debug, Default, Serialize)]
pub struct Sizes {
    /// The standard kernel pack component.
    pub component: u64,
    /// The release `bootstrap` binary (x86_64, not stripped).
    pub bootstrap: Option<u64>,
    /// The Python package's wheel from `just wheel`, when built.
    pub wheel: Option<u64>,
    /// The Lambda zips from `just package`, when built: (architecture, bytes).
    pub lambda_zips: Vec<(String, u64)>,
}

/// A target of the benchmark issue and whether this run meets it.
#[derive(Debug, Serialize)]
pub struct Target {
    /// What is measured.
    pub name: String,
    /// The bar, in words.
    pub bar: String,
    /// What this run measured, in words.
    pub measured: String,
    /// Met, missed, or not measured (None).
    pub met: Option<bool>,
}

/// Everything one `just bench` run measured.
#[derive(Debug, Default, Serialize)]
pub struct Report {
    /// Where and when.
    pub machine: String,
    /// Per kernel.
    pub kernels: Vec<KernelRow>,
    /// Instantiate plus one call on an empty batch, in microseconds.
    pub fixed_cost_us: Option<f64>,
    /// Through Redis.
    pub end_to_end: Option<EndToEnd>,
    /// Cold start.
    pub cold_start: Option<ColdStart>,
    /// Lambda with 1 vCPU and with 2.
    pub lambda_vcpus: Option<LambdaVcpus>,
    /// Time inside kernels.
    pub kernel_share: Vec<KernelShare>,
    /// Whole arrays through `crunch run --threads 1` against NumPy/SciPy.
    pub whole_arrays: Vec<WholeArray>,
    /// Sizes.
    pub sizes: Sizes,
    /// The targets, checked.
    pub targets: Vec<Target>,
    /// Python and library versions of the baselines.
    pub python: Option<serde_json::Value>,
    /// The `crunch` Python package against the CLI.
    pub python_package: Option<crate::package::PythonPackage>,
}

fn median(mut values: Vec<f64>) -> Option<f64> {
    values.sort_by(f64::total_cmp);
    let n = values.len();
    (n > 0).then(|| {
        if n % 2 == 1 {
            values[n / 2]
        } else {
            (values[n / 2 - 1] + values[n / 2]) / 2.0
        }
    })
}

/// The median of `values` (None when empty).
pub fn median_of(values: impl IntoIterator<Item = f64>) -> Option<f64> {
    median(values.into_iter().collect())
}

fn target(name: &str, bar: &str, measured: String, met: Option<bool>) -> Target {
    Target {
        name: name.into(),
        bar: bar.into(),
        measured,
        met,
    }
}

impl Report {
    /// Checks every target of the issue against what was measured.
    pub fn check_targets(&mut self) {
        let mut targets = Vec::new();
        let ratios: Vec<(String, f64)> = self
            .kernels
            .iter()
            .filter_map(|k| Some((k.kernel.clone(), k.wasm_over_native?)))
            .collect();
        let med = median_of(ratios.iter().map(|(_, r)| *r));
        let worst = ratios.iter().max_by(|a, b| a.1.total_cmp(&b.1)).cloned();
        targets.push(target(
            "wasm/native, median over kernels",
            "<= 1.3x",
            med.map_or("not measured".into(), |m| format!("{m:.3}x")),
            med.map(|m| m <= 1.3),
        ));
        targets.push(target(
            "wasm/native, worst kernel",
            "<= 2x",
            worst
                .as_ref()
                .map_or("not measured".into(), |(k, r)| format!("{r:.3}x ({k})")),
            worst.as_ref().map(|(_, r)| *r <= 2.0),
        ));
        let checks: Vec<f64> = self.kernels.iter().filter_map(|k| k.checks_cost).collect();
        let checks_median = median_of(checks.iter().copied());
        targets.push(target(
            "time-limit checks: wasm with over without them, median (trusted packs without them only if >= 1.25x)",
            ">= 1.25x to adopt",
            checks_median.map_or("not measured".into(), |m| format!("{m:.3}x")),
            checks_median.map(|m| m >= 1.25),
        ));
        targets.push(target(
            "fixed cost of a batch",
            "<= 10 us",
            self.fixed_cost_us
                .map_or("not measured".into(), |us| format!("{us:.2} us")),
            self.fixed_cost_us.map(|us| us <= 10.0),
        ));
        let per_item: Vec<(String, f64)> = self
            .kernels
            .iter()
            .filter_map(|k| Some((k.kernel.clone(), k.speedup_vs_per_item?)))
            .collect();
        let slowest = per_item.iter().min_by(|a, b| a.1.total_cmp(&b.1)).cloned();
        targets.push(target(
            "Crunch vs per-item SciPy, every kernel",
            ">= 20x",
            slowest.as_ref().map_or("not measured".into(), |(k, s)| {
                format!("lowest {s:.1}x ({k})")
            }),
            slowest.as_ref().map(|(_, s)| *s >= 20.0),
        ));
        // Kernels with a bar of their own (below) are held to it instead of the common one.
        let own_bars = [
            ("implied_vol", 1.5, "implied_vol vs vectorised NumPy"),
            ("fft_power", 0.6, "fft_power vs NumPy's pocketfft"),
            ("matmul", 0.4, "matmul vs single-threaded OpenBLAS (aim)"),
        ];
        let vectorized: Vec<(String, f64)> = self
            .kernels
            .iter()
            .filter(|k| !own_bars.iter().any(|(own, _, _)| k.kernel == *own))
            .filter_map(|k| Some((k.kernel.clone(), k.speedup_vs_vectorized?)))
            .collect();
        let behind: Vec<String> = vectorized
            .iter()
            .filter(|(_, s)| *s < 1.0)
            .map(|(k, s)| format!("{k} {s:.2}x"))
            .collect();
        targets.push(target(
            "Crunch vs vectorised NumPy, every kernel without a bar of its own",
            ">= 1x",
            if vectorized.is_empty() {
                "not measured".into()
            } else if behind.is_empty() {
                "all at or above 1x".into()
            } else {
                format!("behind: {}", behind.join(", "))
            },
            (!vectorized.is_empty()).then_some(behind.is_empty()),
        ));
        for (kernel, bar, what) in own_bars {
            let ratio = self
                .kernels
                .iter()
                .find(|k| k.kernel == kernel)
                .and_then(|k| k.speedup_vs_vectorized);
            targets.push(target(
                what,
                &format!(">= {bar}x"),
                ratio.map_or("not measured".into(), |s| format!("{s:.2}x")),
                ratio.map(|s| s >= bar),
            ));
        }
        for w in &self.whole_arrays {
            targets.push(target(
                &format!(
                    "whole array: `crunch run --threads 1` {} ({}) vs NumPy/SciPy, compute",
                    w.kernel, w.shape
                ),
                &format!(">= {}x", w.bar),
                format!(
                    "{:.2}x (whole command vs load+compute+save: {:.2}x)",
                    w.compute_ratio, w.wall_ratio
                ),
                Some(w.compute_ratio >= w.bar),
            ));
        }
        let pinned = self.end_to_end.as_ref().and_then(|e| e.pinned.as_ref());
        targets.push(target(
            "two workers over one, one core each",
            ">= 1.8x",
            pinned.map_or("not measured".into(), |s| format!("{:.2}x", s.ratio)),
            pinned.map(|s| s.ratio >= 1.8),
        ));
        targets.push(target(
            "two workers over one, sharing 2 cores (report only)",
            "ratio reported",
            self.end_to_end.as_ref().map_or("not measured".into(), |e| {
                format!("{:.2}x", e.unpinned.ratio)
            }),
            None,
        ));
        targets.push(target(
            "a Lambda invocation with 2 vCPUs over 1, CPU-bound job",
            ">= 1.6x",
            self.lambda_vcpus
                .as_ref()
                .map_or("not measured".into(), |l| format!("{:.2}x", l.ratio)),
            self.lambda_vcpus.as_ref().map(|l| l.ratio >= 1.6),
        ));
        targets.push(target(
            "cold start, cached kernel",
            "<= 50 ms",
            self.cold_start
                .as_ref()
                .map_or("not measured".into(), |c| format!("{:.1} ms", c.cached_ms)),
            self.cold_start.as_ref().map(|c| c.cached_ms <= 50.0),
        ));
        let lowest_share = self
            .kernel_share
            .iter()
            .min_by(|a, b| a.share.total_cmp(&b.share));
        targets.push(target(
            "time inside kernels, batches >= 10 ms",
            ">= 90%",
            lowest_share.map_or("not measured".into(), |s| {
                format!("lowest {:.1}% ({})", s.share * 100.0, s.kernel)
            }),
            lowest_share.map(|s| s.share >= 0.9),
        ));
        let package = self.python_package.as_ref();
        targets.push(target(
            "crunch.run / crunch run compute, 1M black_scholes",
            "<= 1.10x",
            package.map_or("not measured".into(), |p| {
                format!(
                    "{:.3}x ({:.3} s / {:.3} s)",
                    p.package_over_cli, p.package_s, p.cli_compute_s
                )
            }),
            package.map(|p| p.package_over_cli <= 1.10 && p.identical_outputs),
        ));
        targets.push(target(
            "crunch.run, one-item call",
            "<= 50 us",
            package.map_or("not measured".into(), |p| {
                format!("{:.1} us", p.one_item_call_us)
            }),
            package.map(|p| p.one_item_call_us <= 50.0),
        ));
        self.targets = targets;
    }

    /// The report as markdown.
    pub fn markdown(&self) -> String {
        let mut md = String::from("# Crunch benchmark report\n\n");
        md.push_str(&format!("{}\n", self.machine));
        if let Some(blas) = self.python.as_ref().and_then(|p| p["blas"].as_str()) {
            md.push_str(&format!("\nNumPy's BLAS: {blas}\n"));
        }
        md.push_str("\n## Targets\n\n");
        md.push_str("| target | bar | measured | met |\n|---|---|---|---|\n");
        for t in &self.targets {
            let met = match t.met {
                Some(true) => "yes",
                Some(false) => "**no**",
                None => "-",
            };
            md.push_str(&format!(
                "| {} | {} | {} | {met} |\n",
                t.name, t.bar, t.measured
            ));
        }
        md.push_str(
            "\n## Kernels (one batch, one thread)\n\n\
             | kernel | items | wasm ms | native ms | wasm/native | wasm without checks ms | checks cost | Crunch items/s | SciPy per-item items/s | NumPy vectorised items/s | x per-item | x vectorised | max rel diff |\n\
             |---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n",
        );
        for k in &self.kernels {
            md.push_str(&format!(
                "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |\n",
                k.kernel,
                k.items,
                num(k.wasm_ms, 3),
                num(k.native_ms, 3),
                num(k.wasm_over_native, 3),
                num(k.wasm_unchecked_ms, 3),
                num(k.checks_cost, 3),
                num(k.wasm_items_per_s, 0),
                num(k.scipy_per_item_items_per_s, 0),
                num(k.numpy_vectorized_items_per_s, 0),
                num(k.speedup_vs_per_item, 1),
                num(k.speedup_vs_vectorized, 2),
                k.python_max_rel_diff
                    .map_or("-".into(), |d| format!("{d:.1e}")),
            ));
        }
        md.push_str(&format!(
            "\nFixed cost of a batch (instantiate + one call, no items): {} us\n",
            num(self.fixed_cost_us, 2)
        ));
        if !self.whole_arrays.is_empty() {
            md.push_str(
                "\n## Whole arrays (one thread)\n\n\
                 | kernel | array | crunch run compute s | NumPy/SciPy compute s | ratio | crunch run whole command s | NumPy load+compute+save s | ratio |\n\
                 |---|---|---:|---:|---:|---:|---:|---:|\n",
            );
            for w in &self.whole_arrays {
                md.push_str(&format!(
                    "| {} | {} | {:.3} | {:.3} | {:.2}x | {:.3} | {:.3} | {:.2}x |\n",
                    w.kernel,
                    w.shape,
                    w.crunch_compute_s,
                    w.numpy_compute_s,
                    w.compute_ratio,
                    w.crunch_wall_s,
                    w.numpy_wall_s,
                    w.wall_ratio
                ));
            }
        }
        if let Some(e) = &self.end_to_end {
            md.push_str(&format!(
                "\n## Through Redis\n\n{} items of `{}` in batches of {}, `crunch worker --threads 1` \
                 processes (each also runs a prefetch and a store thread):\n\n\
                 | workers | one, items/s | two, items/s | two / one |\n|---|---:|---:|---:|\n",
                e.items, e.kernel, e.batch_size,
            ));
            let rows = [
                ("sharing every core", Some(&e.unpinned)),
                ("one core each", e.pinned.as_ref()),
            ];
            for (how, scaling) in rows {
                if let Some(s) = scaling {
                    md.push_str(&format!(
                        "| {how} | {:.0} | {:.0} | {:.2}x |\n",
                        s.one_worker_items_per_s, s.two_workers_items_per_s, s.ratio
                    ));
                }
            }
            md.push_str(&format!(
                "\nPython worker (redis-py, NumPy/SciPy, docs/protocol.md): {} items/s.\n",
                num(e.python_worker_items_per_s, 0)
            ));
        }
        if let Some(l) = &self.lambda_vcpus {
            md.push_str(&format!(
                "\n## Lambda vCPUs\n\nOne invocation of the bootstrap under cargo-lambda's emulator \
                 drains {} implied_vol items in {} batches (median of {}): 1 vCPU {:.2} s, \
                 2 vCPUs {:.2} s, {:.2}x.\n",
                l.items, l.batches, l.runs, l.one_vcpu_s, l.two_vcpus_s, l.ratio
            ));
        }
        if let Some(c) = &self.cold_start {
            md.push_str(&format!(
                "\n## Cold start\n\nProcess start to the first batch's result (median of {}): \
                 cached kernel {:.1} ms, with a compile {:.1} ms.\n",
                c.runs, c.cached_ms, c.compile_ms
            ));
        }
        if !self.kernel_share.is_empty() {
            md.push_str("\n## Time inside kernels\n\n| kernel | batch ms | batches | share |\n|---|---:|---:|---:|\n");
            for s in &self.kernel_share {
                md.push_str(&format!(
                    "| {} | {:.1} | {} | {:.1}% |\n",
                    s.kernel,
                    s.batch_ms,
                    s.batches,
                    s.share * 100.0
                ));
            }
        }
        if let Some(p) = &self.python_package {
            md.push_str(&format!(
                "\n## Python package\n\n`crunch.run(\"black_scholes\", contracts)` on {} contracts: \
                 {:.3} s for the whole call against {:.3} s of `crunch run` compute ({:.3}x; \
                 identical outputs: {}). One one-item call: {:.1} us.\n",
                p.items,
                p.package_s,
                p.cli_compute_s,
                p.package_over_cli,
                p.identical_outputs,
                p.one_item_call_us
            ));
        }
        md.push_str(&format!(
            "\n## Sizes\n\n- component: {} bytes\n- bootstrap (release, x86_64, unstripped): {}\n",
            self.sizes.component,
            self.sizes
                .bootstrap
                .map_or("not built".into(), |b| format!("{b} bytes"))
        ));
        md.push_str(&format!(
            "- Python wheel: {}\n",
            self.sizes
                .wheel
                .map_or("not built (`just wheel`)".into(), |b| format!("{b} bytes"))
        ));
        for (arch, bytes) in &self.sizes.lambda_zips {
            md.push_str(&format!("- Lambda zip {arch}: {bytes} bytes\n"));
        }
        md
    }
}

fn num(value: Option<f64>, decimals: usize) -> String {
    value.map_or("-".into(), |v| format!("{v:.decimals$}"))
}
