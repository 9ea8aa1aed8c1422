//! An input given up to its run: each batch writes its results over its own part of the input's
//! values when they fit there exactly (one vector per item, as many values as the batch's
//! inputs: an elementwise kernel, or records in and records of the same length out), and lets
//! the pack's copy of them go. The run then holds one array, not an input and a second array of
//! results, and does not fault a second one in page by page.

use std::borrow::Cow;

use super::batch::{Batch, Input, Lists};
use super::results::Results;

/// One batch of an input, with its part of the input's values to write its results over.
pub struct BatchInPlace<'a> {
    /// The batch's position in the run, from 0.
    pub index: usize,
    items: u32,
    shapes: &'a [u32],
    values: &'a mut [f64],
}

/// What became of one batch's results: written over its inputs (the vectors' length), or kept.
pub enum Written {
    /// Written over the batch's inputs: every item one vector of this many values.
    Over(u32),
    /// Kept as the pack returned them (failures, or outputs that do not fit the inputs).
    Kept(Results),
}

impl BatchInPlace<'_> {
    /// The batch laid out for a call, its lists lent from the input.
    pub fn batch(&self) -> Batch<'_> {
        Batch::from_lists(Lists {
            count: self.items,
            shapes: Cow::Borrowed(self.shapes),
            data: Cow::Borrowed(self.values),
        })
    }

    /// Writes `results` over the batch's inputs when they are one vector per item (nothing
    /// failed) that together hold exactly as many values; else keeps them.
    pub fn write(&mut self, results: Results) -> Written {
        match results.as_vectors() {
            Some((len, values))
                if results.len() == self.items as usize && values.len() == self.values.len() =>
            {
                self.values.copy_from_slice(values);
                Written::Over(len)
            }
            _ => Written::Kept(results),
        }
    }
}

impl Input {
    /// The input's batches of `batch_size` items (as [`Input::spans`] cuts them), each with its
    /// own part of the values to write its results over.
    pub fn batches_in_place(&mut self, batch_size: usize) -> Vec<BatchInPlace<'_>> {
        let spans = self.spans(batch_size);
        let shapes = &self.lists.shapes;
        let mut rest = self.lists.data.as_mut_slice();
        spans
            .into_iter()
            .enumerate()
            .map(|(index, span)| {
                let (values, tail) = std::mem::take(&mut rest).split_at_mut(span.values.len());
                rest = tail;
                BatchInPlace {
                    index,
                    items: span.items,
                    shapes: &shapes[span.shapes],
                    values,
                }
            })
            .collect()
    }

    /// The results of a run of [`Input::batches_in_place`] (`written`, one per batch in order):
    /// one [`Results`] over the input's values when every batch wrote vectors of one length
    /// over its inputs; else each batch's own, those written taken back out of the input.
    pub fn into_results(self, batch_size: usize, written: Vec<Written>) -> Vec<Results> {
        let first = written.first().and_then(|w| match w {
            Written::Over(len) => Some(*len),
            Written::Kept(_) => None,
        });
        if let Some(len) = first
            && written
                .iter()
                .all(|w| matches!(w, Written::Over(l) if *l == len))
        {
            let count = self.len();
            return vec![Results::vectors(count, len, self.lists.data)];
        }
        self.spans(batch_size)
            .into_iter()
            .zip(written)
            .map(|(span, written)| match written {
                Written::Over(len) => Results::vectors(
                    span.items as usize,
                    len,
                    self.lists.data[span.values].to_vec(),
                ),
                Written::Kept(results) => results,
            })
            .collect()
    }
}
