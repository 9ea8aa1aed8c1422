//! The wire layout: how a batch's items, and its results, cross the component boundary (the
//! `crunch:kernel` WIT record `packed`, [`crunch_abi::WireData`]). A batch of `count` items is
//! two flat lists: `shapes` holds, for each item, its tensor count, then for each tensor the
//! rank and the dimensions; `data` holds every tensor's values in the same order. The same
//! layout carries a whole input read from Crunch binary, JSON or NPY ([`Input`]), so it is cut
//! into batches without building per-item tensors, and the results, which stay in the lists the
//! pack returned ([`Results`]) until a writer borrows them.

mod batch;
mod in_place;
mod results;

pub use batch::{Batch, Input, Lists, Span};
pub use in_place::{BatchInPlace, Written};
#[cfg(test)]
pub(crate) use results::ResultsBuilder;
pub use results::{ResultRef, Results, count, each, result_ref};
