//! JSON items and results.
//!
//! Input: `{"items": [ITEM, ...]}` or a bare `[ITEM, ...]`, where an ITEM is a list of tensors,
//! `{"inputs": [TENSOR, ...]}`, or a flat list of numbers (one 1-D tensor); a TENSOR is
//! `{"shape": [...], "data": [...]}` or a flat list of numbers. Output:
//! `{"items": [RESULT, ...]}` with RESULT = TENSOR or `{"error": {"kind": K, "message": M}}`.
//! Non-finite values are written as the strings "NaN", "Infinity" and "-Infinity" (JSON has no
//! such numbers); on input those strings and `null` (NaN) are accepted.

use std::io::{Read, Write};

use anyhow::{Context, Result, bail};
use serde::ser::{SerializeMap, SerializeSeq};
use serde::{Serialize, Serializer};
use serde_json::Value;
use serde_json::error::Category;

use crunch_abi::{TensorRef, WireData};

use crate::data::strict_json;
use crate::data::types::{ErrorKind, Item, ItemError, ItemResult, Tensor};
use crate::data::wire::ResultRef;

/// The whole document; a syntax error is "not valid JSON", a key given twice is named.
fn document(reader: impl Read) -> Result<Value> {
    strict_json::from_reader(reader).map_err(|e| match e.classify() {
        Category::Data => anyhow::Error::new(e),
        _ => anyhow::Error::new(e).context("not valid JSON"),
    })
}

pub fn read_items(reader: impl Read) -> Result<Vec<Item>> {
    let root = document(reader)?;
    let items = match root {
        Value::Array(items) => items,
        Value::Object(mut map) => match map.remove("items") {
            Some(Value::Array(items)) => items,
            Some(_) => bail!("`items` must be a list"),
            None => bail!("expected a list of items or an object with an `items` list"),
        },
        _ => bail!("expected a list of items or an object with an `items` list"),
    };
    items
        .into_iter()
        .enumerate()
        .map(|(i, v)| item(v).with_context(|| format!("item {i}")))
        .collect()
}

/// The items in the wire layout (every tensor was checked against its shape as it was read).
pub fn read_wire(reader: impl Read) -> Result<WireData> {
    let items = read_items(reader)?;
    let values = items.iter().flatten().map(|t| t.data.len()).sum();
    let mut wire = WireData::with_capacity(items.len(), values);
    for (i, item) in items.iter().enumerate() {
        wire.push(item.iter().map(Tensor::view))
            .with_context(|| format!("item {i}"))?;
    }
    Ok(wire)
}

fn item(value: Value) -> Result<Item> {
    match value {
        Value::Array(values) if values.iter().all(is_scalar) => Ok(vec![flat(values)?]),
        Value::Array(tensors) => tensor_list(tensors),
        Value::Object(mut map) => match map.remove("inputs") {
            Some(Value::Array(tensors)) => tensor_list(tensors),
            _ => bail!("an item object needs an `inputs` list of tensors"),
        },
        other => bail!("expected a list of tensors, got {}", kind(&other)),
    }
}

fn tensor_list(tensors: Vec<Value>) -> Result<Item> {
    tensors
        .into_iter()
        .enumerate()
        .map(|(i, t)| tensor(t).with_context(|| format!("tensor {i}")))
        .collect()
}

fn tensor(value: Value) -> Result<Tensor> {
    match value {
        Value::Array(values) => flat(values),
        Value::Object(mut map) => {
            let shape = match map.remove("shape") {
                Some(Value::Array(dims)) => dims
                    .iter()
                    .map(|d| {
                        d.as_u64()
                            .and_then(|d| u32::try_from(d).ok())
                            .with_context(|| {
                                format!("shape entries must be integers in 0..2^32, got {d}")
                            })
                    })
                    .collect::<Result<Vec<u32>>>()?,
                _ => bail!("a tensor object needs a `shape` list"),
            };
            let data = match map.remove("data") {
                Some(Value::Array(values)) => numbers(values)?,
                _ => bail!("a tensor object needs a `data` list"),
            };
            Tensor::checked(shape, data).map_err(anyhow::Error::msg)
        }
        other => bail!("expected a tensor, got {}", kind(&other)),
    }
}

fn flat(values: Vec<Value>) -> Result<Tensor> {
    let data = numbers(values)?;
    let len = u32::try_from(data.len()).context("too many values for one tensor")?;
    Ok(Tensor {
        shape: vec![len],
        data,
    })
}

fn numbers(values: Vec<Value>) -> Result<Vec<f64>> {
    values
        .iter()
        .enumerate()
        .map(|(i, v)| number(v).with_context(|| format!("value {i}")))
        .collect()
}

fn number(value: &Value) -> Result<f64> {
    match value {
        Value::Number(n) => n.as_f64().context("number out of f64 range"),
        Value::Null => Ok(f64::NAN),
        Value::String(s) => match s.as_str() {
            "NaN" | "nan" => Ok(f64::NAN),
            "Infinity" | "inf" => Ok(f64::INFINITY),
            "-Infinity" | "-inf" => Ok(f64::NEG_INFINITY),
            _ => bail!("expected a number, got the string {s:?}"),
        },
        other => bail!("expected a number, got {}", kind(other)),
    }
}

fn is_scalar(value: &Value) -> bool {
    matches!(
        value,
        Value::Number(_) | Value::Null | Value::String(_) | Value::Bool(_)
    )
}

fn kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "an object",
    }
}

