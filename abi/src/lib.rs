//! The wire layout of `crunch:kernel` (WIT record `packed`, here [`WireData`]), shared by the
//! host, which lays items out and reads results back, and by packs, which read items in place
//! and lay their results out the same way.
//!
//! A batch of `count` items is two flat lists. `shapes` holds, for each item in order, its
//! tensor count, then for each of its tensors the rank followed by the dimensions; `data` holds
//! every tensor's values in the same order, each row-major. So a batch crosses the component
//! boundary in a few copies however many items it holds, and a kernel reads its inputs where
//! they lie. Results use the same layout: one tensor per item that succeeded, none for an item
//! that failed.
//!
//! It is also the SDK for writing a pack: a table of [`Kernel`]s, each a plain Rust function
//! that computes one item ([`Compute::Item`]) or the whole batch at once ([`Compute::Batch`]
//! with [`map_elementwise`] or [`map_records`]: one tight loop over the batch's values, items
//! still failing one by one), and [`export_pack!`], which makes the crate a component that
//! exports `crunch:kernel/kernels`. The table answers the calls: it finds the kernel, refuses
//! unknown or malformed parameters once per batch, and runs the kernel over the items where they
//! lie ([`run_wire`]).
//!
//! ```
//! use crunch_abi::{Compute, Kernel, KernelError, Params, Tensor, TensorRef};
//!
//! fn double(_: Params<'_>, item: &[TensorRef<'_>]) -> Result<Tensor, KernelError> {
//!     let [x] = item else {
//!         return Err(KernelError::InvalidInput("expected one tensor".into()));
//!     };
//!     Ok(Tensor::new(x.shape.to_vec(), x.data.iter().map(|v| 2.0 * v).collect()))
//! }
//!
//! pub const KERNELS: &[Kernel] = &[Kernel {
//!     name: "double",
//!     summary: "[x (any shape)] -> 2 x",
//!     params: &[],
//!     compute: Compute::Item(double),
//! }];
//!
//! crunch_abi::export_pack!(KERNELS);
//!
//! // Natively, the table answers the same calls (for tests).
//! let out = crunch_abi::run(KERNELS, "double", &[], &[vec![Tensor::vector(vec![1.5])]]);
//! assert_eq!(out, vec![Ok(Tensor::vector(vec![3.0]))]);
//! ```

use std::fmt;

#[cfg(target_arch = "wasm32")]
pub mod export;
mod in_place;
mod kernel;
mod table;
mod whole;

pub use in_place::{ItemsMut, map_elementwise_in_place, map_records_in_place, run_each_in_place};
pub use kernel::{KernelError, Params, Tensor};
pub use table::{Compute, Kernel, run, run_wire, run_wire_in_place};
pub use whole::{map_elementwise, map_records, read_items, wire_outputs};

/// Makes the crate a kernel pack: exports `crunch:kernel/kernels` answered from a table of
/// [`Kernel`]s (`export_pack!(KERNELS)`, where `KERNELS: &[Kernel]`). `list-kernels` lists the
/// table in order; `run` finds the kernel, checks the parameters, and runs it over the batch
/// (see [`run_wire`]). Expands to nothing except on `wasm32`, so the same crate builds and
/// tests natively. The crate must be a `cdylib` built for `wasm32-wasip2`.
///
/// A pack that must answer `list-kernels` itself (the hostile test pack, whose variant never
/// answers) names a function of the table that does: `export_pack!(KERNELS, list_kernels: f)`.
#[macro_export]
macro_rules! export_pack {
    ($kernels:expr) => {
        $crate::export_pack!($kernels, list_kernels: $crate::export::list_kernels);
    };
    ($kernels:expr, list_kernels: $list:path) => {
        // The export glue that wit-bindgen generates uses `unsafe` attributes.
        #[cfg(target_arch = "wasm32")]
        #[allow(unsafe_code)]
        const _: () = {
            struct KernelPack;

            impl $crate::export::Guest for KernelPack {
                fn list_kernels() -> ::std::vec::Vec<$crate::export::KernelInfo> {
                    $list($kernels)
                }

                fn run(
                    kernel: ::std::string::String,
                    params: ::std::vec::Vec<(::std::string::String, $crate::export::WitTensor)>,
                    items: $crate::export::WitWireData,
                ) -> $crate::export::WitBatchResults {
                    $crate::export::run($kernels, kernel, params, items)
                }
            }

            $crate::export::bindings::export!(KernelPack with_types_in $crate::export::bindings);
        };
    };
}

