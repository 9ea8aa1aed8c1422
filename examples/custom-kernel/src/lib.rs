//! An example kernel pack for a domain of one's own (risk): historical value-at-risk of a
//! portfolio and a moving-average crossover signal. The kernels are plain Rust functions
//! (`risk.rs`), unit-tested natively; the table below and one macro make the crate a Crunch
//! pack. Built with `--features v2`, `var` also returns the expected shortfall: the second
//! version used by the hot-swap test.

mod risk;

use crunch_abi::{Compute, Kernel};

/// The pack's kernels, in the order `crunch kernels` lists them.
pub const KERNELS: &[Kernel] = &[
    Kernel {
        name: "var",
        summary: risk::VAR_SUMMARY,
        params: &["confidence"],
        compute: Compute::Item(risk::var),
    },
    Kernel {
        name: "ma_crossover",
        summary: "[prices (n)] with params fast, slow -> [crossovers, last signal (1 long, -1 short)]",
        params: &["fast", "slow"],
        compute: Compute::Item(risk::ma_crossover),
    },
];

crunch_abi::export_pack!(KERNELS);
