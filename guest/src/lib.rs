//! The standard Crunch kernel pack: twelve numeric kernels on plain Rust and ndarray.
//!
//! The kernels are ordinary Rust that builds and unit-tests natively, listed in the table
//! [`KERNELS`]; on `wasm32`, `crunch_abi::export_pack!` exports that table through the
//! `crunch:kernel/kernels` WIT interface ([`run_wire`] is what its `run` does, [`run`] the
//! same for owned items). Transcendental functions come from `libm`, never from
//! the platform's C library, and no code relies on FMA contraction or runtime CPU detection, so
//! the native build and the component give bit-identical results.

mod axpy;
mod check;
mod fft;
mod gram;
mod interp;
mod lanes;
mod linalg;
mod normal;
mod options;
mod select;
mod signal;
mod stats;
mod table;
mod tensor;

pub use table::{KERNELS, run, run_wire};
pub use tensor::{KernelError, Params, Tensor, TensorRef};

crunch_abi::export_pack!(KERNELS);
