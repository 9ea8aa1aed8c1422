"""A Crunch worker in Python (redis-py, NumPy, SciPy): the benchmark baseline for "the same job
through a Python worker".

    python worker.py --redis redis://127.0.0.1:6379 --job JOB [--consumer NAME] [--exit-when-done]

It follows docs/protocol.md the way `crunch worker --job JOB` does (host/src/queue/worker/): it
claims batches through the `workers` consumer group with the CLAIM script, computes them with
NumPy and SciPy (vectorised per batch) instead of the wasm pack, and stores, counts and
acknowledges each batch with the COMPLETE script, retries batch-level failures with RETRY and
dead-letters them on their last delivery. The three Lua scripts are read at start from the Rust
source (host/src/queue/store/scripts.rs, `--scripts` to point elsewhere), so there is one copy of
them and their SHA1s are the ones the Rust worker uses. Crunch binary comes from crunchbin.py (beside this
file), plus a vectorised fast path here for batches whose items all have the same shapes.

Kernels: black_scholes, implied_vol, norm_cdf, norm_ppf, describe, matmul, with the guest's
(guest/src/*.rs) checks, error kinds and messages. Any other kernel fails every item of its
batches with `unknown-kernel`. Results agree with the wasm pack to rounding (SciPy's ndtr and
NumPy's exp/log/BLAS are not bit-identical to the pack's libm and fixed-order loops). A batch
that raises, or runs past the spec's batch_time_ms (interrupted with SIGALRM), is a batch-level
failure: retried, then dead-lettered, as a trap or timeout in the Rust worker.

At the end it prints one JSON line:
{"job": ..., "batches": n, "items": n, "seconds": s, "items_per_s": x, ...}
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import math
import os
import re
import secrets
import signal
import socket
import struct
import sys
import threading
import time
import traceback
from decimal import Decimal
from pathlib import Path

import numpy as np
import redis
from redis.backoff import ExponentialBackoff
from redis.retry import Retry
from scipy import special

sys.path.insert(0, str(Path(__file__).resolve().parent))
from crunchbin import MAGIC, CrbError, decode_items, encode_results  # noqa: E402  (beside this file)

log = logging.getLogger("crunch-py-worker")

# ---------------------------------------------------------------------------------------------
# Crunch binary (docs/formats.md#crunch-binary-crb). The general codec is crunchbin.py (beside
# this file); this section adds only the vectorised fast paths a worker wants per batch: decoding
# a batch whose items all have the same tensor shapes into stacked arrays, and encoding stacked
# results, without a Python loop over items.
# ---------------------------------------------------------------------------------------------

_FILE_HEADER = struct.Struct("<8sIIQ")


def decode_items_uniform(blob: bytes):
    """When every item has the same tensor count and shapes (a batch of fixed records), the
    item count and one stacked (n, *shape) array per tensor position; else None (then use
    decode_items, which also reports what is malformed). A blob accepted here is well formed:
    the header is valid, every item's framing equals the first's and no byte is left over."""
    if len(blob) < 29:
        return None
    magic, version, flags, count = _FILE_HEADER.unpack_from(blob, 0)
    if magic != MAGIC or version != 1 or flags != 0 or count == 0 or blob[24] != 0:
        return None
    # The first item's layout: framing byte ranges, and (offset, end, shape) of each tensor.
    pos = 25
    try:
        (ntensors,) = struct.unpack_from("<I", blob, pos)
        pos += 4
        framing, values, frame_start = [], [], 0
        for _ in range(ntensors):
            (rank,) = struct.unpack_from("<I", blob, pos)
            shape = struct.unpack_from(f"<{rank}I", blob, pos + 4)
            pos += 4 + 4 * rank
            size = 8 * math.prod(shape)
            framing.append((frame_start, pos - 24))
            values.append((pos - 24, pos - 24 + size, shape))
            pos += size
            frame_start = pos - 24
    except struct.error:
        return None
    rec = pos - 24
    if not framing:
        framing.append((0, rec))
    if rec <= 0 or len(blob) - 24 != count * rec:
        return None
    rows = np.frombuffer(blob, dtype=np.uint8, count=count * rec, offset=24).reshape(count, rec)
    for a, b in framing:
        if not (rows[:, a:b] == rows[0, a:b]).all():
            return None
    stacked = []
    for a, b, shape in values:
        col = np.ascontiguousarray(rows[:, a:b])  # aligned copy
        stacked.append(col.view("<f8").reshape((count,) + tuple(shape)))
    return count, stacked


def encode_stacked_results(values: np.ndarray, errors: dict) -> bytes:
    """Results of shape values.shape[1:] for every item, except the items in `errors`
    ({index: (kind, message)}), which are written as errors instead of their row."""
    n, shape = values.shape[0], values.shape[1:]
    head = struct.pack(f"<BII{len(shape)}I", 0, 1, len(shape), *shape)
    data = np.ascontiguousarray(values, dtype="<f8").reshape(n, -1).view(np.uint8)
    rows = np.empty((n, len(head) + data.shape[1]), dtype=np.uint8)
    rows[:, :len(head)] = np.frombuffer(head, dtype=np.uint8)
    rows[:, len(head):] = data
    header = MAGIC + struct.pack("<IIQ", 1, 0, n)
    if not errors:
        return header + rows.tobytes()
    raw, width = memoryview(rows.tobytes()), rows.shape[1]
    parts, start = [header], 0
    for i in sorted(errors):
        parts.append(raw[start * width:i * width])
        kind, message = errors[i]
        parts.append(encode_results([(kind, message)])[24:])  # the error record alone
        start = i + 1
    parts.append(raw[start * width:])
    return b"".join(parts)


# ---------------------------------------------------------------------------------------------
# Messages formatted as the Rust code formats them.
# ---------------------------------------------------------------------------------------------


def rs_f64(x: float) -> str:
    """An f64 as Rust's `{}` writes it: shortest round-trip digits, never an exponent."""
    x = float(x)
    if math.isnan(x):
        return "NaN"
    if math.isinf(x):
        return "inf" if x > 0 else "-inf"
    s = format(Decimal(repr(x)), "f")
    if "." in s:
        s = s.rstrip("0").rstrip(".")
    return s


