//! The file formats of `crunch run`: JSON (for people), NPY (dense batches, one row per item)
//! and Crunch binary (raw little-endian f64, several tensors per item). See `docs/formats.md`.

mod binary;
mod json;
mod npy;
mod replace;

use std::fs::File;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::str::FromStr;

use anyhow::{Context, Result, anyhow, bail};

use crate::data::types::{Item, ItemResult};
use crate::data::wire;

/// A file format for items and results.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// JSON: `{"items": [[TENSOR, ...], ...]}` in, `{"items": [TENSOR | {"error": ...}]}` out.
    Json,
    /// NumPy `.npy`: an array whose first axis is the item axis.
    Npy,
    /// Crunch binary (`.crb`): a small header, then tensors of raw little-endian f64.
    Binary,
}

impl Format {
    /// The format a file's extension implies (`.json`, `.npy`, `.crb` or `.bin`).
    pub fn from_path(path: &Path) -> Result<Self> {
        let ext = path
            .extension()
            .and_then(|e| e.to_str())
            .map(str::to_ascii_lowercase);
        match ext.as_deref() {
            Some("json") => Ok(Self::Json),
            Some("npy") => Ok(Self::Npy),
            Some("crb" | "bin") => Ok(Self::Binary),
            _ => bail!(
                "cannot tell the format of {} from its extension: use .json, .npy or .crb",
                path.display()
            ),
        }
    }

    /// The format `given` by the command-line option `option` (`--input-format`,
    /// `--output-format`), else the one the extension of `path` implies.
    pub fn resolve(given: Option<Self>, path: &Path, option: &str) -> Result<Self> {
        match given {
            Some(format) => Ok(format),
            None => {
                Self::from_path(path).map_err(|e| anyhow!("{e}, or pass {option} json|npy|crb"))
            }
        }
    }
}

impl FromStr for Format {
    type Err = anyhow::Error;

    fn from_str(s: &str) -> Result<Self> {
        match s.to_ascii_lowercase().as_str() {
            "json" => Ok(Self::Json),
            "npy" => Ok(Self::Npy),
            "crb" | "bin" | "binary" => Ok(Self::Binary),
            other => bail!("unknown format `{other}`: expected json, npy or crb"),
        }
    }
}

/// Reads every item of an input file into one pair of flat lists (the wire layout) as it is read (no
/// per-item tensors), ready to be cut into batches.
pub fn read_input(path: &Path, format: Format) -> Result<wire::Input> {
    let file = File::open(path).with_context(|| format!("opening input {}", path.display()))?;
    // A regular file's length bounds what its header may claim; a pipe's is unknown.
    let len = file
        .metadata()
        .ok()
        .filter(std::fs::Metadata::is_file)
        .map(|m| m.len());
    read_input_from(BufReader::new(file), format, len)
        .with_context(|| format!("reading input {}", path.display()))
}

/// Reads every item from a stream of `len` bytes, when known (for Crunch binary, the header is
/// checked first and the items are read one by one), in the wire layout.
pub fn read_input_from(
    reader: impl BufRead,
    format: Format,
    len: Option<u64>,
) -> Result<wire::Input> {
    match format {
        Format::Json => json::read_wire(reader),
        Format::Npy => npy::read_wire(reader, len),
        Format::Binary => binary::read_wire(reader, len),
    }
    .map(wire::Input::from)
}

/// Reads every item of an input file as owned tensors.
pub fn read_items(path: &Path, format: Format) -> Result<Vec<Item>> {
    read_input(path, format).map(|input| input.to_items())
}

/// Reads every item from a stream of `len` bytes, when known, as owned tensors.
pub fn read_items_from(
    reader: impl BufRead,
    format: Format,
    len: Option<u64>,
) -> Result<Vec<Item>> {
    read_input_from(reader, format, len).map(|input| input.to_items())
}

/// Writes one result per item to an output file from the batches' results as they are (no
/// per-item tensors), replacing the file only once it is whole. For NPY, which has no room for
/// errors, every failed item's index, kind and message go to `OUTPUT.errors.json` beside it:
/// the path is returned when there were failures.
pub fn write_results(
    path: &Path,
    format: Format,
    results: &[wire::Results],
) -> Result<Option<PathBuf>> {
    let count = wire::count(results);
    let each = wire::each(results);
    replace::write_atomically(path, |writer| match format {
        Format::Json => json::write_results(writer, each.clone()),
        Format::Npy => npy::write_results(writer, count, each.clone()),
        Format::Binary => binary::write_results(writer, count, each.clone()),
    })
    .with_context(|| format!("writing output {}", path.display()))?;
    match format {
        Format::Npy => replace::write_errors_beside(path, each),
        Format::Json | Format::Binary => Ok(None),
    }
}

/// Reads results back (JSON or binary), for tests and for chaining runs.
pub fn read_results(path: &Path, format: Format) -> Result<Vec<ItemResult>> {
    let file = File::open(path).with_context(|| format!("opening results {}", path.display()))?;
    let reader = BufReader::new(file);
    match format {
        Format::Json => json::read_results(reader),
        Format::Binary => binary::read_results(reader).map(|results| results.to_vec()),
        Format::Npy => bail!("NPY results carry no per-item errors; read them with an NPY reader"),
    }
    .with_context(|| format!("reading results {}", path.display()))
}

/// Writes items as an input file (used to prepare inputs, e.g. the demo data).
pub fn write_items(path: &Path, format: Format, items: &[Item]) -> Result<()> {
    replace::write_atomically(path, |writer| match format {
        Format::Json => json::write_items(writer, items),
        Format::Npy => npy::write_items(writer, items),
        Format::Binary => binary::write_items(writer, items),
    })
    .with_context(|| format!("writing {}", path.display()))
}

/// Items as Crunch binary bytes (the encoding of batches in Redis).
pub fn encode_items(items: &[Item]) -> Vec<u8> {
    let mut bytes = Vec::new();
    // Writing to a Vec cannot fail; tensors hold at most u32::MAX dimensions by construction.
    let _ = binary::write_items(&mut bytes, items);
    bytes
}

/// Items from Crunch binary bytes.
pub fn decode_items(bytes: &[u8]) -> Result<Vec<Item>> {
    binary::wire_from_bytes(bytes).map(|wire| wire::Input::from(wire).to_items())
}

/// Items from Crunch binary bytes, laid out for a call into a pack (see [`crate::data::wire`]).
pub fn decode_batch(bytes: &[u8]) -> Result<wire::Batch<'static>> {
    binary::wire_from_bytes(bytes).map(wire::Batch::from)
}

/// Results as Crunch binary bytes.
pub fn encode_results(results: &wire::Results) -> Vec<u8> {
    let mut bytes = Vec::with_capacity(24 + 16 * results.len() + 8 * results.values());
    crate::process::memory::prefer_huge_pages(bytes.spare_capacity_mut());
    let _ = binary::write_results(&mut bytes, results.len(), results.iter());
    bytes
}

/// Results from Crunch binary bytes, kept in the wire layout.
pub fn decode_results(bytes: &[u8]) -> Result<wire::Results> {
    binary::results_from_bytes(bytes)
}
