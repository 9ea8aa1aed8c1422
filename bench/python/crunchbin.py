"""Crunch binary (.crb) files in NumPy: items and results, as docs/formats.md describes them.

    file   = "CRNCHBIN" | u32 version = 1 | u32 flags = 0 | u64 item_count | item * item_count
    item   = u8 tag; tag 0: u32 tensor_count | tensor * tensor_count
                     tag 1: u8 kind | u32 byte_len | UTF-8 message      (results only)
    tensor = u32 rank | u32 dim * rank | f64 value * product(dims)      (all little-endian)

An item is a list of float64 arrays. A result is one array, or a `(kind, message)` tuple for a
failed item. Decoding checks every length against the bytes that remain and refuses trailing
bytes, like the Rust reader. Decoded arrays are aligned, writable copies by default (frombuffer
views at the odd offsets the framing gives are unaligned and slow down some NumPy loops).

Depends on NumPy only, so any benchmark or worker script can import it.
"""

import math
import struct

import numpy as np

MAGIC = b"CRNCHBIN"
VERSION = 1
ERROR_KINDS = ("invalid-input", "domain", "unknown-kernel", "batch-failed")

_HEADER = struct.Struct("<IIQ")
_U32 = struct.Struct("<I")
_TAG_TENSORS = 0
_TAG_ERROR = 1


class CrbError(ValueError):
    """A malformed Crunch binary file; the message names the item and tensor."""


class _Reader:
    """A cursor over the bytes, checking each read against what remains."""

    def __init__(self, blob):
        self.blob = memoryview(blob)
        self.pos = 0

    def remaining(self):
        return len(self.blob) - self.pos

    def take(self, n, what):
        if n > self.remaining():
            raise CrbError(f"{what}: needs {n} bytes, {self.remaining()} remain (truncated file)")
        start = self.pos
        self.pos += n
        return self.blob[start:self.pos]

    def u8(self, what):
        return self.take(1, what)[0]

    def u32(self, what):
        return _U32.unpack(self.take(4, what))[0]


def _read_header(r):
    magic = bytes(r.take(8, "header"))
    if magic != MAGIC:
        raise CrbError(f"not Crunch binary (magic {magic!r})")
    version, flags, count = _HEADER.unpack(r.take(_HEADER.size, "header"))
    if version != VERSION:
        raise CrbError(f"unsupported version {version}")
    if flags != 0:
        raise CrbError(f"unknown flags {flags:#x}")
    if count > r.remaining() // 5:  # the smallest item is 5 bytes
        raise CrbError(f"item count {count} cannot fit in {r.remaining()} bytes")
    return count


def _read_tensor(r, where, copy):
    rank = r.u32(f"{where}: rank")
    if rank > r.remaining() // 4:
        raise CrbError(f"{where}: rank {rank} cannot fit in the remaining bytes")
    shape = struct.unpack(f"<{rank}I", r.take(4 * rank, f"{where}: shape"))
    n = math.prod(shape)
    if n > r.remaining() // 8:
        raise CrbError(f"{where}: shape {list(shape)} needs {8 * n} bytes, {r.remaining()} remain")
    data = np.frombuffer(r.take(8 * n, f"{where}: data"), dtype="<f8").reshape(shape)
    return data.astype(np.float64, copy=True) if copy else data


def _read_tensors(r, where, copy):
    count = r.u32(f"{where}: tensor count")
    if count > r.remaining() // 8:  # the smallest tensor (rank 1, length 0) is 8 bytes
        raise CrbError(f"{where}: tensor count {count} cannot fit in the remaining bytes")
    return [_read_tensor(r, f"{where}, tensor {t}", copy) for t in range(count)]


def _finish(r):
    if r.remaining():
        raise CrbError(f"{r.remaining()} trailing bytes after the last item")


def decode_items(blob, copy=True):
    """Crunch binary items: a list of items, each a list of float64 arrays."""
    r = _Reader(blob)
    items = []
    for i in range(_read_header(r)):
        tag = r.u8(f"item {i}: tag")
        if tag != _TAG_TENSORS:
            raise CrbError(f"item {i}: tag {tag} is not an input item (0)")
        items.append(_read_tensors(r, f"item {i}", copy))
    _finish(r)
    return items


def decode_results(blob, copy=True):
    """Crunch binary results: a list of arrays, or (kind, message) tuples for failed items."""
    r = _Reader(blob)
    results = []
    for i in range(_read_header(r)):
        tag = r.u8(f"item {i}: tag")
        if tag == _TAG_TENSORS:
            tensors = _read_tensors(r, f"item {i}", copy)
            if len(tensors) != 1:
                raise CrbError(f"item {i}: a result holds one tensor, got {len(tensors)}")
            results.append(tensors[0])
        elif tag == _TAG_ERROR:
            kind = r.u8(f"item {i}: error kind")
            if kind >= len(ERROR_KINDS):
                raise CrbError(f"item {i}: unknown error kind {kind}")
            length = r.u32(f"item {i}: message length")
            message = bytes(r.take(length, f"item {i}: message")).decode("utf-8", "replace")
            results.append((ERROR_KINDS[kind], message))
        else:
            raise CrbError(f"item {i}: unknown tag {tag}")
    _finish(r)
    return results


def _tensor_bytes(t):
    t = np.asarray(t, dtype="<f8", order="C")  # not ascontiguousarray: it makes scalars 1-D
    return [_U32.pack(t.ndim), struct.pack(f"<{t.ndim}I", *t.shape), t.tobytes()]


def encode_items(items):
    """Items (lists of arrays or array-likes) in Crunch binary."""
    out = [MAGIC, _HEADER.pack(VERSION, 0, len(items))]
    for tensors in items:
        out.append(struct.pack("<BI", _TAG_TENSORS, len(tensors)))
        for t in tensors:
            out.extend(_tensor_bytes(t))
    return b"".join(out)


def encode_results(results):
    """Results (arrays, or (kind, message) tuples for failed items) in Crunch binary."""
    out = [MAGIC, _HEADER.pack(VERSION, 0, len(results))]
    for res in results:
        if isinstance(res, tuple):
            kind, message = res
            data = str(message).encode("utf-8")
            out.append(struct.pack("<BBI", _TAG_ERROR, ERROR_KINDS.index(kind), len(data)))
            out.append(data)
        else:
            out.append(struct.pack("<BI", _TAG_TENSORS, 1))
            out.extend(_tensor_bytes(res))
    return b"".join(out)


def read_items(path, copy=True):
    """decode_items of a file."""
    with open(path, "rb") as f:
        return decode_items(f.read(), copy)


def read_results(path, copy=True):
    """decode_results of a file."""
    with open(path, "rb") as f:
        return decode_results(f.read(), copy)


def write_items(path, items):
    """encode_items to a file."""
    with open(path, "wb") as f:
        f.write(encode_items(items))


def write_results(path, results):
    """encode_results to a file."""
    with open(path, "wb") as f:
        f.write(encode_results(results))