def rs_shape(shape) -> str:
    """A shape as Rust's `{:?}` of a Vec<u32> writes it."""
    return "[" + ", ".join(str(int(d)) for d in shape) + "]"


def rs_duration_ms(ms: int) -> str:
    """A whole number of milliseconds as Rust's `{:?}` of a Duration writes it."""
    if ms >= 1000:
        return rs_f64(ms / 1000) + "s"
    return f"{ms}ms"


def first_line(text: str) -> str:
    """Rust's `text.lines().next().unwrap_or_default()`."""
    return text.split("\n", 1)[0].removesuffix("\r") if text else ""


# ---------------------------------------------------------------------------------------------
# Kernels: guest/src/{options,normal,stats,linalg}.rs in NumPy/SciPy, vectorised per batch.
#
# A kernel takes the batch's inputs and returns (values, errors): values is one stacked
# (n, *shape) array (rows of failed items are ignored) or a list with one array per item (None
# for failed items); errors maps item index -> (kind, message).
# ---------------------------------------------------------------------------------------------

INVALID, DOMAIN, UNKNOWN = "invalid-input", "domain", "unknown-kernel"
FRAC_1_SQRT_2PI = 0.3989422804014327
EPS = float(np.finfo(np.float64).eps)
SIGMA_RANGE = (1e-6, 5.0)


class Inputs:
    """A decoded batch: `stacked` (one (n, *shape) array per tensor position) when every item
    has the same tensor shapes, and the items one by one."""

    def __init__(self, n: int, stacked=None, items=None):
        self.n = n
        self.stacked = stacked
        self._items = items

    @classmethod
    def from_blob(cls, blob: bytes) -> "Inputs":
        uniform = decode_items_uniform(blob)
        if uniform is not None:
            n, stacked = uniform
            return cls(n, stacked=stacked)
        items = decode_items(blob)
        return cls(len(items), items=items)

    @property
    def items(self) -> list:
        if self._items is None:
            self._items = [[a[i] for a in self.stacked] for i in range(self.n)]
        return self._items


def _inputs_error(names, got) -> str:
    return f"expected {len(names)} input tensor(s) ({', '.join(names)}), got {got}"


def _records(inp: Inputs, fields: str, length: int):
    """check::record for every item: the (n, length) values and the items that are not a
    single 1-D tensor of `length` values."""
    if inp.stacked is not None and len(inp.stacked) == 1 and inp.stacked[0].shape[1:] == (length,):
        return inp.stacked[0], {}
    x = np.ones((inp.n, length))
    errors = {}
    for i, item in enumerate(inp.items):
        if len(item) != 1:
            errors[i] = (INVALID, f"expected one input tensor [{fields}], got {len(item)}")
        elif item[0].shape != (length,):
            errors[i] = (INVALID, f"expected a 1-D tensor of {length} values [{fields}], got shape {rs_shape(item[0].shape)}")
        else:
            x[i] = item[0]
    return x, errors


def _contracts(s, k, t, r, is_call, alive, errors):
    """Contract::parse for the rows in `alive` (a bool mask, narrowed in place); errors named
    the way the guest names them."""
    checks = [
        (~((is_call == 1.0) | (is_call == 0.0)), INVALID, lambda i: f"is_call must be 1 or 0, got {rs_f64(is_call[i])}"),
        (~((s > 0.0) & np.isfinite(s)), DOMAIN, lambda i: f"S must be positive and finite, got {rs_f64(s[i])}"),
        (~((k > 0.0) & np.isfinite(k)), DOMAIN, lambda i: f"K must be positive and finite, got {rs_f64(k[i])}"),
        (~((t > 0.0) & np.isfinite(t)), DOMAIN, lambda i: f"T must be positive and finite, got {rs_f64(t[i])}"),
        (~np.isfinite(r), DOMAIN, lambda i: f"r must be finite, got {rs_f64(r[i])}"),
    ]
    for bad, kind, message in checks:
        for i in np.flatnonzero(bad & alive):
            errors[int(i)] = (kind, message(i))
            alive[i] = False


