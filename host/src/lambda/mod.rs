//! The Lambda side: the event (keys only), the handler that drains a job until the
//! invocation's deadline with one claim loop per vCPU, the response summary, and the
//! per-invocation metrics record.

pub mod event;
pub mod handler;
pub mod metrics;
pub mod vcpus;

pub use event::{DrainEvent, EventError};

use lambda_runtime::LambdaInvocation;

/// Hands the handler the event's raw text, as a JSON string: the runtime would otherwise parse
/// the payload itself and answer a payload that is not JSON with its own error type, before
/// the handler could refuse it as `Crunch.InvalidEvent`. Used as a request-mapping layer in
/// front of the runtime's services (`bootstrap`).
pub fn raw_payload(mut invocation: LambdaInvocation) -> LambdaInvocation {
    let text = String::from_utf8_lossy(&invocation.body);
    // A JSON string always serializes.
    invocation.body = serde_json::to_vec(&text).unwrap_or_default().into();
    invocation
}
pub use handler::{DrainResponse, Handler, HandlerConfig, HandlerError, Invocation};
