//! Crunch binary format (`.crb`): raw little-endian f64 with a small framing, for speed.
//!
//! ```text
//! file   = magic "CRNCHBIN" | u32 version (1) | u32 flags (0) | u64 item count | item*
//! item   = u8 tag: 0 => u32 tensor count | tensor*          (inputs, or one output tensor)
//!                  1 => u8 error kind | u32 length | UTF-8 message   (results only)
//! tensor = u32 rank | u32 dim * rank | f64 value * product(dims)
//! ```
//! Every length is checked against the bytes that remain before anything is allocated.

use std::io::{Read, Write};

use anyhow::{Context, Result, bail, ensure};

use crunch_abi::{Packed, TensorRef};

use crate::results::ResultRef;
use crate::types::{Item, ItemError, ItemResult, Tensor};

/// The first eight bytes of every Crunch binary file.
pub const MAGIC: &[u8; 8] = b"CRNCHBIN";
const VERSION: u32 = 1;
const TAG_TENSORS: u8 = 0;
const TAG_ERROR: u8 = 1;
const ERROR_KINDS: [&str; 4] = ["invalid-input", "domain", "unknown-kernel", "batch-failed"];

pub fn read_items(mut reader: impl Read) -> Result<Vec<Item>> {
    let mut bytes = Vec::new();
    reader.read_to_end(&mut bytes)?;
    items_from_bytes(&bytes)
}

/// Items from Crunch binary bytes in memory.
pub fn items_from_bytes(bytes: &[u8]) -> Result<Vec<Item>> {
    let mut cursor = Cursor::new(bytes);
    let count = cursor.header()?;
    (0..count)
        .map(|i| {
            cursor
                .item_tag()
                .and_then(|()| cursor.tensors())
                .with_context(|| format!("item {i}"))
        })
        .collect::<Result<_>>()
        .and_then(|items| cursor.end().map(|()| items))
}

/// Items from Crunch binary bytes straight into the packed form a pack reads (one pass, no
/// per-item allocation): how workers read batches from Redis.
pub fn packed_from_bytes(bytes: &[u8]) -> Result<Packed> {
    let mut cursor = Cursor::new(bytes);
    let count = cursor.header()?;
    let mut packed = Packed::with_capacity(count as usize, bytes.len() / 8);
    for i in 0..count {
        cursor
            .item_tag()
            .and_then(|()| cursor.tensors_into(&mut packed))
            .with_context(|| format!("item {i}"))?;
    }
    cursor.end()?;
    Ok(packed)
}

pub fn read_results(mut reader: impl Read) -> Result<Vec<ItemResult>> {
    let mut bytes = Vec::new();
    reader.read_to_end(&mut bytes)?;
    let mut cursor = Cursor::new(&bytes);
    let count = cursor.header()?;
    (0..count)
        .map(|i| cursor.result().with_context(|| format!("item {i}")))
        .collect()
}

pub fn write_items(writer: &mut impl Write, items: &[Item]) -> Result<()> {
    header(writer, items.len())?;
    for item in items {
        writer.write_all(&[TAG_TENSORS])?;
        tensors(writer, item.iter().map(Tensor::view))?;
    }
    Ok(())
}

pub fn write_results<'a>(
    writer: &mut impl Write,
    results: impl ExactSizeIterator<Item = ResultRef<'a>>,
) -> Result<()> {
    header(writer, results.len())?;
    for result in results {
        match result {
            Ok(t) => {
                writer.write_all(&[TAG_TENSORS])?;
                tensors(writer, std::iter::once(t))?;
            }
            Err(e) => {
                let kind = ERROR_KINDS.iter().position(|k| *k == e.kind()).unwrap_or(3) as u8;
                let message = e.message().as_bytes();
                writer.write_all(&[TAG_ERROR, kind])?;
                writer.write_all(&u32::try_from(message.len())?.to_le_bytes())?;
                writer.write_all(message)?;
            }
        }
    }
    Ok(())
}

fn header(writer: &mut impl Write, count: usize) -> Result<()> {
    writer.write_all(MAGIC)?;
    writer.write_all(&VERSION.to_le_bytes())?;
    writer.write_all(&0u32.to_le_bytes())?;
    writer.write_all(&(count as u64).to_le_bytes())?;
    Ok(())
}

