//! A batch in the wire layout: items checked and laid out for a call into the pack, an input
//! read in the wire layout cut into batches, and the pack's results back into one result per
//! item, checking that the pack kept the contract.

use std::borrow::Cow;

use crunch_abi::TensorRef;

use super::results::{Results, ResultsBuilder};
use crate::data::text;
use crate::data::types::{BatchResults, Item, ItemError, KernelError, Tensor};

/// A batch's items in the wire layout, and the items refused before they were laid out.
pub struct Batch<'a> {
    /// The items whose tensors match their shapes, in order.
    pub lists: Lists<'a>,
    /// For each item in `lists`, its position in the batch.
    positions: Vec<usize>,
    /// Items whose tensors do not match their shapes: position and error.
    refused: Vec<(usize, ItemError)>,
    /// Items in the batch.
    len: usize,
}

/// A batch's accepted items in the wire layout (see [`crunch_abi::WireData`]): lists of its own,
/// or lent from an input that holds them, since a call into the pack copies them anyway.
#[derive(Clone, Debug, PartialEq)]
pub struct Lists<'a> {
    /// Number of items.
    pub count: u32,
    /// Per item: tensor count; per tensor: rank, then dimensions.
    pub shapes: Cow<'a, [u32]>,
    /// Every tensor's values, in order.
    pub data: Cow<'a, [f64]>,
}

impl Batch<'static> {
    /// `items` in the wire layout; an item whose tensors do not match their shapes is refused
    /// alone, with an invalid-input error naming the tensor.
    pub fn from_items(items: &[Item]) -> Self {
        let (lists, positions, refused) = check_items(items);
        Self {
            lists: lists.into(),
            positions,
            refused,
            len: items.len(),
        }
    }
}

type Refused = Vec<(usize, ItemError)>;

fn check_items(items: &[Item]) -> (crunch_abi::WireData, Vec<usize>, Refused) {
    let values = items.iter().flatten().map(|t| t.data.len()).sum();
    let mut lists = crunch_abi::WireData::with_capacity(items.len(), values);
    let mut positions = Vec::with_capacity(items.len());
    let mut refused = Vec::new();
    for (position, item) in items.iter().enumerate() {
        let tensors = item.iter().map(|t| TensorRef {
            shape: &t.shape,
            data: &t.data,
        });
        match lists.push(tensors) {
            Ok(()) => positions.push(position),
            Err(e) => refused.push((
                position,
                ItemError::Kernel(KernelError::InvalidInput(e.to_string())),
            )),
        }
    }
    (lists, positions, refused)
}

/// Lists of their own.
impl From<crunch_abi::WireData> for Lists<'static> {
    fn from(lists: crunch_abi::WireData) -> Self {
        Lists {
            count: lists.count,
            shapes: Cow::Owned(lists.shapes),
            data: Cow::Owned(lists.data),
        }
    }
}

/// A batch read already in the wire layout (from Crunch binary, where every tensor matches its
/// shape).
impl From<crunch_abi::WireData> for Batch<'static> {
    fn from(lists: crunch_abi::WireData) -> Self {
        Batch::from_lists(lists.into())
    }
}

impl<'a> Batch<'a> {
    /// The batch of every item in `lists`, all of them accepted: the caller has checked that
    /// every tensor matches its shape (a reader of the wire layout, an array's rows).
    pub fn from_lists(lists: Lists<'a>) -> Self {
        let len = lists.count as usize;
        Self {
            lists,
            positions: (0..len).collect(),
            refused: Vec::new(),
            len,
        }
    }
}

/// Every item of an input in one pair of flat lists (the wire layout) as the reader read it
/// (each tensor matches its shape), to be cut into batches without building per-item tensors.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Input {
    pub(super) lists: crunch_abi::WireData,
}

/// Where one batch of an [`Input`] lies in its lists.
#[derive(Clone, Debug, PartialEq)]
pub struct Span {
    pub(super) items: u32,
    pub(super) shapes: std::ops::Range<usize>,
    pub(super) values: std::ops::Range<usize>,
}