/// A tensor read in place from a batch in the wire layout (or borrowed from an owned tensor).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct TensorRef<'a> {
    /// Length of each dimension, outermost first; empty for a scalar.
    pub shape: &'a [u32],
    /// The values, row-major; exactly the product of `shape` of them.
    pub data: &'a [f64],
}

/// Items (or results) of one call in the wire layout: the two flat lists.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct WireData {
    /// Number of items.
    pub count: u32,
    /// Per item: tensor count, then per tensor: rank, dimensions.
    pub shapes: Vec<u32>,
    /// Every tensor's values, in order.
    pub data: Vec<f64>,
}

/// Why a batch in the wire layout cannot be read or written.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum WireError {
    /// A tensor's values do not match its shape.
    ShapeMismatch {
        /// Position of the tensor within its item.
        tensor: usize,
        /// How they differ ([`TensorRef::check`]).
        reason: String,
    },
    /// The lists end early or hold more than `count` items say.
    Malformed(String),
}

impl fmt::Display for WireError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::ShapeMismatch { tensor, reason } => write!(f, "input {tensor}: {reason}"),
            Self::Malformed(reason) => write!(f, "malformed wire batch: {reason}"),
        }
    }
}

impl std::error::Error for WireError {}

impl TensorRef<'_> {
    /// Checks that the values match the shape; the error says how they differ.
    pub fn check(&self) -> Result<(), String> {
        match element_count(self.shape) {
            Some(n) if n == self.data.len() => Ok(()),
            Some(n) => Err(format!(
                "shape {:?} needs {n} values but the tensor holds {}",
                self.shape,
                self.data.len()
            )),
            None => Err(format!(
                "shape {:?} has more elements than fit in memory",
                self.shape
            )),
        }
    }
}

/// The length `len` when the wire shape words `shapes` are those of `count` items that are each
/// one 1-D tensor of `len` values (`1, 1, len` per item, nothing else); `None` otherwise, and
/// for no items. Such items lie each at its position times `len` in the values.
pub fn vectors_len(shapes: &[u32], count: usize) -> Option<u32> {
    match shapes.get(..3) {
        Some(&[1, 1, len])
            if count.checked_mul(3) == Some(shapes.len()) && all_vectors_of(shapes, len) =>
        {
            Some(len)
        }
        _ => None,
    }
}

/// Whether the wire shape words `shapes` are those of items that are each one 1-D tensor of
/// `len` values (`1, 1, len` per item, nothing else). Four items' words at a time and without
/// an early exit, so that the comparison runs in vector instructions.
fn all_vectors_of(shapes: &[u32], len: u32) -> bool {
    let word = [1, 1, len];
    let four: [u32; 12] = core::array::from_fn(|i| word[i % 3]);
    let (blocks, rest) = shapes.as_chunks::<12>();
    rest.len() % 3 == 0
        && blocks
            .iter()
            .fold(true, |same, block| same & (*block == four))
        && rest.chunks_exact(3).all(|words| words == word)
}

/// The number of elements a shape describes, or `None` if it overflows.
#[inline]
pub fn element_count(shape: &[u32]) -> Option<usize> {
    shape
        .iter()
        .try_fold(1usize, |n, &d| n.checked_mul(d as usize))
}

impl WireData {
    /// An empty batch with room for about `items` items of `values` values in all.
    pub fn with_capacity(items: usize, values: usize) -> Self {
        Self {
            count: 0,
            shapes: Vec::with_capacity(items * 3),
            data: Vec::with_capacity(values),
        }
    }

