//! Items into the packed form in which they cross into the pack (`crunch:kernel` `packed`),
//! an input read packed cut into batches, and the pack's packed results back into one result
//! per item, checking that the pack kept the contract.

use crunch_abi::{Packed, TensorRef};

use crate::results::{PackedResults, ResultsBuilder};
use crate::text;
use crate::types::{BatchResults, Item, ItemError, KernelError, Tensor};

/// A batch's items, packed, and the items refused before packing.
pub struct PackedBatch {
    /// The items whose tensors match their shapes, packed in order.
    pub packed: crate::types::Packed,
    /// For each packed item, its position in the batch.
    positions: Vec<usize>,
    /// Items whose tensors do not match their shapes: position and error.
    refused: Vec<(usize, ItemError)>,
    /// Items in the batch.
    len: usize,
}

/// Packs `items`; an item whose tensors do not match their shapes is refused alone, with an
/// invalid-input error naming the tensor.
pub fn pack(items: &[Item]) -> PackedBatch {
    let (packed, positions, refused) = pack_checked(items);
    PackedBatch {
        packed: to_wit(packed),
        positions,
        refused,
        len: items.len(),
    }
}

type Refused = Vec<(usize, ItemError)>;

fn pack_checked(items: &[Item]) -> (Packed, Vec<usize>, Refused) {
    let values = items.iter().flatten().map(|t| t.data.len()).sum();
    let mut packed = Packed::with_capacity(items.len(), values);
    let mut positions = Vec::with_capacity(items.len());
    let mut refused = Vec::new();
    for (position, item) in items.iter().enumerate() {
        let tensors = item.iter().map(|t| TensorRef {
            shape: &t.shape,
            data: &t.data,
        });
        match packed.push(tensors) {
            Ok(()) => positions.push(position),
            Err(e) => refused.push((
                position,
                ItemError::Kernel(KernelError::InvalidInput(e.to_string())),
            )),
        }
    }
    (packed, positions, refused)
}

fn to_wit(packed: Packed) -> crate::types::Packed {
    crate::types::Packed {
        count: packed.count,
        shapes: packed.shapes,
        data: packed.data,
    }
}

/// A batch read already packed (from Crunch binary, where every tensor matches its shape).
impl From<Packed> for PackedBatch {
    fn from(packed: Packed) -> Self {
        let len = packed.count as usize;
        Self {
            packed: to_wit(packed),
            positions: (0..len).collect(),
            refused: Vec::new(),
            len,
        }
    }
}

/// Every item of an input, packed in one pair of flat lists as the reader read it (each tensor
/// matches its shape), to be cut into batches without building per-item tensors.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct PackedInput {
    packed: Packed,
}

/// Where one batch of a [`PackedInput`] lies in its lists.
#[derive(Clone, Debug, PartialEq)]
pub struct BatchSpan {
    items: u32,
    shapes: std::ops::Range<usize>,
    values: std::ops::Range<usize>,
}

impl From<Packed> for PackedInput {
    fn from(packed: Packed) -> Self {
        Self { packed }
    }
}

impl PackedInput {
    /// Items in the input.
    pub fn len(&self) -> usize {
        self.packed.count as usize
    }

    /// Whether the input holds no items.
    pub fn is_empty(&self) -> bool {
        self.packed.count == 0
    }

    /// Values across every tensor of every item.
    pub fn values(&self) -> usize {
        self.packed.data.len()
    }

    /// Where the batches of `batch_size` items (the last one smaller) lie in the input, in
    /// order: one walk over the shapes, nothing copied.
    pub fn spans(&self, batch_size: usize) -> Vec<BatchSpan> {
        let batch_size = batch_size.max(1);
        let mut spans = Vec::with_capacity(self.len().div_ceil(batch_size));
        let (mut at, mut values) = (0, 0);
        let mut left = self.len();
        while left > 0 {
            let items = left.min(batch_size);
            let (end, values_end) = skip_items(&self.packed.shapes, (at, values), items);
            spans.push(BatchSpan {
                items: items as u32,
                shapes: at..end,
                values: values..values_end,
            });
            (at, values, left) = (end, values_end, left - items);
        }
        spans
    }

    /// The batch at `span` (one of [`spans`](Self::spans)), packed for a call: a copy of its
    /// part of the lists, made where the batch runs.
    pub fn batch(&self, span: &BatchSpan) -> PackedBatch {
        PackedBatch::from(Packed {
            count: span.items,
            shapes: self.packed.shapes[span.shapes.clone()].to_vec(),
            data: self.packed.data[span.values.clone()].to_vec(),
        })
    }

