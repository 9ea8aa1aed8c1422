//! The Lambda side: the event (keys only), the handler that drains a job until the
//! invocation's deadline with one claim loop per vCPU, the response summary, and the
//! per-invocation metrics record.

pub mod event;
pub mod handler;
pub mod metrics;
pub mod vcpus;

pub use event::{DrainEvent, EventError};
pub use handler::{DrainResponse, Handler, HandlerConfig, HandlerError};
