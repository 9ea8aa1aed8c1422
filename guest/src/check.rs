//! Input checks shared by the kernels; each failure is an invalid-input error naming the input.

use crate::tensor::{KernelError, TensorRef};
use ndarray::ArrayView2;

/// The item's `N` input tensors, or an error naming the inputs the kernel expects.
pub fn inputs<'a, 'b, const N: usize>(
    item: &'a [TensorRef<'b>],
    names: [&str; N],
) -> Result<&'a [TensorRef<'b>; N], KernelError> {
    item.try_into().map_err(|_| {
        invalid(format!(
            "expected {N} input tensor(s) ({}), got {}",
            names.join(", "),
            item.len()
        ))
    })
}

/// The values of a 1-D tensor.
pub fn vector<'a>(t: &TensorRef<'a>, name: &str) -> Result<&'a [f64], KernelError> {
    if t.shape.len() == 1 {
        Ok(t.data)
    } else {
        Err(invalid(format!(
            "`{name}` must be a 1-D tensor, got shape {:?}",
            t.shape
        )))
    }
}

/// The values of a non-empty 1-D tensor.
pub fn nonempty_vector<'a>(t: &TensorRef<'a>, name: &str) -> Result<&'a [f64], KernelError> {
    let v = vector(t, name)?;
    if v.is_empty() {
        Err(invalid(format!("`{name}` must not be empty")))
    } else {
        Ok(v)
    }
}

/// A 2-D tensor viewed as an ndarray matrix.
pub fn matrix<'a>(t: &TensorRef<'a>, name: &str) -> Result<ArrayView2<'a, f64>, KernelError> {
    match *t.shape {
        [rows, cols] => ArrayView2::from_shape((rows as usize, cols as usize), t.data)
            .map_err(|e| invalid(format!("`{name}`: {e}"))),
        _ => Err(invalid(format!(
            "`{name}` must be a 2-D tensor, got shape {:?}",
            t.shape
        ))),
    }
}

/// Shorthand for an invalid-input error.
pub fn invalid(message: String) -> KernelError {
    KernelError::InvalidInput(message)
}

/// Shorthand for a domain error.
pub fn domain(message: String) -> KernelError {
    KernelError::Domain(message)
}

/// The error of an item that cannot be read from its batch's wire lists.
pub fn unreadable(e: crunch_abi::WireError) -> KernelError {
    e.into()
}
