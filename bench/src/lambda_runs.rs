//! Lambda vCPUs: one CPU-bound job drained by one invocation of the real bootstrap under
//! cargo-lambda's emulator, with 1 vCPU and with 2 (the process limited to that many CPUs with
//! `taskset`, and the memory size that buys them), as a ratio of drain times. The job is
//! implied_vol (a root search per item: much compute per byte), so that Redis, which shares the
//! machine's cores here but not on AWS, moves little data per second of kernel time.

use std::time::{Duration, Instant};

use anyhow::{Context, Result, ensure};
use crunch::{Item, KernelCall, run_batch};
use crunch_tests::lambda_env::{Bootstrap, Emulator};
use serde_json::Value;

use crate::redis_runs::Bench;
use crate::report::{LambdaVcpus, median_of};

/// Batches of the job: a multiple of both loop counts, enough that the loops stay busy.
const BATCHES: usize = 40;

/// The job's kernel.
const KERNEL: &str = "implied_vol";

impl Bench {
    /// Drain time of an implied_vol job of `workload`'s items, repeated to about `seconds` of
    /// one core's work (sized from a batch timed here), with 1 vCPU and with 2, `runs` times
    /// each.
    pub fn lambda_vcpus(
        &self,
        workload: &[Item],
        seconds: f64,
        runs: usize,
    ) -> Result<LambdaVcpus> {
        let items_per_s = self.items_per_s(workload);
        let items = ((items_per_s * seconds) as usize / BATCHES).max(1) * BATCHES;
        let job_items: Vec<Item> = workload.iter().cycle().take(items).cloned().collect();
        let dir = tempfile::tempdir()?;
        let cache = self.warm_cache().display().to_string();
        let drain = |vcpus: usize| -> Result<Duration> {
            let cpus = (0..vcpus)
                .map(|c| c.to_string())
                .collect::<Vec<_>>()
                .join(",");
            let memory = (1769 * vcpus).to_string();
            // An emulator of its own: one runtime per emulator, as on Lambda.
            let emulator = Emulator::start()?;
            let _bootstrap = Bootstrap::start_on_cpus(
                &emulator,
                &self.redis_url(),
                dir.path(),
                &[
                    ("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", memory.as_str()),
                    ("CRUNCH_TIME_BUDGET_MS", "600000"),
                    ("CRUNCH_CACHE_DIR", cache.as_str()),
                ],
                Some(&cpus),
            )?;
            // A first invocation loads the pack; the second is measured.
            let mut took = Duration::ZERO;
            for _ in 0..2 {
                let job = self.submit(KERNEL, &[], &job_items, items / BATCHES)?;
                let start = Instant::now();
                let (status, body) = emulator.invoke(&format!("{{\"job\": \"{job}\"}}"))?;
                took = start.elapsed();
                ensure!(status == 200, "invocation failed: {body}");
                let summary: Value = serde_json::from_str(&body).context("the response")?;
                ensure!(
                    summary["job_state"] == "done" && summary["concurrency"] == vcpus,
                    "expected a drained job with {vcpus} claim loops: {body}"
                );
            }
            Ok(took)
        };
        let (mut one, mut two) = (Vec::new(), Vec::new());
        for _ in 0..runs {
            one.push(drain(1)?.as_secs_f64());
            two.push(drain(2)?.as_secs_f64());
        }
        let one_vcpu_s = median_of(one).unwrap_or_default();
        let two_vcpus_s = median_of(two).unwrap_or_default();
        Ok(LambdaVcpus {
            items,
            batches: BATCHES,
            one_vcpu_s,
            two_vcpus_s,
            ratio: one_vcpu_s / two_vcpus_s,
            runs,
        })
    }
}

impl Bench {
    /// Items/s of the kernel on one core: `items` through the component, after one run to
    /// warm up.
    fn items_per_s(&self, items: &[Item]) -> f64 {
        let call = KernelCall {
            kernel: KERNEL,
            params: &[],
            batch_time: Duration::from_secs(60),
        };
        run_batch(self.pack(), &call, 0, items);
        let start = Instant::now();
        run_batch(self.pack(), &call, 0, items);
        items.len() as f64 / start.elapsed().as_secs_f64()
    }
}