    /// Items of one 1-D tensor each, of the given lengths, taking their values from `data` in
    /// order (which must hold exactly that many).
    pub fn vectors(lengths: impl IntoIterator<Item = usize>, data: Vec<f64>) -> Self {
        let mut shapes = Vec::new();
        let mut total = 0;
        for len in lengths {
            shapes.extend([1, 1, len as u32]);
            total += len;
        }
        debug_assert_eq!(total, data.len());
        Self {
            count: (shapes.len() / 3) as u32,
            shapes,
            data,
        }
    }

    /// Appends one item. Checks every tensor first, so a bad item leaves the batch unchanged.
    pub fn push<'a>(
        &mut self,
        tensors: impl IntoIterator<Item = TensorRef<'a>> + Clone,
    ) -> Result<(), WireError> {
        self.push_shapes(tensors.clone())?;
        for t in tensors {
            self.data.extend_from_slice(t.data);
        }
        Ok(())
    }

    /// [`Self::push`] but for the values, which the caller lays out itself (as
    /// [`run_each_in_place`] does over the batch's own values).
    pub(crate) fn push_shapes<'a>(
        &mut self,
        tensors: impl IntoIterator<Item = TensorRef<'a>> + Clone,
    ) -> Result<(), WireError> {
        let mut n = 0u32;
        for (i, t) in tensors.clone().into_iter().enumerate() {
            t.check()
                .map_err(|reason| WireError::ShapeMismatch { tensor: i, reason })?;
            n += 1;
        }
        self.shapes.push(n);
        for t in tensors {
            self.shapes.push(t.shape.len() as u32);
            self.shapes.extend_from_slice(t.shape);
        }
        self.count += 1;
        Ok(())
    }

    /// Appends an item with no tensors (a result slot for an item that failed).
    pub fn push_none(&mut self) {
        self.shapes.push(0);
        self.count += 1;
    }

    /// Reads the items back, in order, without copying.
    pub fn items(&self) -> Items<'_> {
        Items::new(self.count, &self.shapes, &self.data)
    }
}

/// Reads the items of a batch in the wire layout one at a time.
#[derive(Clone, Debug)]
pub struct Items<'a> {
    remaining: u32,
    shapes: &'a [u32],
    data: &'a [f64],
}

impl<'a> Items<'a> {
    /// A reader over `count` items laid out in `shapes` and `data`.
    pub fn new(count: u32, shapes: &'a [u32], data: &'a [f64]) -> Self {
        Self {
            remaining: count,
            shapes,
            data,
        }
    }

    /// Items not read yet.
    pub fn remaining(&self) -> u32 {
        self.remaining
    }

    /// Reads the next item's tensors into `tensors` (cleared first). `None` once every item
    /// has been read; an error when the lists end early, after which reading stops.
    pub fn next_into(&mut self, tensors: &mut Vec<TensorRef<'a>>) -> Option<Result<(), WireError>> {
        if self.remaining == 0 {
            return None;
        }
        self.remaining -= 1;
        tensors.clear();
        let result = self.read_item(tensors);
        if result.is_err() {
            self.remaining = 0;
        }
        Some(result)
    }

    /// Checks that every item has been read and nothing is left over.
    pub fn finish(&self) -> Result<(), WireError> {
        if self.remaining == 0 && self.shapes.is_empty() && self.data.is_empty() {
            Ok(())
        } else {
            Err(WireError::Malformed(format!(
                "{} items, {} shape words and {} values left over",
                self.remaining,
                self.shapes.len(),
                self.data.len()
            )))
        }
    }

