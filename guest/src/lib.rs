//! The standard Crunch kernel pack: twelve numeric kernels on plain Rust and ndarray.
//!
//! The kernels are ordinary Rust that builds and unit-tests natively; [`run_packed`] is the
//! entry point for packed batches ([`run`] for owned items), and on `wasm32` a thin adapter (`component`) exports it through the
//! `crunch:kernel/kernels` WIT interface. Transcendental functions come from `libm`, never from
//! the platform's C library, and no code relies on FMA contraction or runtime CPU detection, so
//! the native build and the component give bit-identical results.

mod axpy;
mod check;
mod fft;
mod interp;
mod lanes;
mod linalg;
mod normal;
mod options;
mod registry;
mod select;
mod signal;
mod stats;
mod tensor;

#[cfg(target_arch = "wasm32")]
mod component;

pub use registry::{KERNELS, KernelSpec, run, run_packed};
pub use tensor::{KernelError, Params, Tensor, TensorRef};
