//! Crunch binary format (`.crb`): raw little-endian f64 with a small framing, for speed.
//!
//! ```text
//! file   = magic "CRNCHBIN" | u32 version (1) | u32 flags (0) | u64 item count | item*
//! item   = u8 tag: 0 => u32 tensor count | tensor*          (inputs, or one output tensor)
//!                  1 => u8 error kind | u32 length | UTF-8 message   (results only)
//! tensor = u32 rank | u32 dim * rank | f64 value * product(dims)
//! ```
//! Every length is checked against the bytes that remain before anything is allocated.

use std::io::{BufRead, Read, Write};

use anyhow::{Context, Result, bail, ensure};

use crunch_abi::{TensorRef, WireData};

use crate::data::types::{ErrorKind, Item, ItemError, Tensor};
use crate::data::wire::{self, ResultRef};

/// The first eight bytes of every Crunch binary file.
pub const MAGIC: &[u8; 8] = b"CRNCHBIN";
const VERSION: u32 = 1;
const TAG_TENSORS: u8 = 0;
const TAG_ERROR: u8 = 1;

/// Items from a stream (an input file), laid out in the wire layout as they are read: the header is checked before
/// anything else is read, and every later length is checked against the bytes that actually
/// arrive, so no length read from the file decides an allocation. `len`, when known (a regular
/// file), bounds the item count the header may claim.
pub fn read_wire(reader: impl BufRead, len: Option<u64>) -> Result<WireData> {
    wire(&mut Stream::new(reader, len))
}

/// Items from Crunch binary bytes in memory, laid out in one pass with no per-item allocation:
/// how workers read batches from Redis.
pub fn wire_from_bytes(bytes: &[u8]) -> Result<WireData> {
    wire(&mut Cursor::new(bytes))
}

fn wire(source: &mut impl Source) -> Result<WireData> {
    let count = header(source)?;
    let (items, values) = room(source, count);
    let mut wire = WireData::with_capacity(items, values);
    crate::process::memory::prefer_huge_pages(wire.data.spare_capacity_mut());
    for i in 0..count {
        item_tag(source)
            .and_then(|()| tensors_into(source, &mut wire))
            .with_context(|| format!("item {i}"))?;
    }
    source.end()?;
    Ok(wire)
}

/// Room to reserve for `count` items and their values: what the rest of the input can hold
/// when its length is known (the header's count is checked against it), else nothing, so that
/// a count read from a stream never decides an allocation.
fn room(source: &impl Source, count: u64) -> (usize, usize) {
    source
        .remaining()
        .map_or((0, 0), |r| (count.min(r / 5) as usize, (r / 8) as usize))
}

/// Results from a stream, kept in the wire layout.
pub fn read_results(reader: impl BufRead) -> Result<wire::Results> {
    results(&mut Stream::new(reader, None))
}

/// Results from Crunch binary bytes in memory, kept in the wire layout.
pub fn results_from_bytes(bytes: &[u8]) -> Result<wire::Results> {
    results(&mut Cursor::new(bytes))
}

fn results(source: &mut impl Source) -> Result<wire::Results> {
    let count = header(source)?;
    let mut results = wire::Results::with_capacity(room(source, count).0);
    for i in 0..count {
        result(source, &mut results).with_context(|| format!("item {i}"))?;
    }
    source.end()?;
    Ok(results)
}

pub fn write_items(writer: &mut impl Write, items: &[Item]) -> Result<()> {
    write_header(writer, items.len())?;
    for item in items {
        writer.write_all(&[TAG_TENSORS])?;
        write_tensors(writer, item.iter().map(Tensor::view))?;
    }
    Ok(())
}

/// Writes `count` results (`results` yields that many).
pub fn write_results<'a>(
    writer: &mut impl Write,
    count: usize,
    results: impl Iterator<Item = ResultRef<'a>>,
) -> Result<()> {
    write_header(writer, count)?;
    for result in results {
        match result {
            Ok(t) => {
                writer.write_all(&[TAG_TENSORS])?;
                write_tensors(writer, std::iter::once(t))?;
            }
            Err(e) => {
                let message = e.message().as_bytes();
                writer.write_all(&[TAG_ERROR, e.kind().code()])?;
                writer.write_all(&u32::try_from(message.len())?.to_le_bytes())?;
                writer.write_all(message)?;
            }
        }
    }
    Ok(())
}