    /// Reads the next item of a batch's results, which hold one output tensor per item or,
    /// for an item that failed, none: `Ok(None)` for an item with no tensors. `None` once every
    /// item has been read; an error when the lists end early or an item holds more than one
    /// tensor, after which reading stops.
    #[inline]
    pub fn next_output(&mut self) -> Option<Result<Option<TensorRef<'a>>, WireError>> {
        if self.remaining == 0 {
            return None;
        }
        self.remaining -= 1;
        let result = match self.shapes {
            [0, rest @ ..] => {
                self.shapes = rest;
                Ok(None)
            }
            [1, rest @ ..] => {
                self.shapes = rest;
                self.read_tensor().map(Some)
            }
            [n, ..] => Err(WireError::Malformed(format!(
                "an item of {n} tensors, where a result holds one or none"
            ))),
            [] => Err(WireError::Malformed(
                "the shapes end before a tensor count".into(),
            )),
        };
        if result.is_err() {
            self.remaining = 0;
        }
        Some(result)
    }

    fn read_item(&mut self, tensors: &mut Vec<TensorRef<'a>>) -> Result<(), WireError> {
        let n = self.take_word("tensor count")?;
        for _ in 0..n {
            let tensor = self.read_tensor()?;
            tensors.push(tensor);
        }
        Ok(())
    }

    /// Reads one tensor: its rank, its dimensions, then its values.
    #[inline]
    fn read_tensor(&mut self) -> Result<TensorRef<'a>, WireError> {
        let rank = self.take_word("rank")? as usize;
        if rank > self.shapes.len() {
            return Err(WireError::Malformed(format!(
                "rank {rank} but {} shape words left",
                self.shapes.len()
            )));
        }
        let (shape, rest) = self.shapes.split_at(rank);
        self.shapes = rest;
        let len = element_count(shape)
            .filter(|&len| len <= self.data.len())
            .ok_or_else(|| {
                WireError::Malformed(format!(
                    "shape {shape:?} needs more values than the {} left",
                    self.data.len()
                ))
            })?;
        let (data, rest) = self.data.split_at(len);
        self.data = rest;
        Ok(TensorRef { shape, data })
    }

    #[inline]
    fn take_word(&mut self, what: &str) -> Result<u32, WireError> {
        let (&word, rest) = self
            .shapes
            .split_first()
            .ok_or_else(|| WireError::Malformed(format!("the shapes end before a {what}")))?;
        self.shapes = rest;
        Ok(word)
    }
}

/// What a batch produced: one output per item that succeeded, in the wire layout, and the
/// failures.
#[derive(Clone, Debug, PartialEq)]
pub struct BatchResults<E> {
    /// One tensor per item that succeeded, none per item that failed, in item order.
    pub outputs: WireData,
    /// (item index, reason) for every item that failed, in order.
    pub failures: Vec<(u32, E)>,
}

impl<E> BatchResults<E> {
    /// The same results with each failure's reason converted by `f`.
    pub fn map_errors<F>(self, f: impl FnMut(E) -> F) -> BatchResults<F> {
        let mut f = f;
        BatchResults {
            outputs: self.outputs,
            failures: self
                .failures
                .into_iter()
                .map(|(index, e)| (index, f(e)))
                .collect(),
        }
    }
}