def _terms(s, k, t, r, sigma):
    """Contract::terms: d1, d2, the discounted strike and sqrt(T)."""
    sqrt_t = np.sqrt(t)
    vol = sigma * sqrt_t
    d1 = (np.log(s / k) + (r + 0.5 * sigma * sigma) * t) / vol
    return d1, d1 - vol, k * np.exp(-r * t), sqrt_t


def _greeks(s, k, t, r, sigma, call):
    """Contract::greeks, in the same order of operations."""
    d1, d2, dk, sqrt_t = _terms(s, k, t, r, sigma)
    density = FRAC_1_SQRT_2PI * np.exp(-0.5 * d1 * d1)
    out = np.empty((s.shape[0], 6))
    out[:, 2] = density / (s * sigma * sqrt_t)
    out[:, 3] = s * density * sqrt_t
    decay = -s * density * sigma / (2.0 * sqrt_t)
    c, p = call, ~call
    n1, n2 = special.ndtr(d1[c]), special.ndtr(d2[c])
    out[c, 0] = s[c] * n1 - dk[c] * n2
    out[c, 1] = n1
    out[c, 4] = decay[c] - r[c] * dk[c] * n2
    out[c, 5] = t[c] * dk[c] * n2
    m1, m2 = special.ndtr(-d1[p]), special.ndtr(-d2[p])
    out[p, 0] = dk[p] * m2 - s[p] * m1
    out[p, 1] = -m1
    out[p, 4] = decay[p] + r[p] * dk[p] * m2
    out[p, 5] = -t[p] * dk[p] * m2
    return out


def _price_vega(s, k, t, r, call, sigma):
    """Contract::price_vega."""
    d1, d2, dk, sqrt_t = _terms(s, k, t, r, sigma)
    price = np.where(call, s * special.ndtr(d1) - dk * special.ndtr(d2),
                     dk * special.ndtr(-d2) - s * special.ndtr(-d1))
    vega = s * (FRAC_1_SQRT_2PI * np.exp(-0.5 * d1 * d1)) * sqrt_t
    return price, vega


def _option_records(inp: Inputs, fields: str, outputs: int):
    """The option records, NaN outputs to fill, which items to compute and the errors so far: an
    item is computed unless its record is malformed or holds a NaN (NaN out, as NumPy would)."""
    x, errors = _records(inp, fields, 6)
    out = np.full((inp.n, outputs), np.nan)
    alive = np.ones(inp.n, dtype=bool)
    alive[list(errors)] = False
    alive &= ~np.isnan(x).any(axis=1)
    return x, out, alive, errors


def k_black_scholes(inp: Inputs, params):
    x, out, alive, errors = _option_records(inp, "S, K, T, r, sigma, is_call", 6)
    s, k, t, r, sigma, is_call = x.T
    _contracts(s, k, t, r, is_call, alive, errors)
    for i in np.flatnonzero(alive & ~((sigma > 0.0) & np.isfinite(sigma))):
        errors[int(i)] = (DOMAIN, f"sigma must be positive and finite, got {rs_f64(sigma[i])}")
        alive[i] = False
    if alive.all():
        out = _greeks(s, k, t, r, sigma, is_call == 1.0)
    elif alive.any():
        out[alive] = _greeks(s[alive], k[alive], t[alive], r[alive], sigma[alive], is_call[alive] == 1.0)
    return out, errors


def k_implied_vol(inp: Inputs, params):
    x, out, alive, errors = _option_records(inp, "price, S, K, T, r, is_call", 1)
    target, s, k, t, r, is_call = x.T
    _contracts(s, k, t, r, is_call, alive, errors)
    idx = np.flatnonzero(alive)
    if idx.size:
        sig, bad = _solve_sigma(target[idx], s[idx], k[idx], t[idx], r[idx], is_call[idx] == 1.0)
        out[idx, 0] = sig
        for j, message in bad.items():
            errors[int(idx[j])] = (DOMAIN, message)
    return out, errors


