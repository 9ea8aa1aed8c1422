//! Errors as Python sees them: the exception classes of `crunch._errors` (defined in Python,
//! raised from here) and the mapping of host errors onto them.

use pyo3::PyErr;

pyo3::import_exception!(crunch._errors, CrunchError);
pyo3::import_exception!(crunch._errors, InvalidInputError);
pyo3::import_exception!(crunch._errors, JobNotFoundError);
pyo3::import_exception!(crunch._errors, RedisUnavailableError);

/// An invalid argument or input: `InvalidInputError` (a `ValueError` too).
pub fn invalid(message: impl Into<String>) -> PyErr {
    InvalidInputError::new_err(message.into())
}

/// A host-side error that is the caller's doing (an unknown kernel, say): it reaches Python
/// as `InvalidInputError`.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct Invalid(pub String);

/// A host error: `InvalidInputError` for an [`Invalid`] one, `JobNotFoundError` for a job
/// Redis does not hold, `RedisUnavailableError` when Redis could not be reached (the message
/// says where and why), else `CrunchError`; the message carries the whole chain of context.
pub fn host(error: anyhow::Error) -> PyErr {
    let message = format!("{error:#}");
    if error.chain().any(|cause| cause.is::<Invalid>()) {
        InvalidInputError::new_err(message)
    } else if error
        .chain()
        .any(|cause| cause.is::<crunch::queue::jobs::JobNotFound>())
    {
        JobNotFoundError::new_err(message)
    } else if is_unreachable(&error) {
        RedisUnavailableError::new_err(message)
    } else {
        CrunchError::new_err(message)
    }
}

fn is_unreachable(error: &anyhow::Error) -> bool {
    error.chain().any(|cause| {
        matches!(
            cause.downcast_ref::<crunch::queue::store::StoreError>(),
            Some(crunch::queue::store::StoreError::Unavailable { .. })
        ) || cause.downcast_ref::<redis::RedisError>().is_some_and(|e| {
            e.is_io_error()
                || e.is_connection_refusal()
                || e.is_connection_dropped()
                || e.is_timeout()
        })
    })
}
