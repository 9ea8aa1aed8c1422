//! One batch's results as the pack returned them: the output tensors stay in the wire-layout lists
//! they crossed the component boundary in, and each item holds only where its output lies or
//! which error it got. Workers encode them for Redis straight from there, results read back from
//! Redis are decoded into the same form, and the file writers take them borrowed ([`each`]); no
//! per-item tensors are built on the way.

use crunch_abi::TensorRef;

use crate::data::types::{ItemError, ItemResult, Tensor};

/// What became of one item, borrowed from its batch's results.
pub type ResultRef<'a> = Result<TensorRef<'a>, &'a ItemError>;

/// Borrows an owned result as a [`ResultRef`].
pub fn result_ref(result: &ItemResult) -> ResultRef<'_> {
    result.as_ref().map(Tensor::view)
}

/// One result per item of a batch, in order.
#[derive(Clone, Debug, Default)]
pub struct Results {
    shapes: Vec<u32>,
    data: Vec<f64>,
    layout: Layout,
    errors: Vec<ItemError>,
}

/// Where the items' results lie.
#[derive(Clone, Debug)]
enum Layout {
    /// One entry per item.
    Entries(Vec<Entry>),
    /// This many outputs, each one vector of `shapes[0]` values, item i's at i times that in
    /// `data`: the results of a batch of fixed-length records, held without an entry per item
    /// or the shape words the pack returned (at a million items, 28 MB fewer to keep).
    Vectors(usize),
}

impl Default for Layout {
    fn default() -> Self {
        Self::Entries(Vec::new())
    }
}

impl PartialEq for Results {
    /// The same results item by item, however they are laid out.
    fn eq(&self, other: &Self) -> bool {
        self.len() == other.len() && self.iter().eq(other.iter())
    }
}

/// Where one item's output lies in `shapes`/`data`, or which of `errors` it got, in 16 bytes
/// (a batch of small outputs holds one per item): an output's dimensions start at
/// `shape_start` and its values at `data_start`; a failed item has `rank` [`FAILED`] and
/// `data_start` the index of its error. A batch's shape words fit in `u32`: they crossed the
/// component boundary in one list of a 32-bit memory.
#[derive(Clone, Copy, Debug, PartialEq)]
struct Entry {
    data_start: usize,
    shape_start: u32,
    rank: u32,
}

/// [`Entry::rank`] of a failed item.
const FAILED: u32 = u32::MAX;

/// What an [`Entry`] says of its item.
enum Slot {
    Output {
        shape: std::ops::Range<usize>,
        data_start: usize,
    },
    Failed(usize),
}

impl Entry {
    fn output(shape_start: usize, rank: usize, data_start: usize) -> Self {
        Self {
            data_start,
            shape_start: u32::try_from(shape_start).expect("a batch's shape words fit in u32"),
            rank: u32::try_from(rank).expect("a rank is one u32 word"),
        }
    }

    fn failed(error: usize) -> Self {
        Self {
            data_start: error,
            shape_start: 0,
            rank: FAILED,
        }
    }

    #[inline]
    fn slot(self) -> Slot {
        match self.rank {
            FAILED => Slot::Failed(self.data_start),
            rank => {
                let start = self.shape_start as usize;
                Slot::Output {
                    shape: start..start + rank as usize,
                    data_start: self.data_start,
                }
            }
        }
    }

    /// This entry in results that follow `shapes` shape words, `data` values and `errors`
    /// errors of others.
    fn after(self, shapes: usize, data: usize, errors: usize) -> Self {
        match self.slot() {
            Slot::Output { shape, data_start } => {
                Self::output(shape.start + shapes, shape.len(), data_start + data)
            }
            Slot::Failed(error) => Self::failed(error + errors),
        }
    }
}

impl Results {
    /// Results for `len` items that all failed with `error` (a batch that failed as a whole).
    pub fn all_failed(len: usize, error: ItemError) -> Self {
        Self {
            layout: Layout::Entries(vec![Entry::failed(0); len]),
            errors: vec![error],
            ..Self::default()
        }
    }

