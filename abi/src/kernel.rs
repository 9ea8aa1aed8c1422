//! What a kernel works with: owned tensors (its output), the call's named parameters and the
//! per-item error that mirrors the WIT `kernel-error`.

use crate::{TensorRef, WireError, element_count};

/// A dense n-dimensional array of f64 in row-major order; shape `[]` is a scalar.
#[derive(Clone, Debug, PartialEq)]
pub struct Tensor {
    /// Length of each dimension, outermost first.
    pub shape: Vec<u32>,
    /// The values, row-major; exactly the product of `shape` of them.
    pub data: Vec<f64>,
}

impl Tensor {
    /// A tensor of the given shape; the caller guarantees `data` has the right length.
    pub fn new(shape: Vec<u32>, data: Vec<f64>) -> Self {
        debug_assert_eq!(element_count(&shape), Some(data.len()));
        Self { shape, data }
    }

    /// A 1-D tensor holding `data`.
    pub fn vector(data: Vec<f64>) -> Self {
        Self::new(vec![dim(data.len())], data)
    }

    /// A 2-D tensor of `rows` x `cols` holding `data` row-major.
    pub fn matrix(rows: usize, cols: usize, data: Vec<f64>) -> Self {
        Self::new(vec![dim(rows), dim(cols)], data)
    }

    /// The tensor as kernels read their inputs.
    pub fn view(&self) -> TensorRef<'_> {
        TensorRef {
            shape: &self.shape,
            data: &self.data,
        }
    }

    /// Checks that `data` holds exactly as many values as `shape` says.
    pub fn validate(&self) -> Result<(), KernelError> {
        self.view().check().map_err(KernelError::InvalidInput)
    }
}

/// Converts a length to a shape dimension. Kernel outputs are bounded by their inputs, whose
/// dimensions are `u32`, so this never saturates in practice.
fn dim(n: usize) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
}

/// Why one item could not be computed; mirrors `crunch:kernel/types.kernel-error`.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
pub enum KernelError {
    /// Wrong number, rank, shape or length of inputs, or a bad parameter.
    #[error("invalid input: {0}")]
    InvalidInput(String),
    /// Well-formed input outside the kernel's mathematical domain.
    #[error("domain error: {0}")]
    Domain(String),
    /// No kernel of that name in the pack.
    #[error("unknown kernel: {0}")]
    UnknownKernel(String),
}

impl KernelError {
    /// The reason, without the kind.
    pub fn message(&self) -> &str {
        match self {
            Self::InvalidInput(m) | Self::Domain(m) | Self::UnknownKernel(m) => m,
        }
    }
}

/// An item that cannot be read from its batch's wire lists is invalid input.
impl From<WireError> for KernelError {
    fn from(e: WireError) -> Self {
        Self::InvalidInput(e.to_string())
    }
}

/// The named parameters of a call, shared by every item of the batch.
#[derive(Clone, Copy, Debug)]
pub struct Params<'a>(pub &'a [(String, Tensor)]);

impl<'a> Params<'a> {
    /// The parameter called `name`, if given.
    pub fn get(&self, name: &str) -> Option<&'a Tensor> {
        self.0.iter().find(|(k, _)| k == name).map(|(_, t)| t)
    }

    /// The parameter called `name`, or an invalid-input error naming it.
    pub fn require(&self, name: &str) -> Result<&'a Tensor, KernelError> {
        self.get(name)
            .ok_or_else(|| KernelError::InvalidInput(format!("missing parameter `{name}`")))
    }

    /// The single number given as parameter `name`, or `default` when it is not given; an
    /// invalid-input error naming it when it holds more or fewer than one value.
    pub fn number_or(&self, name: &str, default: f64) -> Result<f64, KernelError> {
        match self.get(name).map(|t| t.data.as_slice()) {
            None => Ok(default),
            Some(&[v]) => Ok(v),
            Some(values) => Err(KernelError::InvalidInput(format!(
                "parameter `{name}` must be one number, got {} values",
                values.len()
            ))),
        }
    }
}
