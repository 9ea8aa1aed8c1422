//! Items and parameters from Python. An ndarray is read in place when it is C-contiguous
//! float64 (anything else array-like is converted by `numpy.asarray` once); its first axis is
//! the item axis. A sequence holds one item per element: an array-like (one tensor) or a tuple
//! of array-likes (several tensors).

use std::borrow::Cow;
use std::ops::Range;

use crunch::Tensor;
use crunch::data::wire;
use crunch_abi::{TensorRef, WireData};
use numpy::{
    PyArrayDescrMethods, PyArrayDyn, PyArrayMethods, PyReadonlyArrayDyn, PyUntypedArray,
    PyUntypedArrayMethods,
};
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::{PyBytes, PyDict, PyString, PyTuple};

use crate::errors::invalid;

/// The arrays a run reads, held (and borrowed read-only) for as long as it runs.
pub struct HeldItems<'py> {
    arrays: Vec<PyReadonlyArrayDyn<'py, f64>>,
    layout: Layout,
}

enum Layout {
    /// One array: item `i` is its row `i`, of shape `item_shape`.
    Dense { item_shape: Vec<u32>, count: usize },
    /// One array per tensor, `shapes[k]` the shape of `arrays[k]`; item `i` holds tensors
    /// `starts[i]..starts[i + 1]`.
    Listed {
        shapes: Vec<Vec<u32>>,
        starts: Vec<usize>,
    },
}

/// The items of a run as plain slices, which batch threads read without the GIL.
pub enum Input<'a> {
    /// Item `i` is `data[i * m..(i + 1) * m]`, of shape `item_shape` (of `m` values).
    Dense {
        /// Every item's values, item after item.
        data: &'a [f64],
        /// The shape of one item's tensor.
        item_shape: &'a [u32],
        /// Items.
        count: usize,
    },
    /// Item `i` holds `tensors[starts[i]..starts[i + 1]]`.
    Listed {
        /// Every item's tensors, item after item.
        tensors: Vec<TensorRef<'a>>,
        /// Where each item's tensors start, and the end.
        starts: &'a [usize],
    },
}

fn values<'a>(array: &'a PyReadonlyArrayDyn<'_, f64>) -> PyResult<&'a [f64]> {
    array
        .as_slice()
        .map_err(|e| invalid(format!("reading the items' values: {e}")))
}

impl HeldItems<'_> {
    /// The items as slices into the held arrays.
    pub fn input(&self) -> PyResult<Input<'_>> {
        Ok(match &self.layout {
            Layout::Dense { item_shape, count } => Input::Dense {
                data: values(&self.arrays[0])?,
                item_shape,
                count: *count,
            },
            Layout::Listed { shapes, starts } => Input::Listed {
                tensors: self
                    .arrays
                    .iter()
                    .zip(shapes)
                    .map(|(a, shape)| {
                        Ok(TensorRef {
                            shape,
                            data: values(a)?,
                        })
                    })
                    .collect::<PyResult<_>>()?,
                starts,
            },
        })
    }

    /// Whether the items came as one ndarray.
    pub fn is_array(&self) -> bool {
        matches!(self.layout, Layout::Dense { .. })
    }
}

impl Input<'_> {
    /// Items.
    pub fn len(&self) -> usize {
        match self {
            Self::Dense { count, .. } => *count,
            Self::Listed { starts, .. } => starts.len() - 1,
        }
    }

    /// Values across every item.
    pub fn values(&self) -> usize {
        match self {
            Self::Dense { data, .. } => data.len(),
            Self::Listed { tensors, .. } => tensors.iter().map(|t| t.data.len()).sum(),
        }
    }

    /// The tensors of item `i`.
    pub fn item(&self, i: usize) -> Vec<TensorRef<'_>> {
        match self {
            Self::Dense {
                data, item_shape, ..
            } => {
                let m = values_per_item(item_shape);
                vec![TensorRef {
                    shape: item_shape,
                    data: &data[i * m..(i + 1) * m],
                }]
            }
            Self::Listed { tensors, starts } => tensors[starts[i]..starts[i + 1]].to_vec(),
        }
    }

    /// Items `range` in the wire layout, as they cross into the pack: an array's rows lent as
    /// they lie, listed items copied into place.
    pub fn to_wire(&self, range: Range<usize>) -> wire::Batch<'_> {
        let count = range.len();
        let wire = match self {
            Self::Dense {
                data, item_shape, ..
            } => {
                let m = values_per_item(item_shape);
                let mut shapes = Vec::with_capacity(count * (2 + item_shape.len()));
                for _ in 0..count {
                    shapes.extend_from_slice(&[1, item_shape.len() as u32]);
                    shapes.extend_from_slice(item_shape);
                }
                return wire::Batch::from_lists(wire::Lists {
                    count: count as u32,
                    shapes: Cow::Owned(shapes),
                    data: Cow::Borrowed(&data[range.start * m..range.end * m]),
                });
            }
            Self::Listed { tensors, starts } => {
                let first = &tensors[starts[range.start]..starts[range.end]];
                let values = first.iter().map(|t| t.data.len()).sum();
                let mut wire = WireData::with_capacity(count, values);
                for i in range {
                    wire.push(tensors[starts[i]..starts[i + 1]].iter().copied())
                        .expect("numpy arrays hold exactly the values their shapes describe");
                }
                wire
            }
        };
        wire::Batch::from(wire)
    }
}