/// Runs `compute` on every item of a batch in the wire layout in order, reading the inputs in place, and
/// packs what it returns (an output `(shape, values)` or an error). Items that cannot be read
/// (the lists end early) and inconsistent outputs fail through `unreadable`.
pub fn run_each<E>(
    mut items: Items<'_>,
    unreadable: impl Fn(WireError) -> E,
    mut compute: impl FnMut(&[TensorRef<'_>]) -> Result<(Vec<u32>, Vec<f64>), E>,
) -> BatchResults<E> {
    let count = items.remaining();
    let input_values = items.data.len();
    let mut results = BatchResults {
        outputs: WireData::with_capacity(count as usize, 0),
        failures: Vec::new(),
    };
    let mut tensors = Vec::new();
    for index in 0..count {
        let result = match items.next_into(&mut tensors) {
            Some(Ok(())) => compute(&tensors),
            Some(Err(e)) => Err(unreadable(e)),
            None => Err(unreadable(WireError::Malformed(
                "an earlier item could not be read".into(),
            ))),
        };
        let pushed = result.and_then(|(shape, data)| {
            reserve_outputs(
                &mut results.outputs.data,
                data.len(),
                count - index,
                input_values,
            );
            results
                .outputs
                .push([TensorRef {
                    shape: &shape,
                    data: &data,
                }])
                .map_err(&unreadable)
        });
        if let Err(e) = pushed {
            results.outputs.push_none();
            results.failures.push((index, e));
        }
    }
    results
}

/// Makes room in `data` for an output of `len` values when it has none: enough for `items`
/// more outputs of that size (a batch's outputs usually share a shape), but no more than the
/// batch's `input_values`, so one outsized output cannot reserve far beyond the batch. One
/// allocation instead of a doubling series of reallocations and copies.
fn reserve_outputs(data: &mut Vec<f64>, len: usize, items: u32, input_values: usize) {
    if data.capacity() - data.len() < len {
        let wanted = len
            .saturating_mul(items as usize)
            .min(input_values)
            .max(len);
        data.reserve_exact(wanted);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t<'a>(shape: &'a [u32], data: &'a [f64]) -> TensorRef<'a> {
        TensorRef { shape, data }
    }

    #[test]
    fn round_trip() {
        let mut wire = WireData::default();
        wire.push([t(&[2], &[1.0, 2.0]), t(&[], &[3.0])]).unwrap();
        wire.push_none();
        wire.push([t(&[1, 2], &[4.0, 5.0])]).unwrap();
        assert_eq!(wire.count, 3);
        let mut items = wire.items();
        let mut tensors = Vec::new();
        items.next_into(&mut tensors).unwrap().unwrap();
        assert_eq!(tensors, vec![t(&[2], &[1.0, 2.0]), t(&[], &[3.0])]);
        items.next_into(&mut tensors).unwrap().unwrap();
        assert!(tensors.is_empty());
        items.next_into(&mut tensors).unwrap().unwrap();
        assert_eq!(tensors, vec![t(&[1, 2], &[4.0, 5.0])]);
        assert!(items.next_into(&mut tensors).is_none());
        items.finish().unwrap();
    }

    #[test]
    fn a_bad_tensor_is_refused_and_leaves_the_batch_unchanged() {
        let mut wire = WireData::default();
        let err = wire.push([t(&[1], &[1.0]), t(&[3], &[1.0])]).unwrap_err();
        assert_eq!(
            err.to_string(),
            "input 1: shape [3] needs 3 values but the tensor holds 1"
        );
        assert_eq!(wire, WireData::default());
    }

    #[test]
    fn run_each_packs_outputs_and_failures() {
        let mut wire = WireData::default();
        for v in [1.0, -1.0, 2.0] {
            wire.push([t(&[], &[v])]).unwrap();
        }
        let out = run_each(
            wire.items(),
            |e| e.to_string(),
            |item| {
                let v = item[0].data[0];
                if v < 0.0 {
                    Err(format!("negative {v}"))
                } else {
                    Ok((vec![1], vec![v * 2.0]))
                }
            },
        );
        assert_eq!(out.outputs.count, 3);
        assert_eq!(out.outputs.shapes, vec![1, 1, 1, 0, 1, 1, 1]);
        assert_eq!(out.outputs.data, vec![2.0, 4.0]);
        assert_eq!(out.failures, vec![(1, "negative -1".to_string())]);
    }

    #[test]
    fn outputs_are_reserved_once_and_never_beyond_the_inputs() {
        let mut data = Vec::new();
        reserve_outputs(&mut data, 10, 100, 5000);
        assert_eq!(data.capacity(), 1000);
        let mut data = Vec::new();
        reserve_outputs(&mut data, 10, 100, 300);
        assert_eq!(data.capacity(), 300);
        let mut data = Vec::new();
        reserve_outputs(&mut data, 10, 100, 2);
        assert_eq!(data.capacity(), 10);
        data.extend([1.0; 10]);
        reserve_outputs(&mut data, 10, 99, 0);
        assert!(data.capacity() >= 20);
    }

    #[test]
    fn truncated_lists_are_malformed() {
        let mut tensors = Vec::new();
        let mut items = Items::new(2, &[1, 1, 4], &[1.0]);
        let err = items.next_into(&mut tensors).unwrap().unwrap_err();
        assert!(err.to_string().contains("needs more values"), "{err}");
        assert!(items.next_into(&mut tensors).is_none());
        let items = Items::new(0, &[1], &[]);
        assert!(items.finish().is_err());
    }
}
