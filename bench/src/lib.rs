//! The benchmarks' shared parts: the workloads every comparison runs (the same items for the
//! wasm component, the native kernels and the Python baselines) and the paths they use.

pub mod workers;
pub mod workloads;

pub use workloads::{Workload, workloads};