pub fn read_results(reader: impl Read) -> Result<Vec<ItemResult>> {
    let root = document(reader)?;
    let items = match root {
        Value::Object(mut map) => map.remove("items"),
        _ => None,
    };
    let Some(Value::Array(items)) = items else {
        bail!("expected an object with an `items` list");
    };
    items
        .into_iter()
        .enumerate()
        .map(|(i, v)| {
            if let Some(error) = v.get("error") {
                let field = |name: &str| {
                    error
                        .get(name)
                        .and_then(Value::as_str)
                        .unwrap_or_default()
                        .to_string()
                };
                // A kind this build does not know reads as a failed batch.
                let kind = ErrorKind::parse(&field("kind")).unwrap_or(ErrorKind::BatchFailed);
                Ok(Err(ItemError::from_parts(kind, field("message"))))
            } else {
                tensor(v).map(Ok)
            }
            .with_context(|| format!("item {i}"))
        })
        .collect()
}

/// A value written as a JSON number when finite, else as "NaN", "Infinity" or "-Infinity".
struct JsonF64(f64);

impl Serialize for JsonF64 {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self.0 {
            v if v.is_finite() => s.serialize_f64(v),
            v if v.is_nan() => s.serialize_str("NaN"),
            v if v > 0.0 => s.serialize_str("Infinity"),
            _ => s.serialize_str("-Infinity"),
        }
    }
}

struct JsonTensor<'a>(TensorRef<'a>);

impl Serialize for JsonTensor<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut map = s.serialize_map(Some(2))?;
        map.serialize_entry("shape", self.0.shape)?;
        map.serialize_entry("data", &JsonValues(self.0.data))?;
        map.end()
    }
}

struct JsonValues<'a>(&'a [f64]);

impl Serialize for JsonValues<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut seq = s.serialize_seq(Some(self.0.len()))?;
        for &v in self.0 {
            seq.serialize_element(&JsonF64(v))?;
        }
        seq.end()
    }
}

struct JsonResult<'a>(ResultRef<'a>);

impl Serialize for JsonResult<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self.0 {
            Ok(t) => JsonTensor(t).serialize(s),
            Err(e) => {
                let mut map = s.serialize_map(Some(1))?;
                map.serialize_entry(
                    "error",
                    &serde_json::json!({ "kind": e.kind(), "message": e.message() }),
                )?;
                map.end()
            }
        }
    }
}

/// Writes `{"items": [...]}`, one item per line for readability and streaming.
fn write_list<T>(
    writer: &mut impl Write,
    list: impl Iterator<Item = T>,
    one: impl Fn(&mut dyn Write, T) -> Result<()>,
) -> Result<()> {
    writer.write_all(b"{\"items\": [\n")?;
    let mut first = true;
    for entry in list {
        if !first {
            writer.write_all(b",\n")?;
        }
        first = false;
        one(writer, entry)?;
    }
    writer.write_all(if first { b"]}\n" } else { b"\n]}\n" })?;
    Ok(())
}

pub fn write_results<'a>(
    writer: &mut impl Write,
    results: impl Iterator<Item = ResultRef<'a>>,
) -> Result<()> {
    write_list(writer, results, |w, r| {
        Ok(serde_json::to_writer(w, &JsonResult(r))?)
    })
}

pub fn write_items(writer: &mut impl Write, items: &[Item]) -> Result<()> {
    write_list(writer, items.iter(), |w, item| {
        let tensors: Vec<_> = item.iter().map(|t| JsonTensor(t.view())).collect();
        Ok(serde_json::to_writer(w, &tensors)?)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_every_item_form() {
        let text = r#"{"items": [[1, 2, 3], [{"shape": [2, 1], "data": [1, null]}, [4]], {"inputs": [["NaN", "-Infinity"]]}]}"#;
        let items = read_items(text.as_bytes()).unwrap();
        assert_eq!(items[0][0].shape, vec![3]);
        assert_eq!(items[1][0].shape, vec![2, 1]);
        assert!(items[1][0].data[1].is_nan());
        assert_eq!(items[2][0].data[1], f64::NEG_INFINITY);
    }

    #[test]
    fn errors_name_the_item_and_tensor() {
        let text = r#"[[1], [{"shape": [3], "data": [1, 2]}]]"#;
        let err = format!("{:#}", read_items(text.as_bytes()).unwrap_err());
        assert!(
            err.contains("item 1") && err.contains("tensor 0") && err.contains("needs 3"),
            "{err}"
        );
        let err = format!("{:#}", read_items(&b"[[1, true]]"[..]).unwrap_err());
        assert!(err.contains("item 0"), "{err}");
    }

    #[test]
    fn results_round_trip_including_non_finite() {
        let results = [
            Ok(Tensor {
                shape: vec![3],
                data: vec![1.5, f64::NAN, f64::NEG_INFINITY],
            }),
            Err(ItemError::from_parts(ErrorKind::InvalidInput, "bad".into())),
        ];
        let mut buf = Vec::new();
        write_results(&mut buf, results.iter().map(crate::data::wire::result_ref)).unwrap();
        let back = read_results(&buf[..]).unwrap();
        assert_eq!(back[1], results[1]);
        let t = back[0].as_ref().unwrap();
        assert!(t.data[1].is_nan() && t.data[2] == f64::NEG_INFINITY && t.data[0] == 1.5);
        let mut empty = Vec::new();
        write_results(&mut empty, std::iter::empty()).unwrap();
        assert_eq!(empty, b"{\"items\": [\n]}\n");
    }
}
