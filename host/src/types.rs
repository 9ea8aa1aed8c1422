//! The data types shared with kernels (generated from the WIT contract) and the host's per-item
//! result type.

mod bindings {
    wasmtime::component::bindgen!({
        path: "../wit",
        world: "kernel-pack",
        additional_derives: [PartialEq],
    });
}

pub use crunch_abi::element_count;

pub(crate) use bindings::KernelPackPre;
pub use bindings::crunch::kernel::types::{
    BatchResults, ItemFailure, KernelError, KernelInfo, Packed, Tensor,
};

/// One unit of work: the input tensors of a single calculation.
pub type Item = Vec<Tensor>;

/// What became of one item: its output tensor, or why there is none.
pub type ItemResult = Result<Tensor, ItemError>;

/// Why an item has no result.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
pub enum ItemError {
    /// The kernel rejected the item (bad shape, out of domain, unknown kernel).
    #[error("{}", describe_kernel_error(.0))]
    Kernel(KernelError),
    /// The item's whole batch failed (trap, time or memory limit); the message says why.
    #[error("batch failed: {0}")]
    BatchFailed(String),
}

impl ItemError {
    /// A short machine-readable kind: `invalid-input`, `domain`, `unknown-kernel` or
    /// `batch-failed`.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Kernel(KernelError::InvalidInput(_)) => "invalid-input",
            Self::Kernel(KernelError::Domain(_)) => "domain",
            Self::Kernel(KernelError::UnknownKernel(_)) => "unknown-kernel",
            Self::BatchFailed(_) => "batch-failed",
        }
    }

    /// The human-readable reason, without the kind.
    pub fn message(&self) -> &str {
        match self {
            Self::Kernel(
                KernelError::InvalidInput(m)
                | KernelError::Domain(m)
                | KernelError::UnknownKernel(m),
            )
            | Self::BatchFailed(m) => m,
        }
    }

    /// Rebuilds an error from its kind and message (the inverse of [`kind`](Self::kind) and
    /// [`message`](Self::message)); unknown kinds become `batch-failed`.
    pub fn from_parts(kind: &str, message: String) -> Self {
        match kind {
            "invalid-input" => Self::Kernel(KernelError::InvalidInput(message)),
            "domain" => Self::Kernel(KernelError::Domain(message)),
            "unknown-kernel" => Self::Kernel(KernelError::UnknownKernel(message)),
            _ => Self::BatchFailed(message),
        }
    }
}

fn describe_kernel_error(e: &KernelError) -> String {
    let err = ItemError::Kernel(e.clone());
    format!("{}: {}", err.kind(), err.message())
}

impl Tensor {
    /// The tensor as a borrowed view (the form packed batches and results hold).
    pub fn view(&self) -> crunch_abi::TensorRef<'_> {
        crunch_abi::TensorRef {
            shape: &self.shape,
            data: &self.data,
        }
    }

    /// A tensor, checking that `data` holds exactly the number of values `shape` describes.
    pub fn checked(shape: Vec<u32>, data: Vec<f64>) -> Result<Self, String> {
        let expected = element_count(&shape)
            .ok_or_else(|| format!("shape {shape:?} has more elements than fit in memory"))?;
        if expected != data.len() {
            return Err(format!(
                "shape {shape:?} needs {expected} values but {} were given",
                data.len()
            ));
        }
        Ok(Self { shape, data })
    }
}