def _solve_sigma(target, s, k, t, r, call):
    """solve_sigma for many contracts at once: the same safeguarded Newton, step by step."""
    m = target.shape[0]
    lo0, hi0 = SIGMA_RANGE
    result = np.full(m, np.nan)
    bad = {}
    p_lo, _ = _price_vega(s, k, t, r, call, np.full(m, lo0))
    p_hi, _ = _price_vega(s, k, t, r, call, np.full(m, hi0))
    noise = 8.0 * EPS * (s + k)
    outside = (target < p_lo - noise) | (target > p_hi + noise)
    for j in np.flatnonzero(outside):
        bad[int(j)] = (f"price {rs_f64(target[j])} is outside the prices reachable with sigma in "
                       f"[{rs_f64(lo0)}, {rs_f64(hi0)}] ({rs_f64(p_lo[j])} to {rs_f64(p_hi[j])})")
    at_lo = ~outside & (target <= p_lo + noise)
    at_hi = ~outside & ~at_lo & (target >= p_hi - noise)
    result[at_lo] = lo0
    result[at_hi] = hi0
    act = np.flatnonzero(~outside & ~at_lo & ~at_hi)
    if act.size == 0:
        return result, bad
    tg, s, k, t, r, call = target[act], s[act], k[act], t[act], r[act], call[act]
    lo, hi = np.full(act.size, lo0), np.full(act.size, hi0)
    guess = np.sqrt(2.0 * math.pi / t) * tg / s  # Brenner-Subrahmanyam
    sigma = np.where((guess > lo) & (guess < hi), guess, 0.5 * (lo + hi))
    live = np.arange(act.size)  # positions (into act) still iterating
    for _ in range(200):
        price, vega = _price_vega(s, k, t, r, call, sigma)
        diff = price - tg
        exact = diff == 0.0
        below = diff < 0.0
        lo = np.where(below, sigma, lo)
        hi = np.where(below, hi, sigma)
        newton = sigma - diff / vega
        nxt = np.where((newton > lo) & (newton < hi), newton, 0.5 * (lo + hi))
        conv = ~exact & ((np.abs(nxt - sigma) <= 2.0 * EPS * sigma) | (hi - lo <= 2.0 * EPS * hi))
        result[act[live[exact]]] = sigma[exact]
        result[act[live[conv]]] = nxt[conv]
        keep = ~(exact | conv)
        if not keep.any():
            return result, bad
        live, s, k, t, r, call, tg = live[keep], s[keep], k[keep], t[keep], r[keep], call[keep], tg[keep]
        lo, hi, sigma = lo[keep], hi[keep], nxt[keep]
    result[act[live]] = sigma
    return result, bad


def _elementwise(inp: Inputs, name: str, f):
    if inp.stacked is not None:
        if len(inp.stacked) == 1:
            return f(inp.stacked[0]), {}
        return None, {i: (INVALID, _inputs_error([name], len(inp.stacked))) for i in range(inp.n)}
    values, errors = [], {}
    for i, item in enumerate(inp.items):
        if len(item) != 1:
            errors[i] = (INVALID, _inputs_error([name], len(item)))
            values.append(None)
        else:
            values.append(item[0])
    ok = [v for v in values if v is not None]
    if ok:
        flat = f(np.concatenate([v.ravel() for v in ok]))
        pos = 0
        for i, v in enumerate(values):
            if v is not None:
                values[i] = flat[pos:pos + v.size].reshape(v.shape)
                pos += v.size
    return values, errors


def k_norm_cdf(inp: Inputs, params):
    return _elementwise(inp, "x", special.ndtr)


def k_norm_ppf(inp: Inputs, params):
    return _elementwise(inp, "p", special.ndtri)


def _describe_rows(x: np.ndarray) -> np.ndarray:
    """stats::describe for each row of x (g, n), n >= 1."""
    n = float(x.shape[1])
    out = np.empty((x.shape[0], 7))
    out[:, 0] = n
    out[:, 1] = x.min(axis=1)
    out[:, 2] = x.max(axis=1)
    mean = x.sum(axis=1) / n
    d = x - mean[:, None]
    d2 = d * d
    m2 = d2.sum(axis=1) / n
    m3 = (d2 * d).sum(axis=1) / n
    m4 = (d2 * d2).sum(axis=1) / n
    out[:, 3] = mean
    out[:, 4] = m2 * n / (n - 1.0)
    out[:, 5] = m3 / np.power(m2, 1.5)
    out[:, 6] = m4 / (m2 * m2) - 3.0
    return out


def k_describe(inp: Inputs, params):
    out = np.full((inp.n, 7), np.nan)
    errors = {}
    if inp.stacked is not None and len(inp.stacked) == 1 and inp.stacked[0].ndim == 2 and inp.stacked[0].shape[1] > 0:
        return _describe_rows(inp.stacked[0]), errors
    groups = {}
    for i, item in enumerate(inp.items):
        if len(item) != 1:
            errors[i] = (INVALID, _inputs_error(["x"], len(item)))
        elif item[0].ndim != 1:
            errors[i] = (INVALID, f"`x` must be a 1-D tensor, got shape {rs_shape(item[0].shape)}")
        elif item[0].size == 0:
            errors[i] = (INVALID, "`x` must not be empty")
        else:
            groups.setdefault(item[0].size, []).append(i)
    for idx in groups.values():
        out[idx] = _describe_rows(np.stack([inp.items[i][0] for i in idx]))
    return out, errors


