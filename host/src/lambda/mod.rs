//! The Lambda layer: how Lambda's memory size buys CPU ([`sizing`], which `crunch plan` uses
//! too); with the `lambda` feature, the bootstrap's side: the event (keys only), the handler
//! that drains a job until the invocation's deadline with one claim loop per vCPU, the response
//! summary, and the per-invocation metrics record; with `lambda-fanout`, the invocations that
//! `crunch submit --lambda` starts ([`fanout`]).

#[cfg(feature = "lambda")]
mod event;
#[cfg(feature = "lambda-fanout")]
pub mod fanout;
#[cfg(feature = "lambda")]
mod handler;
#[cfg(feature = "lambda")]
mod metrics;
pub mod sizing;
#[cfg(feature = "lambda")]
mod vcpus;

#[cfg(feature = "lambda")]
pub use event::{DrainEvent, EventError};
#[cfg(feature = "lambda")]
pub use handler::{DrainResponse, Handler, HandlerConfig, HandlerError, Invocation};

/// Hands the handler the event's raw text, as a JSON string: the runtime would otherwise parse
/// the payload itself and answer a payload that is not JSON with its own error type, before
/// the handler could refuse it as `Crunch.InvalidEvent`. Used as a request-mapping layer in
/// front of the runtime's services (`bootstrap`).
#[cfg(feature = "lambda")]
pub fn raw_payload(
    mut invocation: lambda_runtime::LambdaInvocation,
) -> lambda_runtime::LambdaInvocation {
    let text = String::from_utf8_lossy(&invocation.body);
    // A JSON string always serializes.
    invocation.body = serde_json::to_vec(&text).unwrap_or_default().into();
    invocation
}
