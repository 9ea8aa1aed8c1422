//! The Crunch host: loads a kernel pack component once, then runs batches of items through it,
//! each batch in a fresh, limited, sandboxed wasmtime instance, many batches in parallel.
//!
//! [`Engine`] holds the process-wide wasmtime engine, linker and epoch ticker; [`KernelPack`] a
//! compiled, pre-instantiated pack; [`run_batch`] and [`run_batches`] the work itself; [`wire`]
//! the layout in which batches and results cross into the pack; [`codec`] the file formats of
//! `crunch run`; [`store`], [`jobs`] and [`worker`] the Redis data plane
//! (protocol v1, `docs/protocol.md`).

pub mod batch;
pub mod cache;
pub mod codec;
pub mod engine;
#[cfg(feature = "lambda-fanout")]
pub mod fanout;
pub mod jobs;
#[cfg(feature = "lambda")]
pub mod lambda;
pub mod lambda_sizing;
pub mod logging;
pub mod memory;
pub mod pack;
pub mod plan;
pub mod registry;
pub mod report;
pub mod settings;
pub mod store;
pub mod strict_json;
pub mod text;
pub mod types;
pub mod wire;
pub mod worker;

pub use batch::{
    BatchError, BatchOutcome, KernelCall, run_batch, run_batches, run_wire_batch,
    run_wire_batch_until,
};
pub use engine::{Engine, Limits, StopCheck};
pub use pack::KernelPack;
pub use types::{ErrorKind, Item, ItemError, ItemResult, KernelError, KernelInfo, Tensor};
pub use wire::ResultRef;