def k_matmul(inp: Inputs, params):
    errors = {}

    def check(a, b):
        if a.ndim != 2:
            return f"`A` must be a 2-D tensor, got shape {rs_shape(a.shape)}"
        if b.ndim != 2:
            return f"`B` must be a 2-D tensor, got shape {rs_shape(b.shape)}"
        if a.shape[1] != b.shape[0]:
            return (f"inner dimensions differ: A is {a.shape[0]}x{a.shape[1]}, "
                    f"B is {b.shape[0]}x{b.shape[1]}")
        return None

    if inp.stacked is not None and len(inp.stacked) == 2:
        a, b = inp.stacked
        problem = check(a[0], b[0])
        if problem is None:
            return np.matmul(a, b), errors
        return None, {i: (INVALID, problem) for i in range(inp.n)}
    values = [None] * inp.n
    groups = {}
    for i, item in enumerate(inp.items):
        if len(item) != 2:
            errors[i] = (INVALID, _inputs_error(["A", "B"], len(item)))
            continue
        problem = check(*item)
        if problem is not None:
            errors[i] = (INVALID, problem)
        else:
            groups.setdefault((item[0].shape, item[1].shape), []).append(i)
    for idx in groups.values():
        c = np.matmul(np.stack([inp.items[i][0] for i in idx]), np.stack([inp.items[i][1] for i in idx]))
        for j, i in enumerate(idx):
            values[i] = c[j]
    return values, errors


# name -> (function, parameter names it accepts), as guest/src/table.rs
KERNELS = {
    "black_scholes": (k_black_scholes, ()),
    "describe": (k_describe, ()),
    "implied_vol": (k_implied_vol, ()),
    "matmul": (k_matmul, ()),
    "norm_cdf": (k_norm_cdf, ()),
    "norm_ppf": (k_norm_ppf, ()),
}


def run_kernel(kernel: str, params: dict, inp: Inputs):
    """registry::run: unknown kernel or parameter fails every item, else the kernel per item."""
    if kernel not in KERNELS:
        message = (f"the Python worker does not implement kernel `{kernel}` "
                   f"(it implements: {', '.join(sorted(KERNELS))})")
        return None, {i: (UNKNOWN, message) for i in range(inp.n)}
    f, accepted = KERNELS[kernel]
    for name in params:
        if name not in accepted:
            message = (f"kernel `{kernel}` takes no parameter `{name}` "
                       f"(it takes: {', '.join(accepted) if accepted else 'none'})")
            return None, {i: (INVALID, message) for i in range(inp.n)}
    with np.errstate(all="ignore"):
        return f(inp, params)


def results_list(n: int, values, errors) -> list:
    """A kernel's (values, errors) as one result per item: array or (kind, message)."""
    out = []
    for i in range(n):
        if i in errors:
            out.append(errors[i])
        else:
            out.append(np.asarray(values[i]))
    return out


# ---------------------------------------------------------------------------------------------
# Protocol v1: keys (host/src/queue/store/keys.rs), spec (host/src/queue/store/spec.rs),
# scripts (host/src/queue/store/scripts.rs) and the claim loop (host/src/queue/worker/).
# ---------------------------------------------------------------------------------------------

GROUP = "workers"
PROTOCOL = "1"
JOB_ID = re.compile(r"[A-Za-z0-9_-]{1,64}\Z")
FINAL_STATES = ("done", "done-with-failures", "failed", "cancelled")
DEFAULT_SCRIPTS = Path(__file__).resolve().parents[2] / "host" / "src" / "queue" / "store" / "scripts.rs"
_SCRIPT = re.compile(
    r'pub\s+static\s+(\w+)\s*:\s*LazyLock<redis::Script>\s*=\s*LazyLock::new\(\s*\|\|\s*\{\s*'
    r'redis::Script::new\(\s*r(#*)"(.*?)"\2\s*,?\s*\)', re.S)


def load_scripts(path: Path) -> dict:
    """The Lua text of CLAIM, COMPLETE and RETRY, taken from the Rust raw string literals."""
    found = {m.group(1): m.group(3) for m in _SCRIPT.finditer(path.read_text(encoding="utf-8"))}
    missing = {"CLAIM", "COMPLETE", "RETRY"} - found.keys()
    if missing:
        raise SystemExit(f"{path}: no script {', '.join(sorted(missing))} found "
                         "(expected `pub static NAME: LazyLock<redis::Script> = ... r#\"...\"#`)")
    return found


class Keys:
    def __init__(self, job: str):
        self.prefix = f"crunch:{{{job}}}"

    def __getattr__(self, name):  # spec, progress, queue, done, errors, lasterror, dead
        return f"{self.prefix}:{name}"

    def input(self, b: int) -> str:
        return f"{self.prefix}:in:{b}"

    def output(self, b: int) -> str:
        return f"{self.prefix}:out:{b}"