fn values_per_item(item_shape: &[u32]) -> usize {
    item_shape.iter().map(|&d| d as usize).product()
}

/// Reads `items`: an ndarray (first axis: items) or a sequence of items.
pub fn read_items<'py>(items: &Bound<'py, PyAny>) -> PyResult<HeldItems<'py>> {
    if items.cast::<PyUntypedArray>().is_ok() {
        let array = float64(items).map_err(|e| invalid(format!("items: {e}")))?;
        let shape = dims(array.shape()).map_err(|e| invalid(format!("items: {e}")))?;
        let Some((&count, item_shape)) = shape.split_first() else {
            return Err(invalid(
                "items is a 0-d array: its first axis must be the item axis (pass x.reshape(1) for one item)",
            ));
        };
        return Ok(HeldItems {
            arrays: vec![readonly(&array)?],
            layout: Layout::Dense {
                item_shape: item_shape.to_vec(),
                count: count as usize,
            },
        });
    }
    if items.is_instance_of::<PyString>()
        || items.is_instance_of::<PyBytes>()
        || items.is_instance_of::<PyDict>()
    {
        return Err(invalid(format!(
            "items must be an ndarray or a sequence of items, not {}",
            items.get_type().name()?
        )));
    }
    let mut arrays = Vec::new();
    let mut shapes = Vec::new();
    let mut starts = vec![0];
    let elements = items.try_iter().map_err(|_| {
        invalid("items must be an ndarray (first axis: items) or a sequence of items")
    })?;
    for (i, element) in elements.enumerate() {
        let element = element?;
        let mut add = |tensor: &Bound<'py, PyAny>, which: Option<usize>| -> PyResult<()> {
            let name = match which {
                Some(k) => format!("item {i}, input {k}"),
                None => format!("item {i}"),
            };
            let array = float64(tensor).map_err(|e| invalid(format!("{name}: {e}")))?;
            shapes.push(dims(array.shape()).map_err(|e| invalid(format!("{name}: {e}")))?);
            arrays.push(array);
            Ok(())
        };
        match element.cast::<PyTuple>() {
            Ok(tuple) => {
                for (k, tensor) in tuple.iter().enumerate() {
                    add(&tensor, Some(k))?;
                }
            }
            Err(_) => add(&element, None)?,
        }
        starts.push(arrays.len());
    }
    Ok(HeldItems {
        arrays: arrays.iter().map(readonly).collect::<PyResult<_>>()?,
        layout: Layout::Listed { shapes, starts },
    })
}

/// Reads `params` (`None` or a dict of name -> array-like) into named tensors.
pub fn read_params(params: Option<&Bound<'_, PyAny>>) -> PyResult<Vec<(String, Tensor)>> {
    let Some(params) = params.filter(|p| !p.is_none()) else {
        return Ok(Vec::new());
    };
    let dict = params
        .cast::<PyDict>()
        .map_err(|_| invalid("params must be a dict of name -> number or array"))?;
    let mut out = Vec::with_capacity(dict.len());
    for (name, value) in dict.iter() {
        let name: String = name
            .extract()
            .map_err(|_| invalid("params: every name must be a string"))?;
        let array = float64(&value).map_err(|e| invalid(format!("param `{name}`: {e}")))?;
        let shape = dims(array.shape()).map_err(|e| invalid(format!("param `{name}`: {e}")))?;
        let data = values(&readonly(&array)?)?.to_vec();
        out.push((name, Tensor { shape, data }));
    }
    Ok(out)
}

/// `value` as a C-contiguous float64 array: itself when it is one, else `numpy.asarray`'s
/// conversion (one copy). The error says why it cannot be read as numbers.
fn float64<'py>(value: &Bound<'py, PyAny>) -> Result<Bound<'py, PyArrayDyn<f64>>, String> {
    if let Ok(array) = value.cast::<PyArrayDyn<f64>>()
        && array.is_c_contiguous()
    {
        return Ok(array.clone());
    }
    if let Ok(array) = value.cast::<PyUntypedArray>()
        && array.dtype().kind() == b'c'
    {
        return Err("complex values are not supported (pass .real, .imag or abs(x))".into());
    }
    let py = value.py();
    static ASARRAY: PyOnceLock<Py<PyAny>> = PyOnceLock::new();
    let asarray = ASARRAY
        .import(py, "numpy", "asarray")
        .map_err(|e| e.to_string())?;
    let kwargs = PyDict::new(py);
    kwargs
        .set_item("dtype", "float64")
        .map_err(|e| e.to_string())?;
    kwargs.set_item("order", "C").map_err(|e| e.to_string())?;
    let converted = asarray
        .call((value,), Some(&kwargs))
        .map_err(|e| format!("cannot be read as float64 numbers ({e})"))?;
    converted
        .cast_into::<PyArrayDyn<f64>>()
        .map_err(|e| format!("cannot be read as float64 numbers ({e})"))
}

fn readonly<'py>(array: &Bound<'py, PyArrayDyn<f64>>) -> PyResult<PyReadonlyArrayDyn<'py, f64>> {
    array
        .try_readonly()
        .map_err(|e| invalid(format!("the items are being written elsewhere: {e}")))
}

fn dims(shape: &[usize]) -> Result<Vec<u32>, String> {
    shape
        .iter()
        .map(|&d| {
            u32::try_from(d)
                .map_err(|_| format!("dimension {d} is too large (at most {})", u32::MAX))
        })
        .collect()
}