fn tensors<'a>(
    writer: &mut impl Write,
    tensors: impl ExactSizeIterator<Item = TensorRef<'a>>,
) -> Result<()> {
    writer.write_all(&u32::try_from(tensors.len())?.to_le_bytes())?;
    for t in tensors {
        writer.write_all(&u32::try_from(t.shape.len())?.to_le_bytes())?;
        for d in t.shape {
            writer.write_all(&d.to_le_bytes())?;
        }
        for v in t.data {
            writer.write_all(&v.to_le_bytes())?;
        }
    }
    Ok(())
}

fn le_u32(c: &[u8]) -> u32 {
    u32::from_le_bytes([c[0], c[1], c[2], c[3]])
}

fn le_f64(c: &[u8]) -> f64 {
    f64::from_le_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]])
}

/// A bounds-checked reader over the file's bytes.
struct Cursor<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl<'a> Cursor<'a> {
    fn new(bytes: &'a [u8]) -> Self {
        Self { bytes, pos: 0 }
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8]> {
        let remaining = self.bytes.len() - self.pos;
        ensure!(
            n <= remaining,
            "truncated at byte {}: needs {n} more bytes, {remaining} remain",
            self.pos
        );
        let slice = &self.bytes[self.pos..self.pos + n];
        self.pos += n;
        Ok(slice)
    }

    fn u8(&mut self) -> Result<u8> {
        Ok(self.take(1)?[0])
    }

    fn u32(&mut self) -> Result<u32> {
        Ok(u32::from_le_bytes(self.take(4)?.try_into()?))
    }

    fn u64(&mut self) -> Result<u64> {
        Ok(u64::from_le_bytes(self.take(8)?.try_into()?))
    }

    fn header(&mut self) -> Result<u64> {
        let magic = self.take(8).context("reading the header")?;
        ensure!(
            magic == MAGIC,
            "not a Crunch binary file: the first 8 bytes are {magic:?}, expected \"CRNCHBIN\""
        );
        let version = self.u32()?;
        ensure!(
            version == VERSION,
            "unsupported Crunch binary version {version} (this build reads 1)"
        );
        let flags = self.u32()?;
        ensure!(
            flags == 0,
            "unsupported Crunch binary flags {flags:#x} (version 1 has none)"
        );
        let count = self.u64()?;
        // Every item takes at least 5 bytes, which bounds an absurd count before allocating.
        let remaining = (self.bytes.len() - self.pos) as u64;
        ensure!(
            count <= remaining / 5,
            "header claims {count} items but only {remaining} bytes follow"
        );
        Ok(count)
    }

    fn item_tag(&mut self) -> Result<()> {
        match self.u8()? {
            TAG_TENSORS => Ok(()),
            TAG_ERROR => bail!("is an error record, which only results may hold"),
            tag => bail!("has unknown tag {tag}"),
        }
    }

    /// One item's tensors appended to `packed`.
    fn tensors_into(&mut self, packed: &mut Packed) -> Result<()> {
        let count = self.u32()?;
        packed.shapes.push(count);
        for i in 0..count {
            let (dims, raw) = self.tensor_bytes().with_context(|| format!("tensor {i}"))?;
            packed.shapes.push((dims.len() / 4) as u32);
            packed.shapes.extend(dims.chunks_exact(4).map(le_u32));
            packed.data.extend(raw.chunks_exact(8).map(le_f64));
        }
        packed.count += 1;
        Ok(())
    }

    fn tensors(&mut self) -> Result<Vec<Tensor>> {
        let count = self.u32()?;
        (0..count)
            .map(|i| self.tensor().with_context(|| format!("tensor {i}")))
            .collect()
    }

    fn tensor(&mut self) -> Result<Tensor> {
        let (dims, raw) = self.tensor_bytes()?;
        Ok(Tensor {
            shape: dims.chunks_exact(4).map(le_u32).collect(),
            data: raw.chunks_exact(8).map(le_f64).collect(),
        })
    }