impl From<crunch_abi::WireData> for Input {
    fn from(lists: crunch_abi::WireData) -> Self {
        Self { lists }
    }
}

impl Input {
    /// Items in the input.
    pub fn len(&self) -> usize {
        self.lists.count as usize
    }

    /// Whether the input holds no items.
    pub fn is_empty(&self) -> bool {
        self.lists.count == 0
    }

    /// Values across every tensor of every item.
    pub fn values(&self) -> usize {
        self.lists.data.len()
    }

    /// Where the batches of `batch_size` items (the last one smaller) lie in the input, in
    /// order: one walk over the shapes, nothing copied.
    pub fn spans(&self, batch_size: usize) -> Vec<Span> {
        let batch_size = batch_size.max(1);
        let mut spans = Vec::with_capacity(self.len().div_ceil(batch_size));
        // Every item one vector of the same length (an array read from .npy, say): where each
        // item lies follows from its position, with no walk over the items.
        let shapes = &self.lists.shapes;
        let vectors = crunch_abi::vectors_len(shapes, self.len()).map(|len| len as usize);
        let (mut at, mut values) = (0, 0);
        let mut left = self.len();
        while left > 0 {
            let items = left.min(batch_size);
            let (end, values_end) = match vectors {
                Some(len) => (at + 3 * items, values + len * items),
                None => skip_items(shapes, (at, values), items),
            };
            spans.push(Span {
                items: items as u32,
                shapes: at..end,
                values: values..values_end,
            });
            (at, values, left) = (end, values_end, left - items);
        }
        spans
    }

    /// The batch at `span` (one of [`spans`](Self::spans)), laid out for a call: its part of
    /// the lists, lent.
    pub fn batch(&self, span: &Span) -> Batch<'_> {
        Batch::from_lists(Lists {
            count: span.items,
            shapes: Cow::Borrowed(&self.lists.shapes[span.shapes.clone()]),
            data: Cow::Borrowed(&self.lists.data[span.values.clone()]),
        })
    }

    /// The items as owned tensors.
    pub fn to_items(&self) -> Vec<Item> {
        let mut items = Vec::with_capacity(self.len());
        let mut reader = self.lists.items();
        let mut tensors = Vec::new();
        // The reader laid the lists out itself, so every item reads back.
        while let Some(Ok(())) = reader.next_into(&mut tensors) {
            items.push(
                tensors
                    .iter()
                    .map(|t| Tensor {
                        shape: t.shape.to_vec(),
                        data: t.data.to_vec(),
                    })
                    .collect(),
            );
        }
        items
    }
}