    /// Results whose outputs lie in `shapes` and `data` (the outputs as the pack returned them), one
    /// entry per item as [`ResultsBuilder`] recorded them against the same lists.
    pub(crate) fn from_parts(shapes: Vec<u32>, data: Vec<f64>, built: BuiltResults) -> Self {
        if let Some((count, len)) = built.vectors {
            return Self::vectors(count, len, data);
        }
        Self {
            shapes,
            data,
            layout: Layout::Entries(built.entries),
            errors: built.errors,
        }
    }

    /// `count` outputs, each one vector of `len` values, item i's at i times `len` in `data`.
    pub fn vectors(count: usize, len: u32, data: Vec<f64>) -> Self {
        assert_eq!(Some(data.len()), count.checked_mul(len as usize));
        Self {
            shapes: vec![len],
            data,
            layout: Layout::Vectors(count),
            errors: Vec::new(),
        }
    }

    /// When every item's output is one vector of the same length (so nothing failed): that
    /// length, and every output's values one after another.
    pub fn as_vectors(&self) -> Option<(u32, &[f64])> {
        match self.layout {
            Layout::Vectors(_) => Some((self.shapes[0], &self.data)),
            Layout::Entries(_) => None,
        }
    }

    /// Empty results with room for `len` items.
    pub(crate) fn with_capacity(len: usize) -> Self {
        Self {
            layout: Layout::Entries(Vec::with_capacity(len)),
            ..Self::default()
        }
    }

    /// The entries, made from the layout of vectors if that is how the results are held.
    fn entries_mut(&mut self) -> &mut Vec<Entry> {
        if let Layout::Vectors(count) = self.layout {
            let len = self.shapes.first().map_or(0, |&len| len as usize);
            let entries = (0..count).map(|i| Entry::output(0, 1, i * len)).collect();
            self.layout = Layout::Entries(entries);
        }
        match &mut self.layout {
            Layout::Entries(entries) => entries,
            Layout::Vectors(_) => unreachable!("made entries above"),
        }
    }

    /// Appends an item's output, which `write` appends to the lists in the wire layout: its
    /// rank, its dimensions, then (to the values) its values. Nothing is kept when `write` fails.
    pub(crate) fn push_output_with<E>(
        &mut self,
        write: impl FnOnce(&mut Vec<u32>, &mut Vec<f64>) -> Result<(), E>,
    ) -> Result<(), E> {
        let (shapes, data) = (self.shapes.len(), self.data.len());
        if let Err(e) = write(&mut self.shapes, &mut self.data) {
            self.shapes.truncate(shapes);
            self.data.truncate(data);
            return Err(e);
        }
        let entry = Entry::output(shapes + 1, self.shapes.len() - shapes - 1, data);
        self.entries_mut().push(entry);
        Ok(())
    }

    /// Appends an item that failed with `error`.
    pub(crate) fn push_error(&mut self, error: ItemError) {
        let entry = Entry::failed(self.errors.len());
        self.entries_mut().push(entry);
        self.errors.push(error);
    }

    /// These results followed by `other`'s (the two halves of a batch that was split).
    pub fn append(&mut self, mut other: Results) {
        let (shapes, data, errors) = (self.shapes.len(), self.data.len(), self.errors.len());
        let moved = std::mem::take(other.entries_mut());
        self.entries_mut().extend(
            moved
                .into_iter()
                .map(|entry| entry.after(shapes, data, errors)),
        );
        self.shapes.extend(other.shapes);
        self.data.extend(other.data);
        self.errors.extend(other.errors);
    }

    /// Items in the batch.
    pub fn len(&self) -> usize {
        match &self.layout {
            Layout::Entries(entries) => entries.len(),
            Layout::Vectors(count) => *count,
        }
    }