    /// A tensor's dimension bytes and value bytes, checked against each other and the input.
    /// Allocates nothing: the packed reader copies the dimensions straight out of `dims`.
    fn tensor_bytes(&mut self) -> Result<(&'a [u8], &'a [u8])> {
        let rank = self.u32()? as usize;
        let dims = self.take(rank.checked_mul(4).context("absurd rank")?)?;
        let shape = || dims.chunks_exact(4).map(le_u32).collect::<Vec<u32>>();
        let n = dims
            .chunks_exact(4)
            .try_fold(1usize, |n, d| n.checked_mul(le_u32(d) as usize))
            .and_then(|n| n.checked_mul(8))
            .context("shape overflows")?;
        let raw = self
            .take(n)
            .with_context(|| format!("shape {:?}", shape()))?;
        Ok((dims, raw))
    }

    fn result(&mut self) -> Result<ItemResult> {
        match self.u8()? {
            TAG_TENSORS => {
                let mut tensors = self.tensors()?;
                ensure!(
                    tensors.len() == 1,
                    "holds {} tensors, a result holds one",
                    tensors.len()
                );
                Ok(Ok(tensors.remove(0)))
            }
            TAG_ERROR => {
                let kind = *ERROR_KINDS
                    .get(self.u8()? as usize)
                    .context("unknown error kind")?;
                let len = self.u32()? as usize;
                let message = String::from_utf8_lossy(self.take(len)?).into_owned();
                Ok(Err(ItemError::from_parts(kind, message)))
            }
            tag => bail!("has unknown tag {tag}"),
        }
    }

    fn end(&self) -> Result<()> {
        ensure!(
            self.pos == self.bytes.len(),
            "{} unexpected bytes after the last item",
            self.bytes.len() - self.pos
        );
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(shape: Vec<u32>, data: Vec<f64>) -> Tensor {
        Tensor { shape, data }
    }

    #[test]
    fn items_round_trip() {
        let items = vec![
            vec![t(vec![2], vec![1.0, f64::NAN]), t(vec![], vec![3.0])],
            vec![],
        ];
        let mut buf = Vec::new();
        write_items(&mut buf, &items).unwrap();
        let back = read_items(&buf[..]).unwrap();
        assert_eq!(back.len(), 2);
        assert_eq!(back[0][1], items[0][1]);
        assert!(back[0][0].data[1].is_nan());
    }

    #[test]
    fn results_round_trip_with_errors() {
        let results = vec![
            Ok(t(vec![1], vec![2.0])),
            Err(ItemError::from_parts("domain", "singular".into())),
        ];
        let mut buf = Vec::new();
        write_results(&mut buf, results.iter().map(crate::results::result_ref)).unwrap();
        assert_eq!(read_results(&buf[..]).unwrap(), results);
    }

    #[test]
    fn packed_reading_matches_item_reading() {
        let items = vec![
            vec![t(vec![2], vec![1.0, 2.0]), t(vec![], vec![3.0])],
            vec![],
            vec![t(vec![1, 2], vec![4.0, 5.0])],
        ];
        let mut buf = Vec::new();
        write_items(&mut buf, &items).unwrap();
        let packed = packed_from_bytes(&buf).unwrap();
        let expected = crate::packing::pack(&items).packed;
        assert_eq!(
            (packed.count, packed.shapes, packed.data),
            (expected.count, expected.shapes, expected.data)
        );
        assert!(packed_from_bytes(&buf[..buf.len() - 1]).is_err());
    }

    #[test]
    fn rejects_bad_files_clearly() {
        let err = read_items(&b"NOTCRUNCH"[..]).unwrap_err();
        assert!(format!("{err:#}").contains("not a Crunch binary"));
        let mut buf = Vec::new();
        write_items(&mut buf, &[vec![t(vec![3], vec![1.0, 2.0, 3.0])]]).unwrap();
        let err = read_items(&buf[..buf.len() - 4]).unwrap_err();
        assert!(format!("{err:#}").contains("truncated"), "{err:#}");
        let mut absurd = Vec::new();
        header(&mut absurd, 1).unwrap();
        absurd.extend_from_slice(&[
            0, 1, 0, 0, 0, 2, 0, 0, 0, 255, 255, 255, 255, 255, 255, 255, 255,
        ]);
        let err = read_items(&absurd[..]).unwrap_err();
        assert!(format!("{err:#}").contains("item 0"), "{err:#}");
    }
}
