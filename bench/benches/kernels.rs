//! Criterion micro-benchmarks: each standard kernel's workload as one batch through the wasm
//! component (a fresh instance, as workers run it) and through the same Rust kernels built
//! natively, reading the same batch in the wire layout, and through the component compiled without epoch
//! checks (what trusted packs would gain without them); and the fixed cost of a batch
//! (instantiate plus one call on no items).
//!
//! `just bench` runs these, then `crunch-bench` reads criterion's estimates.

// criterion_group! generates an undocumented public function.
#![allow(missing_docs)]

use std::hint::black_box;
use std::time::Duration;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use crunch::{Engine, KernelCall, KernelPack, Limits, run_batch, run_wire_batch};
use crunch_bench::workloads;

fn kernels(c: &mut Criterion) {
    // As `crunch worker` runs: freed batch-sized buffers stay in the heap for the next batch.
    crunch::process::memory::keep_freed_memory();
    let engine = Engine::new(Limits::default()).expect("engine");
    let component = crunch_tests::paths::component("crunch_kernels");
    let pack = KernelPack::load(&engine, &component).expect("the standard pack");
    // The same pack compiled without the epoch checks that enforce the time limit: what
    // running trusted packs without them would buy (measurement only).
    let unchecked_engine =
        Engine::without_time_limit_checks(Limits::default()).expect("engine without checks");
    let unchecked = KernelPack::load(&unchecked_engine, &component).expect("the standard pack");
    for workload in workloads() {
        let call = KernelCall {
            kernel: workload.kernel,
            params: &workload.params,
            batch_time: Duration::from_secs(60),
        };
        let checked = run_batch(&pack, &call, 0, &workload.items);
        assert!(checked.error.is_none(), "{:?}", checked.error);
        // Both sides read the same wire batch (as workers read batches from Redis) and return
        // results in the wire layout, so the ratio is the price of the sandbox: instantiation, the copies
        // across the boundary and the generated code.
        let batch = crunch::data::wire::Batch::from_items(&workload.items);
        let wire = &batch.lists;
        let native_params = workload.native_params();

        let mut group = c.benchmark_group(workload.kernel);
        group.throughput(Throughput::Elements(workload.items.len() as u64));
        group.bench_function("wasm", |b| {
            b.iter(|| run_wire_batch(&pack, &call, 0, black_box(&batch)))
        });
        group.bench_function("wasm_unchecked", |b| {
            b.iter(|| run_wire_batch(&unchecked, &call, 0, black_box(&batch)))
        });
        group.bench_function("native", |b| {
            b.iter(|| {
                let items = crunch_abi::Items::new(wire.count, &wire.shapes, &wire.data);
                crunch_kernels::run_wire(workload.kernel, black_box(&native_params), items)
            })
        });
        group.finish();
    }

    let empty = KernelCall {
        kernel: "describe",
        params: &[],
        batch_time: Duration::from_secs(60),
    };
    let mut group = c.benchmark_group("fixed_cost");
    group.bench_function("empty_batch", |b| {
        b.iter(|| run_batch(&pack, &empty, 0, &[]))
    });
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2))
        .sample_size(20);
    targets = kernels
}
criterion_main!(benches);