    /// Whether the batch held no items.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The result of item `index` of the batch.
    pub fn get(&self, index: usize) -> Option<ResultRef<'_>> {
        (index < self.len()).then(|| self.at(index))
    }

    /// Every item's result, in order.
    pub fn iter(&self) -> impl ExactSizeIterator<Item = ResultRef<'_>> + Clone + '_ {
        (0..self.len()).map(|index| self.at(index))
    }

    /// How many items failed.
    pub fn failed(&self) -> usize {
        match &self.layout {
            Layout::Entries(entries) => entries.iter().filter(|e| e.rank == FAILED).count(),
            Layout::Vectors(_) => 0,
        }
    }

    /// Values across every output tensor.
    pub fn values(&self) -> usize {
        self.iter().map(|r| r.map_or(0, |t| t.data.len())).sum()
    }

    /// The results as owned tensors and errors.
    pub fn to_vec(&self) -> Vec<ItemResult> {
        self.iter()
            .map(|r| match r {
                Ok(t) => Ok(Tensor {
                    shape: t.shape.to_vec(),
                    data: t.data.to_vec(),
                }),
                Err(e) => Err(e.clone()),
            })
            .collect()
    }

    /// The result of item `index`, below [`Self::len`].
    #[inline]
    fn at(&self, index: usize) -> ResultRef<'_> {
        match &self.layout {
            Layout::Entries(entries) => self.resolve(entries[index]),
            Layout::Vectors(_) => {
                let len = self.shapes[0] as usize;
                Ok(TensorRef {
                    shape: &self.shapes[..1],
                    data: &self.data[index * len..(index + 1) * len],
                })
            }
        }
    }

    #[inline]
    fn resolve(&self, entry: Entry) -> ResultRef<'_> {
        match entry.slot() {
            Slot::Output { shape, data_start } => {
                let shape = &self.shapes[shape];
                // Entries are only made for outputs read whole from these lists.
                let values = crunch_abi::element_count(shape).expect("an output read whole");
                Ok(TensorRef {
                    shape,
                    data: &self.data[data_start..data_start + values],
                })
            }
            Slot::Failed(error) => Err(&self.errors[error]),
        }
    }
}

/// Every result of `batches` (a run's or a job's batches, in order), borrowed.
pub fn each(batches: &[Results]) -> impl Iterator<Item = ResultRef<'_>> + Clone {
    batches.iter().flat_map(Results::iter)
}

/// How many items `batches` hold.
pub fn count(batches: &[Results]) -> usize {
    batches.iter().map(Results::len).sum()
}

/// Records, item by item, where each output lies in the outputs a pack returned (or which error
/// the item got), while those lists are borrowed for reading.
pub(crate) struct ResultsBuilder<'a> {
    shapes: &'a [u32],
    data: &'a [f64],
    built: BuiltResults,
}

/// What a [`ResultsBuilder`] recorded.
pub(crate) struct BuiltResults {
    entries: Vec<Entry>,
    errors: Vec<ItemError>,
    /// Instead of entries: every one of this many items' output is one vector of this length.
    vectors: Option<(usize, u32)>,
}

impl<'a> ResultsBuilder<'a> {
    /// A builder for `len` items whose outputs lie in `shapes` and `data`.
    pub(crate) fn new(shapes: &'a [u32], data: &'a [f64], len: usize) -> Self {
        Self {
            shapes,
            data,
            built: BuiltResults {
                entries: Vec::with_capacity(len),
                errors: Vec::new(),
                vectors: None,
            },
        }
    }

    /// The next item's output: `tensor`, read from this builder's lists.
    pub(crate) fn output(&mut self, tensor: TensorRef<'a>) {
        debug_assert_eq!(
            crunch_abi::element_count(tensor.shape),
            Some(tensor.data.len())
        );
        self.built.entries.push(Entry::output(
            offset_in(self.shapes, tensor.shape),
            tensor.shape.len(),
            offset_in(self.data, tensor.data),
        ));
    }