impl Batch<'_> {
    /// The accepted items' lists, lent to a pack's `run`.
    pub fn packed(&self) -> crate::data::types::PackedRef<'_> {
        crate::data::types::PackedRef {
            count: self.lists.count,
            shapes: &self.lists.shapes,
            data: &self.lists.data,
        }
    }

    /// Items in the batch, refused ones included.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether the batch holds no items.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The batch cut in two halves of about as many accepted items each, every item (refused
    /// ones too) in the half that holds its position; `None` for fewer than two accepted items.
    pub fn split(&self) -> Option<(Batch<'_>, Batch<'_>)> {
        let accepted = self.lists.count as usize;
        if accepted < 2 {
            return None;
        }
        let middle = accepted / 2;
        let at = self.positions[middle];
        let (shape_at, data_at) = skip_items(&self.lists.shapes, (0, 0), middle);
        let (shapes, data): (&[u32], &[f64]) = (&self.lists.shapes, &self.lists.data);
        // Each half: its positions, and where its items lie in the shapes and the values.
        type Range = std::ops::Range<usize>;
        let half = |range: Range, in_shapes: Range, in_data: Range, count| {
            let offset = range.start;
            Batch {
                lists: Lists {
                    count,
                    shapes: Cow::Borrowed(&shapes[in_shapes]),
                    data: Cow::Borrowed(&data[in_data]),
                },
                positions: self
                    .positions
                    .iter()
                    .filter(|p| range.contains(p))
                    .map(|p| p - offset)
                    .collect(),
                refused: self
                    .refused
                    .iter()
                    .filter(|(p, _)| range.contains(p))
                    .map(|(p, e)| (p - offset, e.clone()))
                    .collect(),
                len: range.len(),
            }
        };
        Some((
            half(0..at, 0..shape_at, 0..data_at, middle as u32),
            half(
                at..self.len,
                shape_at..shapes.len(),
                data_at..data.len(),
                (accepted - middle) as u32,
            ),
        ))
    }

    /// Results in which every accepted item failed with `error` and every refused item keeps its
    /// own error.
    pub fn failed_results(&self, error: ItemError) -> Results {
        let mut built = ResultsBuilder::new(&[], &[], self.len);
        let mut refused = self.refused.iter().peekable();
        for position in 0..self.len {
            match refused.next_if(|(p, _)| *p == position) {
                Some((_, e)) => built.error(e.clone()),
                None => built.error(error.clone()),
            }
        }
        Results::from_parts(Vec::new(), Vec::new(), built.finish())
    }

    /// One result per item of the batch, in order, from what the pack returned (kept in the wire layout);
    /// an error saying how the pack broke the contract when the results do not account for
    /// every accepted item exactly once.
    pub fn results(&self, results: BatchResults) -> Result<Results, String> {
        let outputs = results.outputs;
        if outputs.count != self.lists.count {
            return Err(format!(
                "the pack returned {} results for {} items",
                outputs.count, self.lists.count
            ));
        }
        let mut built = ResultsBuilder::new(&outputs.shapes, &outputs.data, self.len);
        if self.refused.is_empty()
            && results.failures.is_empty()
            && built.all_outputs(outputs.count)
        {
            let built = built.finish();
            return Ok(Results::from_parts(outputs.shapes, outputs.data, built));
        }
        let mut refused = self.refused.iter().peekable();
        let mut failures = results.failures.into_iter().peekable();
        // Where the next refused item and the next failure are: every item before them has an
        // output, which the loop below records without looking at either list.
        let mut next_refused = refused.peek().map_or(usize::MAX, |(p, _)| *p);
        let mut next_failure = failures.peek().map_or(usize::MAX, |f| f.index as usize);
        let mut reader = crunch_abi::Items::new(outputs.count, &outputs.shapes, &outputs.data);
        for (index, &position) in self.positions.iter().enumerate() {
            if next_refused < position {
                while let Some((_, error)) = refused.next_if(|(p, _)| *p < position) {
                    built.error(error.clone());
                }
                next_refused = refused.peek().map_or(usize::MAX, |(p, _)| *p);
            }
            let output = reader
                .next_output()
                .ok_or("the pack's outputs end early")?
                .map_err(|e| format!("the pack's outputs, item {index}: {e}"))?;
            match (output, index == next_failure) {
                (Some(t), false) => built.output(t),
                (None, true) => {
                    let failure = failures.next().expect("the failure peeked at");
                    built.error(ItemError::Kernel(capped(failure.error)));
                    next_failure = failures.peek().map_or(usize::MAX, |f| f.index as usize);
                }
                (output, failed) => {
                    return Err(format!(
                        "item {index}: the pack returned {} output tensor and {} failure",
                        if output.is_some() { "an" } else { "no" },
                        if failed { "a" } else { "no" }
                    ));
                }
            }
        }
        for (_, error) in refused {
            built.error(error.clone());
        }
        reader
            .finish()
            .map_err(|e| format!("the pack's outputs: {e}"))?;
        if let Some(f) = failures.next() {
            return Err(format!(
                "the pack reported a failure for item {}, which is out of order or out of range",
                f.index
            ));
        }
        let built = built.finish();
        Ok(Results::from_parts(outputs.shapes, outputs.data, built))
    }
}

/// A kernel's error with its message cut to [`text::MESSAGE_BYTES`]: a pack may not make the
/// host keep (and write, and print) megabytes per failed item.
fn capped(error: KernelError) -> KernelError {
    match error {
        KernelError::InvalidInput(m) => KernelError::InvalidInput(text::capped(m)),
        KernelError::Domain(m) => KernelError::Domain(text::capped(m)),
        KernelError::UnknownKernel(m) => KernelError::UnknownKernel(text::capped(m)),
    }
}

