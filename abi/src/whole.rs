//! Whole-batch kernels: instead of one call per item, a kernel takes the batch's values at once
//! and runs one tight loop over them. Items are still checked and failed one by one.
//!
//! Two shapes of kernel are served. [`map_elementwise`]: each item is one tensor of any shape,
//! and the output has that shape, one value per input value (a normal CDF, say). [`map_records`]:
//! each item is one fixed-length record and gives one fixed-length output (an option contract
//! and its greeks, say). In both, the values of consecutive good items lie next to each other in
//! the batch's wire lists, so the kernel sees them as one slice: the whole batch when every item is
//! good.

use crate::{BatchResults, Items, TensorRef, WireData, WireError};

/// Reads every item of a batch and keeps what `accept` makes of it; items `accept` refuses
/// fail with its error, and items that cannot be read with `unreadable`'s. Returns the accepted
/// items' values with their indices, and the failures, both in item order.
#[allow(clippy::type_complexity)]
pub fn read_items<'a, T, E>(
    mut items: Items<'a>,
    unreadable: impl Fn(WireError) -> E,
    mut accept: impl FnMut(&[TensorRef<'a>]) -> Result<T, E>,
) -> (Vec<(u32, T)>, Vec<(u32, E)>) {
    let count = items.remaining();
    let mut accepted = Vec::with_capacity(count as usize);
    let mut failures = Vec::new();
    let mut tensors = Vec::new();
    for index in 0..count {
        let result = match items.next_into(&mut tensors) {
            Some(Ok(())) => accept(&tensors),
            Some(Err(e)) => Err(unreadable(e)),
            None => Err(unreadable(WireError::Malformed(
                "an earlier item could not be read".into(),
            ))),
        };
        match result {
            Ok(value) => accepted.push((index, value)),
            Err(e) => failures.push((index, e)),
        }
    }
    (accepted, failures)
}

/// Packs one output per item of a batch of `count`: for the items in `outputs` (in item order)
/// a tensor of the given shape holding the given values, none for the others.
pub fn wire_outputs<'s>(
    count: u32,
    outputs: impl IntoIterator<Item = (u32, &'s [u32], &'s [f64])>,
) -> WireData {
    let mut wire = WireData::with_capacity(count as usize, 0);
    let mut next = 0;
    for (index, shape, data) in outputs {
        for _ in next..index {
            wire.push_none();
        }
        wire.shapes.push(1);
        wire.shapes.push(shape.len() as u32);
        wire.shapes.extend_from_slice(shape);
        wire.data.extend_from_slice(data);
        wire.count += 1;
        next = index + 1;
    }
    for _ in next..count {
        wire.push_none();
    }
    wire
}

/// A run of consecutive accepted items whose values are contiguous in the batch.
#[derive(Debug)]
pub(crate) struct Run {
    /// Index of the first item.
    pub(crate) first: u32,
    /// Items in the run.
    pub(crate) count: u32,
    /// The run's values: `values[start..end]` of the batch.
    pub(crate) start: usize,
    pub(crate) end: usize,
}