class Spec:
    NUMBERS = ("batch_count", "item_count", "batch_size", "ttl_seconds", "max_deliveries",
               "batch_time_ms", "lease_ms", "created_ms")

    def __init__(self, fields: dict):
        """JobSpec::from_fields: every missing or malformed field is named."""
        def text(name):
            if name not in fields:
                raise ValueError(f"job spec has no `{name}` field")
            return fields[name]

        protocol = text("protocol")
        if protocol.split(".")[0] != PROTOCOL:
            raise ValueError(f"job spec uses protocol {protocol}; this build speaks {PROTOCOL}")
        try:
            params = json.loads(text("params"))
            if not isinstance(params, dict):
                raise ValueError
        except ValueError:
            raise ValueError("job spec field `params` is not a JSON object") from None
        self.params = {}
        for name, value in params.items():
            try:
                shape, data = value["shape"], value["data"]
                a = np.asarray(data, dtype=np.float64)
                if a.ndim != 1 or any(not isinstance(d, int) or d < 0 for d in shape):
                    raise ValueError
            except (TypeError, KeyError, ValueError):
                raise ValueError(f"parameter `{name}` is not a {{shape, data}} tensor") from None
            if math.prod(shape) != a.size:
                raise ValueError(f"parameter `{name}`: shape {rs_shape(shape)} needs "
                                 f"{math.prod(shape)} values but {a.size} were given")
            self.params[name] = a.reshape(shape)
        self.job, self.kernel = text("job"), text("kernel")
        self.pack_digest, self.pack_path = text("pack_digest"), text("pack_path")
        for name in self.NUMBERS:
            v = text(name)
            digits = v.removeprefix("+")
            if not digits or not digits.isascii() or not digits.isdigit():
                why = "cannot parse integer from empty string" if not digits else "invalid digit found in string"
            elif int(digits) >= 1 << 64:
                why = "number too large to fit in target type"
            else:
                setattr(self, name, int(digits))
                continue
            # as Rust's `u64::from_str` error under the context the Rust reader gives it
            raise ValueError(f"job spec field `{name}` is not a whole number: "
                             f"{json.dumps(v, ensure_ascii=False)}: {why}")


class BatchError(Exception):
    """A batch-level failure (the analogue of a trap or a time limit)."""


class _Timeout(BaseException):
    pass


def _on_alarm(signum, frame):
    raise _Timeout()