fn write_header(writer: &mut impl Write, count: usize) -> Result<()> {
    writer.write_all(MAGIC)?;
    writer.write_all(&VERSION.to_le_bytes())?;
    writer.write_all(&0u32.to_le_bytes())?;
    writer.write_all(&(count as u64).to_le_bytes())?;
    Ok(())
}

/// Writes a tensor count and the tensors, each gathered into one run of bytes first (a few
/// large writes instead of one per value).
fn write_tensors<'a>(
    writer: &mut impl Write,
    tensors: impl ExactSizeIterator<Item = TensorRef<'a>>,
) -> Result<()> {
    writer.write_all(&u32::try_from(tensors.len())?.to_le_bytes())?;
    let mut bytes = Vec::new();
    for t in tensors {
        bytes.clear();
        bytes.reserve(4 * (1 + t.shape.len()) + 8 * t.data.len());
        bytes.extend(u32::try_from(t.shape.len())?.to_le_bytes());
        bytes.extend(t.shape.iter().flat_map(|d| d.to_le_bytes()));
        bytes.extend(t.data.iter().flat_map(|v| v.to_le_bytes()));
        writer.write_all(&bytes)?;
    }
    Ok(())
}

fn le_u32(c: &[u8]) -> u32 {
    u32::from_le_bytes([c[0], c[1], c[2], c[3]])
}

fn le_f64(c: &[u8]) -> f64 {
    f64::from_le_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]])
}

/// Where encoded bytes come from: a slice in memory or a stream.
trait Source {
    /// The next `n` bytes; an error naming the position when fewer remain.
    fn take(&mut self, n: usize) -> Result<&[u8]>;
    /// Bytes left, when known.
    fn remaining(&self) -> Option<u64>;
    /// An error unless every byte has been read.
    fn end(&mut self) -> Result<()>;

    fn u8(&mut self) -> Result<u8> {
        Ok(self.take(1)?[0])
    }

    fn u32(&mut self) -> Result<u32> {
        Ok(le_u32(self.take(4)?))
    }
}

fn truncated(pos: u64, n: usize, remain: u64) -> anyhow::Error {
    anyhow::anyhow!("truncated at byte {pos}: needs {n} more bytes, {remain} remain")
}

fn trailing(extra: u64) -> Result<()> {
    ensure!(extra == 0, "{extra} unexpected bytes after the last item");
    Ok(())
}

/// A bounds-checked reader over bytes in memory.
struct Cursor<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl<'a> Cursor<'a> {
    fn new(bytes: &'a [u8]) -> Self {
        Self { bytes, pos: 0 }
    }
}

impl Source for Cursor<'_> {
    fn take(&mut self, n: usize) -> Result<&[u8]> {
        let remaining = self.bytes.len() - self.pos;
        if n > remaining {
            return Err(truncated(self.pos as u64, n, remaining as u64));
        }
        let slice = &self.bytes[self.pos..self.pos + n];
        self.pos += n;
        Ok(slice)
    }

    fn remaining(&self) -> Option<u64> {
        Some((self.bytes.len() - self.pos) as u64)
    }

    fn end(&mut self) -> Result<()> {
        trailing((self.bytes.len() - self.pos) as u64)
    }
}

/// Pieces up to this size are read into a buffer of their size at once; larger ones grow their
/// buffer as bytes arrive.
const STREAM_PIECE: usize = 1 << 16;

/// A reader over a buffered stream: a piece that lies whole in the reader's buffer (most of
/// them) is read in place; any other is copied into a buffer of its own, which grows only as
/// bytes arrive (a length claimed by the data never allocates by itself).
struct Stream<R> {
    reader: R,
    pos: u64,
    len: Option<u64>,
    buf: Vec<u8>,
    /// Bytes of the reader's buffer handed out by the last `take`, consumed at the next.
    lent: usize,
}

impl<R: BufRead> Stream<R> {
    fn new(reader: R, len: Option<u64>) -> Self {
        Self {
            reader,
            pos: 0,
            len,
            buf: Vec::new(),
            lent: 0,
        }
    }

    /// How many bytes the reader's buffer holds (filling it if it is empty).
    fn buffered(&mut self) -> Result<usize> {
        self.reader.consume(std::mem::take(&mut self.lent));
        loop {
            match self.reader.fill_buf() {
                Ok(bytes) => return Ok(bytes.len()),
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e).with_context(|| format!("reading at byte {}", self.pos)),
            }
        }
    }
}