/// Where the item `items` items after the one that starts at `start` (its position in
/// `shapes` and in the values) starts. The host laid the items out (and checked them), so the
/// walk stays within the lists.
fn skip_items(shapes: &[u32], start: (usize, usize), items: usize) -> (usize, usize) {
    let (mut at, mut values) = start;
    for _ in 0..items {
        let tensors = shapes[at];
        at += 1;
        for _ in 0..tensors {
            let rank = shapes[at] as usize;
            values += crunch_abi::element_count(&shapes[at + 1..at + 1 + rank]).unwrap_or(0);
            at += 1 + rank;
        }
    }
    (at, values)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::types::{ItemFailure, Tensor};

    fn scalar(v: f64) -> Tensor {
        Tensor {
            shape: vec![],
            data: vec![v],
        }
    }

    #[test]
    fn refused_items_keep_their_place() {
        let bad = Tensor {
            shape: vec![3],
            data: vec![1.0],
        };
        let batch = Batch::from_items(&[vec![scalar(1.0)], vec![bad], vec![scalar(2.0)]]);
        assert_eq!(batch.lists.count, 2);
        let results = BatchResults {
            outputs: crate::data::types::WireData {
                count: 2,
                shapes: vec![1, 0, 0],
                data: vec![10.0],
            },
            failures: vec![ItemFailure {
                index: 1,
                error: KernelError::Domain("no".into()),
            }],
        };
        let out = batch.results(results).unwrap().to_vec();
        assert_eq!(out[0], Ok(scalar(10.0)));
        assert!(matches!(&out[1], Err(e) if e.message().contains("needs 3 values")));
        assert_eq!(
            out[2],
            Err(ItemError::Kernel(KernelError::Domain("no".into())))
        );
    }

    #[test]
    fn a_split_keeps_every_item_in_its_place() {
        let bad = Tensor {
            shape: vec![2],
            data: vec![1.0],
        };
        let pair = Tensor {
            shape: vec![2],
            data: vec![3.0, 4.0],
        };
        let items = [
            vec![scalar(1.0)],
            vec![bad],
            vec![pair.clone(), scalar(5.0)],
            vec![scalar(6.0)],
            vec![],
        ];
        let batch = Batch::from_items(&items);
        let (a, b) = batch.split().expect("four accepted items split");
        assert_eq!((a.len(), b.len()), (3, 2));
        assert_eq!((a.lists.count, b.lists.count), (2, 2));
        assert_eq!(a.lists.data, vec![1.0, 3.0, 4.0, 5.0]);
        assert_eq!(b.lists.shapes, vec![1, 0, 0]);
        assert_eq!(b.lists.data, vec![6.0]);
        let failed = a.failed_results(ItemError::BatchFailed("too big".into()));
        let failed = failed.to_vec();
        assert!(matches!(&failed[1], Err(e) if e.message().contains("needs 2 values")));
        assert_eq!(failed[2], Err(ItemError::BatchFailed("too big".into())));
        assert!(Batch::from_items(&items[..1]).split().is_none());
    }

    #[test]
    fn an_input_is_cut_into_batches_in_order() {
        let items = vec![
            vec![scalar(1.0)],
            vec![],
            vec![
                Tensor {
                    shape: vec![2],
                    data: vec![2.0, 3.0],
                },
                scalar(4.0),
            ],
            vec![scalar(5.0)],
            vec![scalar(6.0)],
        ];
        let input = Input::from(check_items(&items).0);
        assert_eq!((input.len(), input.values()), (5, 6));
        assert_eq!(input.to_items(), items);
        let spans = input.spans(2);
        let sizes: Vec<_> = spans.iter().map(|s| input.batch(s).len()).collect();
        assert_eq!(sizes, vec![2, 2, 1]);
        for (span, chunk) in spans.iter().zip(items.chunks(2)) {
            assert_eq!(input.batch(span).lists, Batch::from_items(chunk).lists);
        }
        assert!(Input::default().spans(3).is_empty());
    }

    #[test]
    fn vectors_of_one_length_are_cut_where_a_walk_would_cut_them() {
        let vector = |n: usize, at: usize| {
            vec![Tensor {
                shape: vec![n as u32],
                data: (at..at + n).map(|v| v as f64).collect(),
            }]
        };
        let same: Vec<_> = (0..7).map(|i| vector(3, 3 * i)).collect();
        let input = Input::from(check_items(&same).0);
        let spans = input.spans(3);
        assert_eq!(spans.len(), 3);
        // The same spans as the walk over the shapes gives.
        let (mut at, mut values) = (0, 0);
        for span in &spans {
            let end = skip_items(&input.lists.shapes, (at, values), span.items as usize);
            assert_eq!(
                (span.shapes.clone(), span.values.clone()),
                (at..end.0, values..end.1)
            );
            (at, values) = end;
        }
        for (span, chunk) in spans.iter().zip(same.chunks(3)) {
            assert_eq!(input.batch(span).lists, Batch::from_items(chunk).lists);
        }
        // One item of another length: the walk.
        let mut mixed = same.clone();
        mixed[4] = vector(2, 100);
        let input = Input::from(check_items(&mixed).0);
        for (span, chunk) in input.spans(3).iter().zip(mixed.chunks(3)) {
            assert_eq!(input.batch(span).lists, Batch::from_items(chunk).lists);
        }
    }

    #[test]
    fn a_pack_that_drops_an_item_breaks_the_contract() {
        let batch = Batch::from_items(&[vec![scalar(1.0)], vec![scalar(2.0)]]);
        let results = BatchResults {
            outputs: crate::data::types::WireData {
                count: 2,
                shapes: vec![1, 0, 0],
                data: vec![1.0],
            },
            failures: vec![],
        };
        let err = batch.results(results).unwrap_err();
        assert!(err.contains("item 1"), "{err}");
    }

    #[test]
    fn every_way_a_pack_breaks_the_contract_is_named() {
        let bad = Tensor {
            shape: vec![2],
            data: vec![],
        };
        let items = [
            vec![bad.clone()],
            vec![scalar(1.0)],
            vec![scalar(2.0)],
            vec![bad],
        ];
        let batch = Batch::from_items(&items);
        let failure = |index| ItemFailure {
            index,
            error: KernelError::Domain("no".into()),
        };
        let results = |shapes: Vec<u32>, data: Vec<f64>, failures| BatchResults {
            outputs: crate::data::types::WireData {
                count: 2,
                shapes,
                data,
            },
            failures,
        };
        let cases = [
            (
                results(vec![1, 0, 1, 0], vec![1.0, 2.0], vec![failure(1)]),
                "an output tensor and a failure",
            ),
            (
                results(vec![1, 0, 0], vec![1.0], vec![failure(0)]),
                "an output tensor and a failure",
            ),
            (
                results(vec![1, 0, 0], vec![1.0], vec![failure(1), failure(1)]),
                "out of order",
            ),
            (
                results(vec![2, 0, 0, 0], vec![1.0, 2.0], vec![]),
                "an item of 2 tensors",
            ),
            (
                results(vec![1, 0, 1, 0], vec![1.0, 2.0, 3.0], vec![]),
                "left over",
            ),
            (
                results(vec![1, 0, 1, 1, 2], vec![1.0, 2.0], vec![]),
                "needs more values",
            ),
        ];
        for (results, expected) in cases {
            let err = batch.results(results).unwrap_err();
            assert!(err.contains(expected), "{err}");
        }
        let out = batch
            .results(results(vec![1, 0, 0], vec![1.0], vec![failure(1)]))
            .unwrap()
            .to_vec();
        assert!(matches!(&out[0], Err(e) if e.message().contains("needs 2 values")));
        assert_eq!(out[1], Ok(scalar(1.0)));
        assert_eq!(
            out[2],
            Err(ItemError::Kernel(KernelError::Domain("no".into())))
        );
        assert!(matches!(&out[3], Err(e) if e.message().contains("needs 2 values")));
    }
}