class Worker:
    def __init__(self, r, url: str, consumer: str, scripts: dict):
        self.r = r
        self.url = url
        self.consumer = consumer
        self.claim_script = r.register_script(scripts["CLAIM"])
        self.complete_script = r.register_script(scripts["COMPLETE"])
        self.retry_script = r.register_script(scripts["RETRY"])
        self.specs = {}
        self.packs = set()  # digests checked against their bytes
        # The batch time limit interrupts the kernel with SIGALRM (main thread, Unix only).
        self.timer = hasattr(signal, "setitimer") and threading.current_thread() is threading.main_thread()
        if self.timer:
            signal.signal(signal.SIGALRM, _on_alarm)
        self.batches = self.retried = self.dead = self.items_ok = self.items_failed = 0
        self.kernel_seconds = 0.0

    # -- spec and pack ------------------------------------------------------------------------

    def spec(self, job: str) -> Spec:
        if job in self.specs:
            return self.specs[job]
        keys = Keys(job)
        try:
            if not JOB_ID.match(job):
                raise ValueError(f"`{job}` is not a valid job id")
            fields = {k.decode(): v.decode() for k, v in self.r.hgetall(keys.spec).items()}
            if not fields:
                raise LookupError(f"no job `{job}` in {self.url} (unknown, or expired with its TTL)")
            try:
                spec = Spec(fields)
            except ValueError as e:
                raise ValueError(f"reading the spec of job {job}: {e}") from None
        except ValueError as e:
            # A spec that exists but cannot be read fails its job; a missing one is reported.
            if self.r.exists(keys.spec):
                self.r.hset(keys.progress, mapping={"state": "failed", "error": f"unreadable job spec: {e}"})
            raise
        self.specs[job] = spec
        return spec

    def check_pack(self, spec: Spec):
        """The job is pinned to its pack's digest: refuse it (fail the job) if the pack cannot
        be read or its bytes differ, as the Rust worker does. The Python worker does not run
        the pack, but it checks the same thing so that both refuse the same jobs."""
        if spec.pack_digest in self.packs:
            return
        try:
            if spec.pack_path:
                try:
                    data = Path(spec.pack_path).read_bytes()
                except OSError as e:
                    raise BatchError(f"reading kernel pack {spec.pack_path}: {e.strerror} (os error {e.errno})") from None
            else:
                blob = "crunch:kernels:blob:" + spec.pack_digest.removeprefix("sha256:")
                data = self.r.get(blob)
                if data is None:
                    raise BatchError(f"kernel pack {spec.pack_digest} is not in the registry (removed?)")
            actual = "sha256:" + hashlib.sha256(data).hexdigest()
            if actual != spec.pack_digest:
                raise BatchError(f"kernel pack bytes have digest {actual}, expected {spec.pack_digest}")
        except BatchError as e:
            self.r.hset(Keys(spec.job).progress, mapping={"state": "failed", "error": str(e)})
            raise RuntimeError(f"job {spec.job} failed: {e}") from None
        self.packs.add(spec.pack_digest)

    # -- one batch ----------------------------------------------------------------------------

    def work_one(self, job: str) -> bool:
        """Claims and processes at most one batch of `job`; True if one was claimed."""
        spec = self.spec(job)
        keys = Keys(job)
        reply = self.claim_script(keys=[keys.progress, keys.queue], args=[GROUP, self.consumer, spec.lease_ms])
        if reply is None:
            return False
        reply = [v.decode() if isinstance(v, bytes) else str(v) for v in reply]
        if len(reply) == 2 and reply[0] == "state":
            log.debug("job %s not runnable: %s", job, reply[1])
            return False
        if len(reply) != 5 or reply[0] != "claim":
            raise RuntimeError(f"unexpected claim reply {reply!r}")
        _, entry, batch, attempt, deliveries = reply
        if not batch.isdigit():
            raise RuntimeError(f"queue entry {entry} has batch {json.dumps(batch)}")
        batch = int(batch)
        attempt = int(attempt) if attempt.isdigit() else 1
        deliveries = int(deliveries) if deliveries.isdigit() else 1
        claimed = (entry, batch, max(attempt - 1, 0) + deliveries)
        try:
            self.process(spec, keys, claimed)
        except Exception as e:
            raise RuntimeError(f"job {job}, batch {batch}: {e}") from e
        return True

    def process(self, spec: Spec, keys: Keys, claimed):
        entry, batch, deliveries = claimed
        if deliveries > spec.max_deliveries:
            last = self.r.hget(keys.lasterror, batch)
            reason = last.decode() if last is not None else (
                f"its worker was lost {deliveries} times (claim lease of {spec.lease_ms} ms expired)")
            return self.dead_letter(spec, keys, claimed, reason)
        self.check_pack(spec)
        blob = self.r.get(keys.input(batch))
        if blob is None:
            return self.dead_letter(spec, keys, claimed, f"input of batch {batch} is missing (expired or deleted)")
        try:
            inp = Inputs.from_blob(blob)
        except CrbError as e:
            return self.dead_letter(spec, keys, claimed, f"input of batch {batch} is malformed: {e}")
        start = time.perf_counter()
        error = None
        try:
            try:
                if self.timer:
                    signal.setitimer(signal.ITIMER_REAL, spec.batch_time_ms / 1000.0)
                values, errors = run_kernel(spec.kernel, spec.params, inp)
                encoded = encode_batch(inp.n, values, errors)
            finally:
                if self.timer:
                    signal.setitimer(signal.ITIMER_REAL, 0)
        except _Timeout:
            error = (f"kernel `{spec.kernel}`, batch {batch}: interrupted after exceeding its time "
                     f"limit of {rs_duration_ms(spec.batch_time_ms)}")
        except Exception as e:  # the analogue of a trap: the batch fails, and is retried
            tb = traceback.format_exc().rstrip().split("\n")[-16:]
            error = f"kernel `{spec.kernel}`, batch {batch}: trapped: {type(e).__name__}: {e}\n" + "\n".join(tb)
        self.kernel_seconds += time.perf_counter() - start
        if error is not None:
            return self.batch_failed(spec, keys, claimed, error)
        first = batch * spec.batch_size
        failures = [{"item": first + i, "kind": k, "message": m} for i, (k, m) in sorted(errors.items())]
        self.complete(spec, keys, claimed, encoded, inp.n - len(failures), failures, "")

    def batch_failed(self, spec: Spec, keys: Keys, claimed, error: str):
        entry, batch, deliveries = claimed
        reason = f"job {spec.job}: {error}"
        log.warning("job %s batch %d delivery %d: %s", spec.job, batch, deliveries, reason)
        if deliveries >= spec.max_deliveries:
            return self.dead_letter(spec, keys, claimed, reason)
        requeued = self.retry_script(
            keys=[keys.queue, keys.lasterror],
            args=[GROUP, entry, batch, deliveries + 1, reason, spec.ttl_seconds])
        self.retried += int(requeued)

    def dead_letter(self, spec: Spec, keys: Keys, claimed, reason: str):
        entry, batch, deliveries = claimed
        log.error("job %s batch %d dead-lettered after %d deliveries: %s", spec.job, batch, deliveries, reason)
        n = min(spec.batch_size, max(spec.item_count - batch * spec.batch_size, 0))
        headline = first_line(reason)
        results = [("batch-failed", headline)] * n
        failures = [{"item": batch * spec.batch_size + i, "kind": "batch-failed", "message": headline}
                    for i in range(n)]
        if self.complete(spec, keys, claimed, encode_results(results), 0, failures, reason):
            self.dead += 1

    def complete(self, spec: Spec, keys: Keys, claimed, encoded: bytes, ok: int, failures: list,
                 dead_reason: str) -> bool:
        """Script COMPLETE: store, count once, acknowledge, finish the job when all are in."""
        entry, batch, deliveries = claimed
        errors = json.dumps(failures, separators=(",", ":"), ensure_ascii=False) if failures else ""
        counted = self.complete_script(
            keys=[keys.progress, keys.done, keys.output(batch), keys.errors, keys.queue, keys.dead,
                  keys.lasterror],
            args=[batch, entry, encoded, ok, len(failures), errors, spec.ttl_seconds, GROUP,
                  dead_reason, deliveries])
        if counted == 1:
            self.batches += 1
            self.items_ok += ok
            self.items_failed += len(failures)
            return True
        return False