impl<R: BufRead> Source for Stream<R> {
    fn take(&mut self, n: usize) -> Result<&[u8]> {
        if self.buffered()? >= n {
            self.lent = n;
            self.pos += n as u64;
            // The buffer is not empty, so this returns it again without reading.
            return Ok(&self.reader.fill_buf()?[..n]);
        }
        self.buf.clear();
        let got = if n <= STREAM_PIECE {
            // Small pieces (most of them) straight into a reused buffer.
            self.buf.resize(n, 0);
            let mut got = 0;
            while got < n {
                match self.reader.read(&mut self.buf[got..]) {
                    Ok(0) => break,
                    Ok(k) => got += k,
                    Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                    Err(e) => {
                        return Err(e).with_context(|| format!("reading at byte {}", self.pos));
                    }
                }
            }
            got
        } else {
            (&mut self.reader)
                .take(n as u64)
                .read_to_end(&mut self.buf)
                .with_context(|| format!("reading at byte {}", self.pos))?
        };
        if got < n {
            return Err(truncated(self.pos, n, got as u64));
        }
        self.pos += n as u64;
        Ok(&self.buf)
    }

    fn remaining(&self) -> Option<u64> {
        self.len.map(|len| len.saturating_sub(self.pos))
    }

    fn end(&mut self) -> Result<()> {
        let more = self.buffered().context("reading after the last item")?;
        match (more, self.remaining()) {
            (0, _) => Ok(()),
            (_, Some(extra)) => trailing(extra),
            _ => bail!("unexpected bytes after the last item"),
        }
    }
}

/// Checks the 24-byte header and returns the item count.
fn header(source: &mut impl Source) -> Result<u64> {
    let magic = source.take(8).context("reading the header")?;
    ensure!(
        magic == MAGIC,
        "not a Crunch binary file: the first 8 bytes are {magic:?}, expected \"CRNCHBIN\""
    );
    let version = source.u32()?;
    ensure!(
        version == VERSION,
        "unsupported Crunch binary version {version} (this build reads 1)"
    );
    let flags = source.u32()?;
    ensure!(
        flags == 0,
        "unsupported Crunch binary flags {flags:#x} (version 1 has none)"
    );
    let count = u64::from_le_bytes(source.take(8)?.try_into()?);
    // Every item takes at least 5 bytes, which bounds an absurd count before allocating.
    if let Some(remaining) = source.remaining() {
        ensure!(
            count <= remaining / 5,
            "header claims {count} items but only {remaining} bytes follow"
        );
    }
    Ok(count)
}

fn item_tag(source: &mut impl Source) -> Result<()> {
    match source.u8()? {
        TAG_TENSORS => Ok(()),
        TAG_ERROR => bail!("is an error record, which only results may hold"),
        tag => bail!("has unknown tag {tag}"),
    }
}

/// One item's tensors appended to `wire`.
fn tensors_into(source: &mut impl Source, wire: &mut WireData) -> Result<()> {
    let count = source.u32()?;
    wire.shapes.push(count);
    for i in 0..count {
        tensor_into(source, &mut wire.shapes, &mut wire.data)
            .with_context(|| format!("tensor {i}"))?;
    }
    wire.count += 1;
    Ok(())
}

/// One tensor: its rank and dimensions appended to `shapes`, its values to `data`, each length
/// checked against the bytes that remain before it is read.
fn tensor_into(source: &mut impl Source, shapes: &mut Vec<u32>, data: &mut Vec<f64>) -> Result<()> {
    let rank = source.u32()?;
    let dims = source.take((rank as usize).checked_mul(4).context("absurd rank")?)?;
    let start = shapes.len();
    shapes.push(rank);
    shapes.extend(dims.chunks_exact(4).map(le_u32));
    let dims = &shapes[start + 1..];
    let n = dims
        .iter()
        .try_fold(1usize, |n, &d| n.checked_mul(d as usize))
        .and_then(|n| n.checked_mul(8))
        .context("shape overflows")?;
    let raw = source.take(n).with_context(|| format!("shape {dims:?}"))?;
    data.extend(raw.chunks_exact(8).map(le_f64));
    Ok(())
}