/// Groups accepted one-tensor items into runs whose values lie next to each other in
/// `values` (the batch's data, which every tensor borrows from).
fn runs(values: &[f64], accepted: &[(u32, TensorRef<'_>)]) -> Vec<Run> {
    let base = values.as_ptr() as usize;
    let mut runs: Vec<Run> = Vec::new();
    for (index, t) in accepted {
        let start = (t.data.as_ptr() as usize - base) / size_of::<f64>();
        let end = start + t.data.len();
        match runs.last_mut() {
            Some(run) if run.end == start && run.first + run.count == *index => {
                run.count += 1;
                run.end = end;
            }
            _ => runs.push(Run {
                first: *index,
                count: 1,
                start,
                end,
            }),
        }
    }
    runs
}

/// The item's single tensor, once `accept` has taken the item.
fn single<'a, E>(
    tensors: &[TensorRef<'a>],
    accept: &mut impl FnMut(&[TensorRef<'a>]) -> Result<(), E>,
    unreadable: &impl Fn(WireError) -> E,
) -> Result<TensorRef<'a>, E> {
    accept(tensors)?;
    match tensors {
        [t] => Ok(*t),
        _ => Err(unreadable(WireError::Malformed(format!(
            "a whole-batch kernel accepted an item of {} tensors",
            tensors.len()
        )))),
    }
}

/// Runs an elementwise kernel over a batch in the wire layout: each item must be one tensor (any shape;
/// `accept` checks the item and words the error for one it refuses), and its output has the
/// same shape with `f` applied to every value. `f(inputs, outputs)` is called once per run of
/// consecutive good items (once for the whole batch when every item is good), with
/// `outputs.len() == inputs.len()`.
pub fn map_elementwise<'a, E>(
    items: Items<'a>,
    unreadable: impl Fn(WireError) -> E,
    accept: impl FnMut(&[TensorRef<'_>]) -> Result<(), E>,
    mut f: impl FnMut(&[f64], &mut [f64]),
) -> BatchResults<E> {
    let count = items.remaining();
    let (shapes, values) = (items.shapes, items.data);
    let mut accept = accept;
    let (accepted, failures) = read_items(items, &unreadable, |ts| {
        single(ts, &mut accept, &unreadable)
    });
    let total = accepted.iter().map(|(_, t)| t.data.len()).sum();
    let mut data = vec![0.0; total];
    let mut at = 0;
    for run in runs(values, &accepted) {
        let len = run.end - run.start;
        f(&values[run.start..run.end], &mut data[at..at + len]);
        at += len;
    }
    if failures.is_empty() {
        // Every item is one tensor and gave its output of the same shape: the outputs' shape
        // words are the inputs'.
        let words = accepted.iter().map(|(_, t)| 2 + t.shape.len()).sum();
        let outputs = WireData {
            count,
            shapes: shapes[..words].to_vec(),
            data,
        };
        return BatchResults { outputs, failures };
    }
    let mut at = 0;
    let outputs = accepted.iter().map(|(index, t)| {
        let out = &data[at..at + t.data.len()];
        at += t.data.len();
        (*index, t.shape, out)
    });
    BatchResults {
        outputs: wire_outputs(count, outputs),
        failures,
    }
}

/// Runs a fixed-record kernel over a batch in the wire layout: each item must be one 1-D tensor of `input`
/// values (else it fails with `wrong_shape`'s error) and gives one 1-D output of `output` values.
///
/// `f(records, outputs, fail)` is called once per run of consecutive good items with
/// `records.len() == n * input` and `outputs.len() == n * output`; it fills every output
/// record, and calls `fail(i, error)` for the `i`-th record of the run if that one cannot be
/// computed (its output values are then dropped).
pub fn map_records<'a, E>(
    items: Items<'a>,
    input: usize,
    output: usize,
    unreadable: impl Fn(WireError) -> E,
    wrong_shape: impl Fn(&[TensorRef<'_>]) -> E,
    mut f: impl FnMut(&[f64], &mut [f64], &mut dyn FnMut(usize, E)),
) -> BatchResults<E> {
    let count = items.remaining();
    let values = items.data;
    let (runs, mut failures) = if uniform_records(&items, input) {
        // Every item is one record: one run, no reading item by item.
        let whole = Run {
            first: 0,
            count,
            start: 0,
            end: values.len(),
        };
        (vec![whole], Vec::new())
    } else {
        let accept = |tensors: &[TensorRef<'a>]| match tensors {
            [t] if t.shape.len() == 1 && t.shape[0] as usize == input => Ok(*t),
            _ => Err(wrong_shape(tensors)),
        };
        let (accepted, failures) = read_items(items, &unreadable, accept);
        (runs(values, &accepted), failures)
    };
    let records: usize = runs.iter().map(|run| run.count as usize).sum();
    let mut data = vec![0.0; records * output];
    let mut ok = vec![true; count as usize];
    let mut at = 0;
    for run in &runs {
        let n = run.count as usize;
        let mut fail = |i: usize, e: E| {
            ok[run.first as usize + i] = false;
            failures.push((run.first + i as u32, e));
        };
        f(
            &values[run.start..run.end],
            &mut data[at..at + n * output],
            &mut fail,
        );
        at += n * output;
    }
    kept_records(count, &runs, data, output, &ok, failures)
}

/// The outputs of the records of `runs` (`data`: `output` values per record, run after run),
/// those whose `ok` is false (they are in `failures`) left out.
pub(crate) fn kept_records<E>(
    count: u32,
    runs: &[Run],
    mut data: Vec<f64>,
    output: usize,
    ok: &[bool],
    mut failures: Vec<(u32, E)>,
) -> BatchResults<E> {
    let records: usize = runs.iter().map(|run| run.count as usize).sum();
    if failures.is_empty() && records == count as usize {
        // Every item gave its record: the outputs are laid out in one piece.
        let outputs = WireData::vectors(std::iter::repeat_n(output, records), data);
        return BatchResults { outputs, failures };
    }
    // Drop the outputs of records that failed inside `f`, keeping the rest in order.
    let mut kept = Vec::with_capacity(records);
    let mut write = 0;
    let mut read = 0;
    for run in runs {
        for index in run.first..run.first + run.count {
            if ok[index as usize] {
                data.copy_within(read..read + output, write);
                write += output;
                kept.push(index);
            }
            read += output;
        }
    }
    data.truncate(write);
    failures.sort_by_key(|(index, _)| *index);
    let shape = [output as u32];
    let outputs = kept
        .iter()
        .zip(data.chunks_exact(output.max(1)))
        .map(|(&index, values)| (index, &shape[..], values));
    BatchResults {
        outputs: wire_outputs(count, outputs),
        failures,
    }
}

/// Whether every item of `items` is exactly one 1-D tensor of `input` values (the shape words
/// `1, 1, input` per item, and nothing else).
pub(crate) fn uniform_records(items: &Items<'_>, input: usize) -> bool {
    let count = items.remaining() as usize;
    count.checked_mul(input) == Some(items.data.len())
        && crate::vectors_len(items.shapes, count).is_some_and(|len| len as usize == input)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t<'a>(shape: &'a [u32], data: &'a [f64]) -> TensorRef<'a> {
        TensorRef { shape, data }
    }

    fn unreadable(e: WireError) -> String {
        e.to_string()
    }

    #[test]
    fn elementwise_runs_over_contiguous_good_items_and_fails_the_rest() {
        let mut wire = WireData::default();
        wire.push([t(&[2], &[1.0, 2.0])]).unwrap();
        wire.push([t(&[], &[3.0])]).unwrap();
        wire.push([t(&[1], &[9.0]), t(&[1], &[9.0])]).unwrap(); // two tensors: refused
        wire.push_none(); // no tensors: refused
        wire.push([t(&[1, 2], &[4.0, 5.0])]).unwrap();
        let mut calls = Vec::new();
        let out = map_elementwise(
            wire.items(),
            unreadable,
            |ts| {
                if ts.len() == 1 {
                    Ok(())
                } else {
                    Err(format!("{} tensors", ts.len()))
                }
            },
            |xs, ys| {
                calls.push(xs.to_vec());
                for (x, y) in xs.iter().zip(ys) {
                    *y = -x;
                }
            },
        );
        assert_eq!(calls, vec![vec![1.0, 2.0, 3.0], vec![4.0, 5.0]]);
        assert_eq!(out.outputs.count, 5);
        assert_eq!(out.outputs.shapes, vec![1, 1, 2, 1, 0, 0, 0, 1, 2, 1, 2]);
        assert_eq!(out.outputs.data, vec![-1.0, -2.0, -3.0, -4.0, -5.0]);
        assert_eq!(
            out.failures,
            vec![(2, "2 tensors".to_string()), (3, "0 tensors".to_string())]
        );
    }

    #[test]
    fn elementwise_outputs_keep_the_shapes_of_good_inputs() {
        let mut wire = WireData::default();
        wire.push([t(&[2], &[1.0, 2.0])]).unwrap();
        wire.push([t(&[], &[3.0])]).unwrap();
        wire.push([t(&[1, 2], &[4.0, 5.0])]).unwrap();
        let out = map_elementwise(
            wire.items(),
            unreadable,
            |_| Ok(()),
            |xs, ys| ys.iter_mut().zip(xs).for_each(|(y, x)| *y = 2.0 * x),
        );
        let mut want = WireData::default();
        want.push([t(&[2], &[2.0, 4.0])]).unwrap();
        want.push([t(&[], &[6.0])]).unwrap();
        want.push([t(&[1, 2], &[8.0, 10.0])]).unwrap();
        assert_eq!(out.outputs, want);
        assert!(out.failures.is_empty());
    }

    #[test]
    fn uniform_records_pack_as_item_by_item() {
        let mut wire = WireData::default();
        for v in [1.0, -1.0, 2.0, 4.0] {
            wire.push([t(&[2], &[v, 10.0])]).unwrap();
        }
        let run = |items| {
            map_records(
                items,
                2,
                3,
                unreadable,
                |_| "wrong shape".to_string(),
                |records, outputs, fail| {
                    for (i, (r, o)) in records.chunks(2).zip(outputs.chunks_mut(3)).enumerate() {
                        if r[0] == -1.0 {
                            fail(i, format!("record {i}"));
                        }
                        o.copy_from_slice(&[r[0], r[1], r[0] * r[1]]);
                    }
                },
            )
        };
        let all_good = run(Items::new(2, &wire.shapes[6..], &wire.data[4..]));
        let mut want = WireData::default();
        want.push([t(&[3], &[2.0, 10.0, 20.0])]).unwrap();
        want.push([t(&[3], &[4.0, 10.0, 40.0])]).unwrap();
        assert_eq!(all_good.outputs, want);
        assert!(all_good.failures.is_empty());
        let one_bad = run(wire.items());
        let mut want = WireData::default();
        want.push([t(&[3], &[1.0, 10.0, 10.0])]).unwrap();
        want.push_none();
        want.push([t(&[3], &[2.0, 10.0, 20.0])]).unwrap();
        want.push([t(&[3], &[4.0, 10.0, 40.0])]).unwrap();
        assert_eq!(one_bad.outputs, want);
        assert_eq!(one_bad.failures, vec![(1, "record 1".to_string())]);
    }

    #[test]
    fn records_drop_the_outputs_of_records_that_fail() {
        let mut wire = WireData::default();
        for v in [1.0, -1.0, 2.0] {
            wire.push([t(&[2], &[v, 10.0])]).unwrap();
        }
        wire.push([t(&[3], &[1.0, 2.0, 3.0])]).unwrap(); // wrong length
        wire.push([t(&[2], &[3.0, 10.0])]).unwrap();
        let out = map_records(
            wire.items(),
            2,
            1,
            unreadable,
            |ts| format!("shape {:?}", ts[0].shape),
            |records, outputs, fail| {
                for (i, (r, o)) in records.chunks_exact(2).zip(outputs).enumerate() {
                    *o = r[0] * r[1];
                    if r[0] < 0.0 {
                        fail(i, format!("negative {}", r[0]));
                    }
                }
            },
        );
        assert_eq!(out.outputs.count, 5);
        assert_eq!(out.outputs.shapes, vec![1, 1, 1, 0, 1, 1, 1, 0, 1, 1, 1]);
        assert_eq!(out.outputs.data, vec![10.0, 20.0, 30.0]);
        assert_eq!(
            out.failures,
            vec![(1, "negative -1".to_string()), (3, "shape [3]".to_string())]
        );
    }

    #[test]
    fn a_truncated_batch_fails_the_unreadable_items() {
        let items = Items::new(2, &[1, 1, 2], &[1.0, 2.0]);
        let out = map_elementwise(
            items,
            unreadable,
            |_| Ok(()),
            |xs, ys| ys.copy_from_slice(xs),
        );
        assert_eq!(out.outputs.data, vec![1.0, 2.0]);
        assert_eq!(out.failures.len(), 1);
        assert_eq!(out.failures[0].0, 1);
    }
}
