//! Runs one standard kernel's bench workload a number of times, natively or through the
//! component, and nothing else: a target for profilers (`valgrind --tool=callgrind`, `perf
//! record`) whose counts do not depend on what else the machine runs.
//!
//! `cargo run --release -p crunch-bench --example kernel_profile -- KERNEL native|wasm [REPS]`

use std::time::Duration;

use anyhow::{Context, bail};
use crunch::{Engine, KernelCall, KernelPack, Limits, run_wire_batch};
use crunch_bench::workloads;

fn main() -> anyhow::Result<()> {
    // As the bench does, so that profiles show what the bench measures.
    crunch::process::memory::keep_freed_memory();
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [kernel, mode, rest @ ..] = args.as_slice() else {
        bail!("usage: kernel_profile KERNEL native|wasm [REPS]");
    };
    let reps: usize = match rest {
        [] => 10,
        [n] => n.parse().with_context(|| format!("REPS `{n}`"))?,
        _ => bail!("usage: kernel_profile KERNEL native|wasm [REPS]"),
    };
    let workload = workloads()
        .into_iter()
        .find(|w| w.kernel == kernel)
        .with_context(|| format!("no bench workload for kernel `{kernel}`"))?;
    let batch = crunch::data::wire::Batch::from_items(&workload.items);
    match mode.as_str() {
        "native" => {
            let params = workload.native_params();
            let wire = &batch.lists;
            for _ in 0..reps {
                let items = crunch_abi::Items::new(wire.count, &wire.shapes, &wire.data);
                std::hint::black_box(crunch_kernels::run_wire(kernel, &params, items));
            }
        }
        "wasm" => {
            let perf_map = crunch::process::settings::Settings::from_env().perf_map;
            let engine = Engine::with_perf_map(Limits::default(), perf_map)?;
            let component = crunch_tests::paths::component("crunch_kernels");
            let pack = KernelPack::load(&engine, &component).context("the standard pack")?;
            let call = KernelCall {
                kernel,
                params: &workload.params,
                batch_time: Duration::from_secs(600),
            };
            for _ in 0..reps {
                let done = run_wire_batch(&pack, &call, 0, &batch);
                if let Some(e) = done.error {
                    bail!("{kernel}: {e}");
                }
            }
        }
        other => bail!("mode `{other}`: expected native or wasm"),
    }
    Ok(())
}