/// One result appended to `results`.
fn result(source: &mut impl Source, results: &mut wire::Results) -> Result<()> {
    match source.u8()? {
        TAG_TENSORS => {
            let count = source.u32()?;
            ensure!(count == 1, "holds {count} tensors, a result holds one");
            results.push_output_with(|shapes, data| {
                tensor_into(source, shapes, data).context("tensor 0")
            })
        }
        TAG_ERROR => {
            let kind = ErrorKind::from_code(source.u8()?).context("unknown error kind")?;
            let len = source.u32()? as usize;
            let message = String::from_utf8_lossy(source.take(len)?).into_owned();
            results.push_error(ItemError::from_parts(kind, message));
            Ok(())
        }
        tag => bail!("has unknown tag {tag}"),
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
        let back = wire::Input::from(read_wire(&buf[..], None).unwrap()).to_items();
        assert_eq!(back.len(), 2);
        assert_eq!(back[0][1], items[0][1]);
        assert!(back[0][0].data[1].is_nan());
    }

    #[test]
    fn results_round_trip_with_errors() {
        let results = vec![
            Ok(t(vec![1], vec![2.0])),
            Err(ItemError::from_parts(ErrorKind::Domain, "singular".into())),
        ];
        let mut buf = Vec::new();
        write_results(
            &mut buf,
            results.len(),
            results.iter().map(wire::result_ref),
        )
        .unwrap();
        assert_eq!(read_results(&buf[..]).unwrap().to_vec(), results);
        assert_eq!(results_from_bytes(&buf).unwrap().to_vec(), results);
        let mut two = buf.clone();
        two[16] = 3;
        assert!(results_from_bytes(&two).is_err());
    }

    #[test]
    fn wire_reading_matches_item_reading() {
        let items = vec![
            vec![t(vec![2], vec![1.0, 2.0]), t(vec![], vec![3.0])],
            vec![],
            vec![t(vec![1, 2], vec![4.0, 5.0])],
        ];
        let mut buf = Vec::new();
        write_items(&mut buf, &items).unwrap();
        let wire = wire_from_bytes(&buf).unwrap();
        assert_eq!(read_wire(&buf[..], Some(buf.len() as u64)).unwrap(), wire);
        let expected = wire::Batch::from_items(&items).lists;
        assert_eq!(
            (wire.count, wire.shapes, wire.data),
            (
                expected.count,
                expected.shapes.into_owned(),
                expected.data.into_owned()
            )
        );
        assert!(wire_from_bytes(&buf[..buf.len() - 1]).is_err());
    }

    #[test]
    fn rejects_bad_files_clearly() {
        let err = read_wire(&b"NOTCRUNCH"[..], None).unwrap_err();
        assert!(format!("{err:#}").contains("not a Crunch binary"));
        let mut buf = Vec::new();
        write_items(&mut buf, &[vec![t(vec![3], vec![1.0, 2.0, 3.0])]]).unwrap();
        let err = read_wire(&buf[..buf.len() - 4], None).unwrap_err();
        assert!(format!("{err:#}").contains("truncated"), "{err:#}");
        let mut absurd = Vec::new();
        write_header(&mut absurd, 1).unwrap();
        absurd.extend_from_slice(&[
            0, 1, 0, 0, 0, 2, 0, 0, 0, 255, 255, 255, 255, 255, 255, 255, 255,
        ]);
        let err = read_wire(&absurd[..], None).unwrap_err();
        assert!(format!("{err:#}").contains("item 0"), "{err:#}");
    }

    #[test]
    fn a_stream_is_refused_at_its_header_without_reading_on() {
        // An endless stream of zeros: refused after its first 24 bytes.
        let err = read_wire(std::io::BufReader::new(std::io::repeat(0)), None).unwrap_err();
        assert!(
            format!("{err:#}").contains("not a Crunch binary"),
            "{err:#}"
        );
        // A valid header claiming a huge tensor, then nothing: truncated, nothing allocated.
        let mut huge = Vec::new();
        write_header(&mut huge, 1).unwrap();
        huge.extend_from_slice(&[0, 1, 0, 0, 0, 1, 0, 0, 0, 255, 255, 255, 255]);
        let err = read_wire(&huge[..], None).unwrap_err();
        assert!(format!("{err:#}").contains("truncated"), "{err:#}");
        let mut buf = Vec::new();
        write_items(&mut buf, &[vec![t(vec![1], vec![1.0])]]).unwrap();
        buf.extend_from_slice(b"xy");
        let err = read_wire(&buf[..], Some(buf.len() as u64)).unwrap_err();
        assert!(format!("{err:#}").contains("2 unexpected bytes"), "{err:#}");
        assert!(read_wire(&buf[..], None).is_err());
    }
}
