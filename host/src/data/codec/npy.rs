//! NumPy `.npy` items and results: the first axis is the item axis, each item one tensor.
//!
//! Input: a float64 array (little- or big-endian) in C order of shape `[n, ...]`, with nothing
//! after its values; item i is the tensor `a[i]` (shape `[]` for a 1-D array). Output: the results stacked into `[n, ...]`; they must
//! share one shape, and failed items are rows of NaN (the CLI lists their errors beside it).

use std::io::{Read, Write};

use anyhow::{Context, Result, bail, ensure};
use npyz::WriterBuilder;

use crunch_abi::{TensorRef, WireData};

use crate::data::types::Item;
use crate::data::wire::ResultRef;

/// The dtypes read: float64, little-endian (NumPy's default) or big-endian (converted).
const FLOAT64: [&str; 2] = ["<f8", ">f8"];

/// The items of an array in the wire layout: the array's values are the batch's values as they are, each
/// item one tensor of the array's shape without its first axis. `len` is the stream's length
/// when known (a file's).
pub fn read_wire(mut reader: impl Read, len: Option<u64>) -> Result<WireData> {
    let npy = npyz::NpyFile::new(&mut reader).context("not a valid .npy file")?;
    ensure!(
        npy.order() == npyz::Order::C,
        "Fortran-ordered arrays are not supported; save with numpy.ascontiguousarray"
    );
    let dtype = match npy.dtype() {
        npyz::DType::Plain(ty) => ty.to_string(),
        record => record.descr(),
    };
    ensure!(
        FLOAT64.contains(&dtype.as_str()),
        "expected float64 data ('<f8', or big-endian '>f8'), got {dtype}; convert with numpy.asarray(a, dtype='<f8')"
    );
    let shape: Vec<u64> = npy.shape().to_vec();
    let Some((&count, rest)) = shape.split_first() else {
        bail!("a 0-d array holds no items: the first axis must be the item axis");
    };
    let rest: Vec<u32> = rest
        .iter()
        .map(|&d| u32::try_from(d).context("dimension too large"))
        .collect::<Result<_>>()?;
    let needed = npy.len();
    let big_endian = dtype == FLOAT64[1];
    // A file's length bounds what its header may claim, before anything is allocated for it.
    if let Some(len) = len.filter(|&len| needed.saturating_mul(8) > len) {
        bail!(
            "the data ends early: shape {shape:?} needs {needed} values ({} bytes) but the file \
             holds {len} bytes",
            needed.saturating_mul(8)
        );
    }
    let data = usize::try_from(needed)
        .context("too many values")
        .and_then(|n| Ok(read_values(npy.into_inner(), n, big_endian, len.is_some())?))
        .map_err(|e| {
            anyhow::anyhow!("the data ends early: shape {shape:?} needs {needed} values ({e})")
        })?;
    let mut extra = Vec::new();
    reader.take(1 << 20).read_to_end(&mut extra)?;
    ensure!(
        extra.is_empty(),
        "{} unexpected bytes after the array's {needed} values",
        if extra.len() == 1 << 20 {
            "over a MiB of".to_string()
        } else {
            extra.len().to_string()
        }
    );
    let per_item = crate::data::types::element_count(&rest).context("item shape overflows")?;
    ensure!(
        data.len() as u64 == count * per_item as u64,
        "array holds {} values, shape {shape:?} needs {}",
        data.len(),
        count * per_item as u64
    );
    let count = u32::try_from(count).context("too many items")?;
    let mut shapes = Vec::with_capacity(count as usize * (2 + rest.len()));
    for _ in 0..count {
        shapes.push(1);
        shapes.push(rest.len() as u32);
        shapes.extend_from_slice(&rest);
    }
    Ok(WireData {
        count,
        shapes,
        data,
    })
}

pub fn write_items(writer: &mut impl Write, items: &[Item]) -> Result<()> {
    let tensors = items
        .iter()
        .enumerate()
        .map(|(i, item)| match item.as_slice() {
            [t] => Ok(t),
            _ => bail!(
                "item {i} has {} tensors; NPY holds one per item",
                item.len()
            ),
        })
        .collect::<Result<Vec<_>>>()?;
    stack(
        writer,
        tensors.len(),
        tensors.iter().map(|t| Some(t.view())),
    )
}

/// Writes `count` results (`results` yields that many); failed items are rows of NaN.
pub fn write_results<'a>(
    writer: &mut impl Write,
    count: usize,
    results: impl Iterator<Item = ResultRef<'a>> + Clone,
) -> Result<()> {
    stack(writer, count, results.map(Result::ok))
}

/// Writes `count` tensors of one shape as `[count, ...shape]`; `None` rows become NaN.
fn stack<'a>(
    writer: &mut impl Write,
    count: usize,
    rows: impl Iterator<Item = Option<TensorRef<'a>>> + Clone,
) -> Result<()> {
    let shape: &[u32] = rows.clone().flatten().next().map_or(&[0], |t| t.shape);
    if let Some((i, t)) = rows
        .clone()
        .enumerate()
        .find_map(|(i, t)| t.filter(|t| t.shape != shape).map(|t| (i, t)))
    {
        bail!(
            "results differ in shape ({:?} at item {i}, {shape:?} before): NPY needs one shape, use .json or .crb",
            t.shape
        );
    }
    let per_item = crate::data::types::element_count(shape).context("shape overflows")?;
    let mut full_shape = vec![count as u64];
    full_shape.extend(shape.iter().map(|&d| u64::from(d)));
    let writer = npyz::WriteOptions::<f64>::new()
        .default_dtype()
        .shape(&full_shape)
        .writer(writer)
        .write_header_only()?;
    let nan_row = vec![f64::NAN; per_item];
    write_values(writer, rows.map(|row| row.map_or(&nan_row[..], |t| t.data)))?;
    Ok(())
}