def encode_batch(n: int, values, errors) -> bytes:
    if isinstance(values, np.ndarray) and values.shape[0] == n:
        return encode_stacked_results(values, errors)
    if values is None:
        values = [None] * n
    return encode_results(results_list(n, values, errors))


# ---------------------------------------------------------------------------------------------
# Command line
# ---------------------------------------------------------------------------------------------


def connect(url: str):
    """A client that reconnects with exponential backoff and retries the interrupted command
    (8 deliveries, 50 ms doubling to 2 s, as host/src/queue/store/mod.rs)."""
    retry = dict(retry=Retry(ExponentialBackoff(cap=2.0, base=0.05), 8),
                 retry_on_error=[redis.ConnectionError, redis.TimeoutError])
    if url.startswith("redis+cluster://"):
        from redis.cluster import ClusterNode, RedisCluster
        nodes = []
        for node in url.removeprefix("redis+cluster://").split(","):
            host, _, port = node.rpartition("@")[2].rpartition(":")
            nodes.append(ClusterNode(host, int(port)))
        return RedisCluster(startup_nodes=nodes, **retry)
    return redis.Redis.from_url(url, **retry)


def progress_state(r, job: str):
    state = r.hget(Keys(job).progress, "state")
    return None if state is None else state.decode()


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--redis", default=os.environ.get("CRUNCH_REDIS", "redis://127.0.0.1:6379"),
                        help="redis://[user:password@]host:port[/db], rediss://..., or redis+cluster://host:port,...")
    parser.add_argument("--job", required=True, help="work only on this job")
    parser.add_argument("--consumer", help="consumer name in the queue's group (default: HOST-PID-RANDOM-py)")
    parser.add_argument("--exit-when-done", action="store_true",
                        help="exit once the job has finished, instead of waiting for more work")
    parser.add_argument("--scripts", type=Path, default=DEFAULT_SCRIPTS,
                        help="the Rust source holding the protocol's Lua scripts (default: %(default)s)")
    parser.add_argument("-v", "--verbose", action="store_true")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.WARNING,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stderr)

    if not JOB_ID.match(args.job):
        parser.error(f"`{args.job}` is not a valid job id")
    scripts = load_scripts(args.scripts)
    r = connect(args.redis)
    # Fail fast on an unreachable server or an unknown job, as `crunch worker --job` does.
    if progress_state(r, args.job) is None:
        sys.exit(f"error: no job `{args.job}` in {args.redis} (unknown, or expired with its TTL)")
    consumer = args.consumer or f"{socket.gethostname()}-{os.getpid()}-{secrets.token_hex(4)}-py"
    worker = Worker(r, args.redis, consumer, scripts)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    log.info("worker %s on %s, job %s", consumer, args.redis, args.job)

    def keep_going() -> bool:
        if not args.exit_when_done:
            return True
        try:
            return progress_state(r, args.job) not in (None,) + FINAL_STATES
        except redis.RedisError:
            return False

    code = 0
    start = time.perf_counter()
    idle = 0.02
    try:
        while True:
            try:
                worked = worker.work_one(args.job)
            except Exception as e:  # reported, and the loop goes on (as the Rust claim loop)
                log.error("job %s: %s", args.job, e)
                worked = False
            if worked:
                idle = 0.02
                continue
            # Asked only when there was nothing to claim, as the Rust worker does.
            if not keep_going():
                break
            time.sleep(idle)
            idle = min(idle * 2, 0.5)
    except KeyboardInterrupt:
        code = 130
    except SystemExit as e:
        code = e.code if isinstance(e.code, int) else 1
    finally:
        seconds = time.perf_counter() - start
        items = worker.items_ok + worker.items_failed
        print(json.dumps({
            "job": args.job, "batches": worker.batches, "items": items,
            "seconds": round(seconds, 6), "items_per_s": round(items / seconds, 1) if seconds > 0 else None,
            "items_ok": worker.items_ok, "items_failed": worker.items_failed,
            "retried": worker.retried, "dead": worker.dead,
            "kernel_seconds": round(worker.kernel_seconds, 6), "consumer": consumer,
        }), flush=True)
    return code


if __name__ == "__main__":
    sys.exit(main())
