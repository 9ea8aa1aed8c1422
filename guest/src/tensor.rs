//! The kernels' data types: dense row-major tensors, named parameters and per-item errors
//! (the pack SDK's, in `crunch_abi`).

pub use crunch_abi::{KernelError, Params, Tensor, TensorRef};

/// Views of `tensors`, as kernels take their inputs (for tests that call kernels directly).
#[cfg(test)]
pub fn views(tensors: &[Tensor]) -> Vec<TensorRef<'_>> {
    tensors.iter().map(Tensor::view).collect()
}
