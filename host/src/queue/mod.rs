//! The Redis layer (protocol v1, `docs/protocol.md`): the connection, keys, atomic scripts and
//! records ([`store`]), the client side of a job ([`jobs`]), the [`worker`] that claims and
//! runs batches, and the kernel-pack registry ([`pack_registry`]).

pub mod jobs;
pub mod pack_registry;
pub mod store;
pub mod worker;