/// Values read at first from a stream of unknown length (8 MiB); more are read in steps that
/// double what is there, so a header that claims more than follows costs no more than what does.
const FIRST_STEP_VALUES: usize = 1 << 20;

/// `count` float64 values from `reader`, little-endian or big-endian, read straight into the
/// values' memory (fresh pages, huge where the kernel allows) and put in this machine's byte
/// order in place where the file's differs. `checked`: the stream is known to hold them all, so
/// their room is made at once.
fn read_values(
    reader: &mut impl Read,
    count: usize,
    big_endian: bool,
    checked: bool,
) -> std::io::Result<Vec<f64>> {
    let first = if checked {
        count
    } else {
        count.min(FIRST_STEP_VALUES)
    };
    let mut values: Vec<f64> = vec![0.0; first];
    crate::process::memory::prefer_huge_pages(&mut values);
    let mut read = 0;
    loop {
        reader.read_exact(bytemuck::cast_slice_mut(&mut values[read..]))?;
        read = values.len();
        if read == count {
            break;
        }
        values.resize(count.min(2 * read), 0.0);
    }
    if big_endian != cfg!(target_endian = "big") {
        for v in &mut values {
            *v = f64::from_bits(v.to_bits().swap_bytes());
        }
    }
    Ok(values)
}

/// Writes the values of `rows`, one after another, little-endian.
fn write_values<'a>(
    mut writer: impl Write,
    rows: impl Iterator<Item = &'a [f64]>,
) -> std::io::Result<()> {
    let mut swapped = Vec::new();
    for row in rows {
        if cfg!(target_endian = "little") {
            writer.write_all(bytemuck::cast_slice(row))?;
        } else {
            swapped.clear();
            swapped.extend(row.iter().flat_map(|v| v.to_le_bytes()));
            writer.write_all(&swapped)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::types::{ItemError, ItemResult, Tensor};
    use crate::data::wire::result_ref;

    fn write(results: &[ItemResult]) -> Result<Vec<u8>> {
        let mut buf = Vec::new();
        write_results(&mut buf, results.len(), results.iter().map(result_ref))?;
        Ok(buf)
    }

    #[test]
    fn rows_round_trip_and_failures_are_nan() {
        let t = |v: Vec<f64>| Tensor {
            shape: vec![2],
            data: v,
        };
        let buf = write(&[
            Ok(t(vec![1.0, 2.0])),
            Err(ItemError::BatchFailed("x".into())),
        ])
        .unwrap();
        let wire = read_wire(&buf[..], None).unwrap();
        assert_eq!(wire.shapes, vec![1, 1, 2, 1, 1, 2]);
        assert_eq!(wire.data[..2], [1.0, 2.0]);
        assert!(wire.data[2..].iter().all(|v| v.is_nan()));
    }

    #[test]
    fn mixed_shapes_are_refused() {
        let a = Tensor {
            shape: vec![1],
            data: vec![1.0],
        };
        let b = Tensor {
            shape: vec![2],
            data: vec![1.0, 2.0],
        };
        let err = write(&[Ok(a), Ok(b)]).unwrap_err();
        assert!(err.to_string().contains("item 1"));
    }

    #[test]
    fn arrays_of_several_steps_round_trip_in_either_byte_order() {
        // Rows of 3001 values: steps of STEP_VALUES do not fall on row ends, and the last is short.
        let rows: Vec<ItemResult> = (0..7)
            .map(|r| {
                let data = (0..3001)
                    .map(|i| (r * 3001 + i) as f64 * 0.37 - 1e3)
                    .collect();
                Ok(Tensor {
                    shape: vec![3001],
                    data,
                })
            })
            .collect();
        let buf = write(&rows).unwrap();
        let expected: Vec<f64> = rows
            .iter()
            .flat_map(|r| r.as_ref().unwrap().data.clone())
            .collect();
        assert_eq!(read_wire(&buf[..], None).unwrap().data, expected);

        // The same array big-endian: the header says '>f8', every value's bytes reversed.
        let header_end = buf.len() - expected.len() * 8;
        let mut big = buf[..header_end].to_vec();
        let at = big.windows(3).position(|w| w == b"<f8").expect("the dtype");
        big[at] = b'>';
        big.extend(expected.iter().flat_map(|v| v.to_be_bytes()));
        assert_eq!(read_wire(&big[..], None).unwrap().data, expected);

        // Cut short inside the last step.
        let err = read_wire(&buf[..buf.len() - 12], None).unwrap_err();
        assert!(
            format!("{err:#}").contains("the data ends early"),
            "{err:#}"
        );
    }

    #[test]
    fn a_header_claiming_more_than_the_file_holds_is_refused_before_reading() {
        // A header for 10^15 values in front of three: refused by the file's length, with no
        // room made for what it claims; from a stream of unknown length, when the values end.
        let mut buf = Vec::new();
        npyz::WriteOptions::<f64>::new()
            .default_dtype()
            .shape(&[1_000_000_000_000_000])
            .writer(&mut buf)
            .write_header_only()
            .unwrap();
        buf.extend([1.0f64, 2.0, 3.0].iter().flat_map(|v| v.to_le_bytes()));
        let err = read_wire(&buf[..], Some(buf.len() as u64)).unwrap_err();
        assert!(
            format!("{err:#}").contains(&format!(
                "needs 1000000000000000 values (8000000000000000 bytes) but the file holds {} bytes",
                buf.len()
            )),
            "{err:#}"
        );
        let err = read_wire(&buf[..], None).unwrap_err();
        assert!(
            format!("{err:#}").contains("the data ends early"),
            "{err:#}"
        );
    }
}
