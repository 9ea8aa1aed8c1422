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

/// A batch's items in the wire layout, lent to a pack's `run` as its `packed` argument: the
/// generated [`WireData`] owns its lists, this lowers them from wherever they lie.
#[derive(wasmtime::component::ComponentType, wasmtime::component::Lower, Clone, Copy, Debug)]
#[component(record)]
pub struct PackedRef<'a> {
    /// Number of items.
    pub count: u32,
    /// Per item: tensor count; per tensor: rank, then dimensions.
    pub shapes: &'a [u32],
    /// Every tensor's values, in order.
    pub data: &'a [f64],
}

pub(crate) use bindings::KernelPackPre;
pub use bindings::crunch::kernel::types::{
    BatchResults, ItemFailure, KernelError, KernelInfo, Packed as WireData, Tensor,
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

/// What kind of failure an item had, spelled one way wherever it is written (files, Redis,
/// messages): `invalid-input`, `domain`, `unknown-kernel` or `batch-failed`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ErrorKind {
    /// The kernel refused the item's inputs or the call's parameters.
    InvalidInput,
    /// The inputs lie outside the kernel's mathematical domain.
    Domain,
    /// The pack has no kernel of that name.
    UnknownKernel,
    /// The item's whole batch failed.
    BatchFailed,
}

impl ErrorKind {
    /// Every kind, in the order of their codes in Crunch binary results.
    pub const ALL: [Self; 4] = [
        Self::InvalidInput,
        Self::Domain,
        Self::UnknownKernel,
        Self::BatchFailed,
    ];

    /// The kind's one spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::InvalidInput => "invalid-input",
            Self::Domain => "domain",
            Self::UnknownKernel => "unknown-kernel",
            Self::BatchFailed => "batch-failed",
        }
    }

    /// The kind spelled `text`, if any.
    pub fn parse(text: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.as_str() == text)
    }

    /// The kind's code in Crunch binary results (its place in [`ALL`](Self::ALL)).
    pub fn code(self) -> u8 {
        self as u8
    }

    /// The kind of code `code`, if any.
    pub fn from_code(code: u8) -> Option<Self> {
        Self::ALL.get(usize::from(code)).copied()
    }
}

impl std::fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl serde::Serialize for ErrorKind {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl ItemError {
    /// What kind of failure this is.
    pub fn kind(&self) -> ErrorKind {
        match self {
            Self::Kernel(KernelError::InvalidInput(_)) => ErrorKind::InvalidInput,
            Self::Kernel(KernelError::Domain(_)) => ErrorKind::Domain,
            Self::Kernel(KernelError::UnknownKernel(_)) => ErrorKind::UnknownKernel,
            Self::BatchFailed(_) => ErrorKind::BatchFailed,
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
    /// [`message`](Self::message)).
    pub fn from_parts(kind: ErrorKind, message: String) -> Self {
        match kind {
            ErrorKind::InvalidInput => Self::Kernel(KernelError::InvalidInput(message)),
            ErrorKind::Domain => Self::Kernel(KernelError::Domain(message)),
            ErrorKind::UnknownKernel => Self::Kernel(KernelError::UnknownKernel(message)),
            ErrorKind::BatchFailed => Self::BatchFailed(message),
        }
    }
}

fn describe_kernel_error(e: &KernelError) -> String {
    let err = ItemError::Kernel(e.clone());
    format!("{}: {}", err.kind(), err.message())
}

impl Tensor {
    /// The tensor as a borrowed view (the form wire batches and results hold).
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_kind_has_one_spelling_and_one_code() {
        for kind in ErrorKind::ALL {
            assert_eq!(ErrorKind::parse(kind.as_str()), Some(kind));
            assert_eq!(ErrorKind::from_code(kind.code()), Some(kind));
            let error = ItemError::from_parts(kind, "why".into());
            assert_eq!((error.kind(), error.message()), (kind, "why"));
            assert_eq!(serde_json::to_string(&kind).unwrap(), format!("\"{kind}\""));
        }
        assert_eq!(ErrorKind::parse("Domain"), None);
        assert_eq!(ErrorKind::from_code(4), None);
    }
}
