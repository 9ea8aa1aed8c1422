//! Results for Python: one ndarray (first axis: items) when every result has the same shape,
//! failed items' rows NaN; else a list with one array per item and `None` for failed ones.
//! Failures travel beside them as `(item, batch, kind, message)` tuples.

use crunch::{ItemResult, Tensor};
use ndarray::{ArrayD, IxDyn};
use numpy::PyArray;
use pyo3::prelude::*;
use pyo3::types::{PyList, PyTuple};

/// One failed item.
#[derive(Clone, Debug, PartialEq)]
pub struct Failure {
    /// Position of the item in the input.
    pub item: u64,
    /// The batch it ran in.
    pub batch: u64,
    /// `invalid-input`, `domain`, `unknown-kernel` or `batch-failed`.
    pub kind: String,
    /// The reason.
    pub message: String,
}

/// Every item's result.
#[derive(Debug, PartialEq)]
pub enum Values {
    /// `count` results of shape `item_shape`, row after row (failed rows NaN).
    Rows {
        /// Items.
        count: usize,
        /// The shape every result has.
        item_shape: Vec<u32>,
        /// `count` rows of `item_shape`'s values.
        data: Vec<f64>,
    },
    /// Results of different shapes (or none at all): `None` for a failed item.
    Each(Vec<Option<Tensor>>),
}

impl Values {
    /// Rows when every result present has one shape, else one entry per item.
    pub fn from_each(results: Vec<Option<Tensor>>) -> Self {
        let mut shapes = results.iter().flatten().map(|t| &t.shape);
        let Some(first) = shapes.next() else {
            return Self::Each(results);
        };
        if shapes.any(|s| s != first) {
            return Self::Each(results);
        }
        let item_shape = first.clone();
        let m: usize = item_shape.iter().map(|&d| d as usize).product();
        let mut data = Vec::with_capacity(results.len() * m);
        crunch::process::memory::prefer_huge_pages(data.spare_capacity_mut());
        for result in &results {
            match result {
                Some(t) => data.extend_from_slice(&t.data),
                None => data.extend(std::iter::repeat_n(f64::NAN, m)),
            }
        }
        Self::Rows {
            count: results.len(),
            item_shape,
            data,
        }
    }
}

/// Splits owned results (as read back from Redis, in batches of `batch_size`) into values and
/// failures.
pub fn split_results(results: Vec<ItemResult>, batch_size: u64) -> (Values, Vec<Failure>) {
    let mut failures = Vec::new();
    let each = results
        .into_iter()
        .enumerate()
        .map(|(i, r)| match r {
            Ok(t) => Some(t),
            Err(e) => {
                failures.push(Failure {
                    item: i as u64,
                    batch: i as u64 / batch_size.max(1),
                    kind: e.kind().to_string(),
                    message: e.message().to_string(),
                });
                None
            }
        })
        .collect();
    (Values::from_each(each), failures)
}

/// `(values, failures)` as Python objects: an ndarray or a list, and a list of tuples.
pub fn to_python<'py>(
    py: Python<'py>,
    values: Values,
    failures: &[Failure],
) -> PyResult<Bound<'py, PyTuple>> {
    let values = match values {
        Values::Rows {
            count,
            item_shape,
            data,
        } => {
            let mut shape = Vec::with_capacity(item_shape.len() + 1);
            shape.push(count);
            shape.extend(item_shape.iter().map(|&d| d as usize));
            array(py, &shape, data)?.into_any()
        }
        Values::Each(each) => {
            let list = PyList::empty(py);
            for item in each {
                match item {
                    Some(t) => {
                        let shape: Vec<usize> = t.shape.iter().map(|&d| d as usize).collect();
                        list.append(array(py, &shape, t.data)?)?;
                    }
                    None => list.append(py.None())?,
                }
            }
            list.into_any()
        }
    };
    let failures = PyList::new(
        py,
        failures
            .iter()
            .map(|f| (f.item, f.batch, f.kind.as_str(), f.message.as_str())),
    )?;
    PyTuple::new(py, [values, failures.into_any()])
}

/// An ndarray over `data` (no copy) of `shape`.
fn array<'py>(py: Python<'py>, shape: &[usize], data: Vec<f64>) -> PyResult<Bound<'py, PyAny>> {
    let array = ArrayD::from_shape_vec(IxDyn(shape), data).map_err(|e| {
        crate::errors::CrunchError::new_err(format!(
            "a result's values do not match its shape: {e}"
        ))
    })?;
    Ok(PyArray::from_owned_array(py, array).into_any())
}
