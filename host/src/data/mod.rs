//! The data layer: the types shared with kernels ([`types`]), the [`wire`] layout in which
//! batches and results cross into a pack, the file formats of `crunch run` ([`codec`]), strict
//! JSON, and text from untrusted sources made safe to echo ([`text`]).

pub mod codec;
pub(crate) mod strict_json;
pub mod text;
pub mod types;
pub mod wire;
