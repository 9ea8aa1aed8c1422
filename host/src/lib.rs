//! The Crunch host: loads a kernel pack component once, then runs batches of items through it,
//! each batch in a fresh, limited, sandboxed wasmtime instance, many batches in parallel.
//!
//! The library is in layers; each uses only the ones above it in this list:
//!
//! - [`data`]: what crosses boundaries: the WIT types ([`Tensor`], [`Item`], [`ItemError`],
//!   [`ErrorKind`]), the [`wire`](data::wire) layout in which batches and results cross into a
//!   pack, the file formats of `crunch run` ([`codec`](data::codec)), text safe to echo.
//! - [`sandbox`]: wasmtime: the process-wide [`Engine`] (linker, epoch ticker, limits), a
//!   compiled, pre-instantiated [`KernelPack`], the compiled-pack cache, and the batches
//!   themselves ([`run_batch`], [`run_batches`], [`KernelCall`]). Uses `data`.
//! - [`queue`]: the Redis data plane (protocol v1, `docs/protocol.md`): the connection, keys and
//!   atomic scripts ([`store`](queue::store)), the client side ([`jobs`](queue::jobs)), the
//!   [`Worker`](queue::worker::Worker), and the kernel-pack registry. Uses `sandbox` and `data`.
//! - [`plan`]: `crunch plan`: samples a job through `sandbox`, models it locally and on Lambda,
//!   measures the Redis of `queue`. [`report`]: `crunch report`, from a job's records in `queue`.
//! - [`lambda`]: Lambda's memory-to-vCPU facts (`plan` uses them too); with the `lambda`
//!   feature the bootstrap's handler, which drains a job with a `queue` worker; with
//!   `lambda-fanout` the invocations `crunch submit --lambda` starts.
//! - [`process`]: what the binaries (`crunch`, `bootstrap`, the Python package) set up: settings
//!   from the environment, the log filter, the allocator. The library itself reads no
//!   environment variable.
//!
//! The main types are re-exported here.

pub mod data;
pub mod lambda;
pub mod plan;
pub mod process;
pub mod queue;
pub mod report;
pub mod sandbox;

pub use data::types::{ErrorKind, Item, ItemError, ItemResult, KernelError, KernelInfo, Tensor};
pub use data::wire::ResultRef;
pub use queue::store::spec::{JobSpec, JobState, Progress};
pub use queue::store::{Redis, StoreError};
pub use queue::worker::Worker;
pub use sandbox::batch::{
    BatchError, BatchOutcome, KernelCall, run_batch, run_batches, run_batches_in_place,
    run_wire_batch, run_wire_batch_until,
};
pub use sandbox::engine::{Engine, Limits, StopCheck};
pub use sandbox::pack::KernelPack;