    /// The items as owned tensors.
    pub fn to_items(&self) -> Vec<Item> {
        let mut items = Vec::with_capacity(self.len());
        let mut reader = self.packed.items();
        let mut tensors = Vec::new();
        // The reader packed the lists itself, so every item reads back.
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

impl PackedBatch {
    /// Items in the batch, refused ones included.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether the batch holds no items.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The batch cut in two halves of about as many packed items each, every item (refused
    /// ones too) in the half that holds its position; `None` for fewer than two packed items.
    pub fn split(&self) -> Option<(PackedBatch, PackedBatch)> {
        let packed = self.packed.count as usize;
        if packed < 2 {
            return None;
        }
        let middle = packed / 2;
        let at = self.positions[middle];
        let (shape_at, data_at) = skip_items(&self.packed.shapes, (0, 0), middle);
        let half = |range: std::ops::Range<usize>, shapes: &[u32], data: &[f64], count| {
            let offset = range.start;
            PackedBatch {
                packed: crate::types::Packed {
                    count,
                    shapes: shapes.to_vec(),
                    data: data.to_vec(),
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
        let (shapes, data) = (&self.packed.shapes, &self.packed.data);
        Some((
            half(0..at, &shapes[..shape_at], &data[..data_at], middle as u32),
            half(
                at..self.len,
                &shapes[shape_at..],
                &data[data_at..],
                (packed - middle) as u32,
            ),
        ))
    }

    /// Results in which every packed item failed with `error` and every refused item keeps its
    /// own error.
    pub fn failed_results(&self, error: ItemError) -> PackedResults {
        let mut built = ResultsBuilder::new(&[], &[], self.len);
        let mut refused = self.refused.iter().peekable();
        for position in 0..self.len {
            match refused.next_if(|(p, _)| *p == position) {
                Some((_, e)) => built.error(e.clone()),
                None => built.error(error.clone()),
            }
        }
        PackedResults::from_parts(Vec::new(), Vec::new(), built.finish())
    }

    /// One result per item of the batch, in order, from what the pack returned (kept packed);
    /// an error saying how the pack broke the contract when the results do not account for
    /// every packed item exactly once.
    pub fn results(&self, results: BatchResults) -> Result<PackedResults, String> {
        let outputs = results.outputs;
        if outputs.count != self.packed.count {
            return Err(format!(
                "the pack returned {} results for {} items",
                outputs.count, self.packed.count
            ));
        }
        let mut built = ResultsBuilder::new(&outputs.shapes, &outputs.data, self.len);
        let mut refused = self.refused.iter().peekable();
        let mut failures = results.failures.into_iter().peekable();
        let mut reader = crunch_abi::Items::new(outputs.count, &outputs.shapes, &outputs.data);
        let mut tensors = Vec::with_capacity(1);
        for (index, &position) in self.positions.iter().enumerate() {
            while let Some((_, error)) = refused.next_if(|(p, _)| *p < position) {
                built.error(error.clone());
            }
            let read = reader
                .next_into(&mut tensors)
                .ok_or("the pack's outputs end early")?;
            read.map_err(|e| format!("the pack's outputs: {e}"))?;
            let failure = failures.next_if(|f| f.index as usize == index);
            match (&tensors[..], failure) {
                ([t], None) => built.output(*t),
                ([], Some(f)) => built.error(ItemError::Kernel(capped(f.error))),
                (ts, f) => {
                    return Err(format!(
                        "item {index}: the pack returned {} output tensors and {} failure",
                        ts.len(),
                        if f.is_some() { "a" } else { "no" }
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
        Ok(PackedResults::from_parts(
            outputs.shapes,
            outputs.data,
            built,
        ))
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

/// Where the packed item `items` items after the one that starts at `start` (its position in
/// `shapes` and in the values) starts. The items were packed (and checked) by the host, so the
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
    use crate::types::{ItemFailure, Tensor};

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
        let batch = pack(&[vec![scalar(1.0)], vec![bad], vec![scalar(2.0)]]);
        assert_eq!(batch.packed.count, 2);
        let results = BatchResults {
            outputs: crate::types::Packed {
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
        let batch = pack(&items);
        let (a, b) = batch.split().expect("four packed items split");
        assert_eq!((a.len(), b.len()), (3, 2));
        assert_eq!((a.packed.count, b.packed.count), (2, 2));
        assert_eq!(a.packed.data, vec![1.0, 3.0, 4.0, 5.0]);
        assert_eq!(b.packed.shapes, vec![1, 0, 0]);
        assert_eq!(b.packed.data, vec![6.0]);
        let failed = a.failed_results(ItemError::BatchFailed("too big".into()));
        let failed = failed.to_vec();
        assert!(matches!(&failed[1], Err(e) if e.message().contains("needs 2 values")));
        assert_eq!(failed[2], Err(ItemError::BatchFailed("too big".into())));
        assert!(pack(&items[..1]).split().is_none());
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
        let input = PackedInput::from(pack_checked(&items).0);
        assert_eq!((input.len(), input.values()), (5, 6));
        assert_eq!(input.to_items(), items);
        let spans = input.spans(2);
        let sizes: Vec<_> = spans.iter().map(|s| input.batch(s).len()).collect();
        assert_eq!(sizes, vec![2, 2, 1]);
        for (span, chunk) in spans.iter().zip(items.chunks(2)) {
            assert_eq!(input.batch(span).packed, pack(chunk).packed);
        }
        assert!(PackedInput::default().spans(3).is_empty());
    }

    #[test]
    fn a_pack_that_drops_an_item_breaks_the_contract() {
        let batch = pack(&[vec![scalar(1.0)], vec![scalar(2.0)]]);
        let results = BatchResults {
            outputs: crate::types::Packed {
                count: 2,
                shapes: vec![1, 0, 0],
                data: vec![1.0],
            },
            failures: vec![],
        };
        let err = batch.results(results).unwrap_err();
        assert!(err.contains("item 1"), "{err}");
    }
}