    /// Records the outputs of all `count` items in one walk over the lists, when each item holds
    /// exactly one tensor and the lists hold nothing more (the results of a batch in which no
    /// item failed). `false`, with nothing recorded, when they do not: reading item by item
    /// then finds what differs.
    pub(crate) fn all_outputs(&mut self, count: u32) -> bool {
        let (shapes, values) = (self.shapes, self.data.len());
        let entries = &mut self.built.entries;
        // Every item one vector of the same length (what a whole-batch kernel of fixed-length
        // records gives): each output follows from the item's position, and nothing need be
        // recorded per item when nothing was before.
        if let Some(len) = crunch_abi::vectors_len(shapes, count as usize)
            && (len as usize).checked_mul(count as usize) == Some(values)
        {
            if entries.is_empty() && self.built.errors.is_empty() {
                self.built.vectors = Some((count as usize, len));
            } else {
                let len = len as usize;
                entries.extend((0..count as usize).map(|i| Entry::output(3 * i + 2, 1, i * len)));
            }
            return true;
        }
        let recorded = entries.len();
        let (mut at, mut data_at) = (0, 0);
        for _ in 0..count {
            let whole = match shapes.get(at..at + 2) {
                Some(&[1, rank]) => {
                    let dims = at + 2..at + 2 + rank as usize;
                    shapes
                        .get(dims.clone())
                        .and_then(crunch_abi::element_count)
                        .filter(|&len| len <= values - data_at)
                        .map(|len| (dims, len))
                }
                _ => None,
            };
            let Some((dims, len)) = whole else {
                entries.truncate(recorded);
                return false;
            };
            entries.push(Entry::output(dims.start, dims.len(), data_at));
            (at, data_at) = (dims.end, data_at + len);
        }
        if at != shapes.len() || data_at != values {
            entries.truncate(recorded);
            return false;
        }
        true
    }

    /// The next item failed with `error`.
    pub(crate) fn error(&mut self, error: ItemError) {
        let built = &mut self.built;
        built.entries.push(Entry::failed(built.errors.len()));
        built.errors.push(error);
    }

    /// Everything recorded.
    pub(crate) fn finish(self) -> BuiltResults {
        self.built
    }
}

/// Where `part`, a sub-slice of `whole`, starts within it.
/// An empty `part` counts too: it was cut from `whole` where it starts.
fn offset_in<T>(whole: &[T], part: &[T]) -> usize {
    let offset = (part.as_ptr() as usize).wrapping_sub(whole.as_ptr() as usize) / size_of::<T>();
    debug_assert!(offset + part.len() <= whole.len());
    offset
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::types::KernelError;

    #[test]
    fn entries_point_into_the_wire_outputs() {
        let shapes = vec![2];
        let data = vec![1.0, 2.0, 3.0];
        let mut builder = ResultsBuilder::new(&shapes, &data, 3);
        builder.output(TensorRef {
            shape: &shapes[..1],
            data: &data[..2],
        });
        builder.error(ItemError::Kernel(KernelError::Domain("no".into())));
        builder.output(TensorRef {
            shape: &shapes[1..],
            data: &data[2..],
        });
        let built = builder.finish();
        let results = Results::from_parts(shapes.clone(), data.clone(), built);
        assert_eq!(results.len(), 3);
        assert_eq!(results.failed(), 1);
        assert_eq!(results.values(), 3);
        assert_eq!(
            results.to_vec(),
            vec![
                Ok(Tensor {
                    shape: vec![2],
                    data: vec![1.0, 2.0],
                }),
                Err(ItemError::Kernel(KernelError::Domain("no".into()))),
                Ok(Tensor {
                    shape: vec![],
                    data: vec![3.0],
                }),
            ]
        );
    }

    #[test]
    fn appended_results_keep_their_order() {
        // One scalar output (no shape words, one value).
        let one = |v: f64| {
            let (shapes, data) = (Vec::<u32>::new(), vec![v]);
            let mut b = ResultsBuilder::new(&shapes, &data, 1);
            b.output(TensorRef {
                shape: &shapes,
                data: &data,
            });
            let built = b.finish();
            Results::from_parts(shapes, data, built)
        };
        let mut results = Results::all_failed(1, ItemError::BatchFailed("a".into()));
        results.append(one(2.0));
        results.append(Results::all_failed(1, ItemError::BatchFailed("b".into())));
        assert_eq!(results.len(), 3);
        assert_eq!(
            results.get(1).and_then(Result::ok).map(|t| t.data),
            Some(&[2.0][..])
        );
        assert_eq!(
            results.get(2),
            Some(Err(&ItemError::BatchFailed("b".into())))
        );
        assert_eq!(
            results.get(0),
            Some(Err(&ItemError::BatchFailed("a".into())))
        );
    }

    #[test]
    fn pushed_outputs_and_errors_read_back_in_order() {
        let mut results = Results::with_capacity(3);
        results
            .push_output_with::<()>(|shapes, data| {
                shapes.extend([2, 1, 2]);
                data.extend([1.0, 2.0]);
                Ok(())
            })
            .unwrap();
        assert!(
            results
                .push_output_with(|shapes, _| {
                    shapes.push(9);
                    Err("torn")
                })
                .is_err()
        );
        results.push_error(ItemError::BatchFailed("x".into()));
        let mut other = Results::with_capacity(1);
        other
            .push_output_with::<()>(|shapes, data| {
                shapes.push(0);
                data.push(3.0);
                Ok(())
            })
            .unwrap();
        let batches = [results, other];
        assert_eq!(count(&batches), 3);
        let all: Vec<_> = each(&batches).collect();
        assert_eq!(
            all,
            vec![
                Ok(TensorRef {
                    shape: &[1, 2],
                    data: &[1.0, 2.0],
                }),
                Err(&ItemError::BatchFailed("x".into())),
                Ok(TensorRef {
                    shape: &[],
                    data: &[3.0],
                }),
            ]
        );
    }

    #[test]
    fn a_failed_batch_shares_one_error() {
        let results = Results::all_failed(3, ItemError::BatchFailed("trap".into()));
        assert_eq!(results.failed(), 3);
        assert!(
            results
                .iter()
                .all(|r| r == Err(&ItemError::BatchFailed("trap".into())))
        );
    }

    #[test]
    fn outputs_of_one_length_are_held_without_entries_and_read_back_the_same() {
        let (shapes, data) = (vec![1, 1, 2, 1, 1, 2], vec![1.0, 2.0, 3.0, 4.0]);
        let vectors = || {
            let mut built = ResultsBuilder::new(&shapes, &data, 2);
            assert!(built.all_outputs(2));
            Results::from_parts(shapes.clone(), data.clone(), built.finish())
        };
        let results = vectors();
        assert!(matches!(results.layout, Layout::Vectors(2)));
        assert_eq!(results.shapes, [2], "the pack's shape words are not kept");
        // The same items recorded one by one.
        let mut built = ResultsBuilder::new(&shapes, &data, 2);
        for (dims, values) in [(2..3, 0..2), (5..6, 2..4)] {
            built.output(TensorRef {
                shape: &shapes[dims],
                data: &data[values],
            });
        }
        let by_entries = Results::from_parts(shapes.clone(), data.clone(), built.finish());
        assert!(matches!(by_entries.layout, Layout::Entries(_)));
        assert_eq!(results, by_entries);
        assert_eq!(
            (results.len(), results.failed(), results.values()),
            (2, 0, 4)
        );
        assert_eq!(
            results.get(1),
            Some(Ok(TensorRef {
                shape: &[2],
                data: &[3.0, 4.0],
            }))
        );
        assert_eq!(results.get(2), None);

        // Added to, it takes entries, and every item still reads back.
        let mut grown = vectors();
        grown.push_error(ItemError::BatchFailed("x".into()));
        grown.append(vectors());
        let two = |a: f64, b: f64| {
            Ok(Tensor {
                shape: vec![2],
                data: vec![a, b],
            })
        };
        assert_eq!(
            grown.to_vec(),
            vec![
                two(1.0, 2.0),
                two(3.0, 4.0),
                Err(ItemError::BatchFailed("x".into())),
                two(1.0, 2.0),
                two(3.0, 4.0),
            ]
        );
        assert_eq!(grown.failed(), 1);
    }
}
