"""Python baselines for the Crunch kernel benchmark: the same computations in NumPy/SciPy.

For each workload the Rust benchmark driver writes (a kernel, its items and parameters, and
Crunch's own results), this script times two Python versions of the computation and checks
that they agree with Crunch:

- per_item:   the code teams write today, one NumPy/SciPy call per item in a Python loop
              (scipy.stats.describe, scipy.optimize.brentq, scipy.stats.norm.cdf on scalars...);
- vectorized: NumPy/SciPy as an expert writes it, one computation over the whole stacked batch
              (scipy.special.ndtr on the stack, batched np.linalg, np.fft.rfft(axis=1), a
              vectorised safeguarded Newton for implied volatility...).

    python baselines.py --inputs DIR --out FILE.json [--min-seconds 0.3] [--repeats 5]
                        [--only KERNEL,...] [--threads N]
    python baselines.py --self-test [--golden DIR]

DIR holds manifest.json:

    {"workloads": [{"kernel": "percentile", "items": "percentile.crb", "params": {"q": [5, 50]},
                    "expected": "percentile.results.crb", "count": 200}, ...]}

`items` and `expected` are Crunch binary files (docs/formats.md, read by crunchbin.py beside
this script); `expected` may be missing, which skips the agreement check with Crunch.

Timing (time.perf_counter). Decoding and stacking the items into arrays are not timed; the
computation and producing the outputs (a list of per-item arrays, or one stacked array) are.
per_item: an untimed first pass over the items (warm-up, outputs for the checks) finds the
shortest prefix that takes at least --min-seconds (all items if the whole set is quicker, and
then a timed run makes several passes over them to last about --min-seconds); the prefix is
run --repeats times and the median per pass is reported. vectorized: the whole workload,
after one untimed warm-up run, at least max(3, --repeats) times and until --min-seconds have
been spent; the median is reported. Items of different shapes are vectorised per shape group.

Agreement: max_abs_diff and max_rel_diff against Crunch's results over the items Crunch
computed (equal NaNs and equal infinities agree; a NaN on one side only is counted in
nan_mismatches and left out of the maxima; the relative difference skips expected zeros), and
per_item against vectorized even without Crunch's results.

--self-test checks both versions of every kernel against the NumPy/SciPy golden vectors
(../shared/golden/*.json from the repository root) within their tolerances, prints one line per
kernel and exits non-zero on a failure.
"""

import argparse
import json
import math
import os
import platform
import statistics
import sys
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

THREAD_VARS = ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS")


def _threads_flag(argv):
    """--threads N sets the BLAS/OpenMP thread variables; it must run before NumPy loads."""
    for i, arg in enumerate(argv):
        value = arg.split("=", 1)[1] if arg.startswith("--threads=") else None
        if arg == "--threads" and i + 1 < len(argv):
            value = argv[i + 1]
        if value is not None:
            for var in THREAD_VARS:
                os.environ[var] = value


if __name__ == "__main__":
    _threads_flag(sys.argv[1:])

import numpy as np  # noqa: E402
import scipy  # noqa: E402
import scipy.linalg  # noqa: E402
import scipy.special  # noqa: E402
import scipy.stats  # noqa: E402
from numpy.lib.stride_tricks import sliding_window_view  # noqa: E402
from scipy.interpolate import CubicSpline  # noqa: E402
from scipy.optimize import brentq  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
import crunchbin  # noqa: E402

EPS = np.finfo(float).eps
SIGMA_RANGE = (1e-6, 5.0)  # implied_vol's bracket, as brentq(f, 1e-6, 5)
FRAC_1_SQRT_2PI = 1.0 / math.sqrt(2.0 * math.pi)
norm = scipy.stats.norm


# --- shared helpers -------------------------------------------------------------------------

def stack(items, j, ndim, name, nonempty=False):
    """Input `j` of every item stacked on a new first axis; checks its rank (and emptiness)."""
    first = items[0][j]
    if first.ndim != ndim:
        raise ValueError(f"`{name}` must have {ndim} dimension(s), got shape {first.shape}")
    if nonempty and first.size == 0:
        raise ValueError(f"`{name}` must not be empty")
    return np.stack([item[j] for item in items])


def check_arity(items, count):
    if len(items[0]) != count:
        raise ValueError(f"expected {count} input tensor(s), got {len(items[0])}")


def record_columns(items, fields):
    """Items that are one 1-D record of len(fields) values, as contiguous columns (6, g)."""
    check_arity(items, 1)
    records = stack(items, 0, 1, fields)
    if records.shape[1] != 6:
        raise ValueError(f"expected a record of 6 values [{fields}], got {records.shape[1:]}")
    return np.ascontiguousarray(records.T)


def percentages(params):
    """The `q` parameter, checked as Crunch does: percentages in [0, 100]."""
    if "q" not in params:
        raise ValueError("missing parameter `q`")
    q = params["q"]
    if not np.all((q >= 0) & (q <= 100)):
        raise ValueError("parameter `q` must hold percentages in [0, 100]")
    return q


def contract_ok(s, k, t, r, flag):
    """Crunch's domain for a contract: S, K, T positive and finite, r finite, flag 1 or 0."""
    finite = np.isfinite(s) & np.isfinite(k) & np.isfinite(t) & np.isfinite(r)
    return finite & (s > 0) & (k > 0) & (t > 0) & ((flag == 1.0) | (flag == 0.0))


def scalar_contract(s, k, t, r, is_call):
    """A per-item contract check; returns True for a call, raises like Crunch's errors."""
    if is_call not in (0.0, 1.0):
        raise ValueError(f"is_call must be 1 or 0, got {is_call}")
    if not (0 < s < math.inf and 0 < k < math.inf and 0 < t < math.inf and math.isfinite(r)):
        raise ValueError("S, K and T must be positive and finite, r finite")
    return is_call == 1.0


# --- describe -------------------------------------------------------------------------------

def describe_per_item(item, params):
    """scipy.stats.describe(x) per item."""
    d = scipy.stats.describe(item[0])
    return np.array([d.nobs, d.minmax[0], d.minmax[1], d.mean, d.variance, d.skewness,
                     d.kurtosis])


def describe_prepare(items, params):
    check_arity(items, 1)
    return {"x": stack(items, 0, 1, "x", nonempty=True)}


def describe_vectorized(b):
    """Moments along axis 1 of the (g, n) stack (one pass for the deviations), SciPy's NaN rule
    for (near-)constant samples."""
    x = b["x"]
    g, n = x.shape
    mean = x.mean(axis=1)
    d = x - mean[:, None]
    d2 = d * d
    m2 = d2.mean(axis=1)
    m3 = np.einsum("ij,ij->i", d2, d) / n
    m4 = np.einsum("ij,ij->i", d2, d2) / n
    constant = m2 <= (EPS * mean) ** 2  # as scipy.stats.skew / kurtosis
    out = np.empty((7, g))
    out[0] = n
    out[1] = x.min(axis=1)
    out[2] = x.max(axis=1)
    out[3] = mean
    out[4] = m2 * (n / (n - 1.0)) if n > 1 else np.nan
    out[5] = np.where(constant, np.nan, m3 / m2**1.5)
    out[6] = np.where(constant, np.nan, m4 / (m2 * m2) - 3.0)
    return out.T


# --- percentile -----------------------------------------------------------------------------

def percentile_per_item(item, params):
    """np.percentile(x, q) per item."""
    return np.percentile(item[0], params["q"])


def percentile_prepare(items, params):
    check_arity(items, 1)
    return {"x": stack(items, 0, 1, "x", nonempty=True), "q": percentages(params)}


def percentile_vectorized(b):
    """Sort each row once (np.sort(axis=1)), then NumPy's linear interpolation between order
    statistics for every q at once; a row holding NaN gives NaN."""
    x, q = b["x"], b["q"]
    g, n = x.shape
    s = np.sort(x, axis=1)
    position = q.ravel() / 100.0 * (n - 1)
    below = np.floor(position)
    gamma = position - below
    i = below.astype(np.intp)
    lo = s[:, i]
    hi = s[:, np.minimum(i + 1, n - 1)]
    diff = hi - lo
    out = lo + diff * gamma  # NumPy's _lerp: from the nearer end
    np.subtract(hi, diff * (1.0 - gamma), out=out, where=np.broadcast_to(gamma >= 0.5, out.shape))
    out[np.isnan(s[:, -1])] = np.nan  # NaN sorts last
    return out.reshape((g,) + q.shape)


# --- norm_cdf / norm_ppf --------------------------------------------------------------------

def norm_cdf_per_item(item, params):
    """scipy.stats.norm.cdf(x) per item."""
    return norm.cdf(item[0])


def norm_ppf_per_item(item, params):
    """scipy.stats.norm.ppf(p) per item."""
    return norm.ppf(item[0])


def elementwise_prepare(items, params):
    check_arity(items, 1)
    return {"x": np.stack([item[0] for item in items])}


def norm_cdf_vectorized(b):
    """scipy.special.ndtr on the stacked (concatenated) items."""
    return scipy.special.ndtr(b["x"])


def norm_ppf_vectorized(b):
    """scipy.special.ndtri on the stacked (concatenated) items."""
    return scipy.special.ndtri(b["x"])


# --- black_scholes --------------------------------------------------------------------------

def black_scholes_per_item(item, params):
    """Per option: math on Python floats, scipy.stats.norm.cdf/pdf on scalars."""
    if item[0].shape != (6,):
        raise ValueError("expected one record [S, K, T, r, sigma, is_call]")
    s, k, t, r, sigma, is_call = item[0].tolist()
    if any(math.isnan(v) for v in (s, k, t, r, sigma, is_call)):
        return np.full(6, np.nan)
    call = scalar_contract(s, k, t, r, is_call)
    if not 0 < sigma < math.inf:
        raise ValueError(f"sigma must be positive and finite, got {sigma}")
    sqrt_t = math.sqrt(t)
    d1 = (math.log(s / k) + (r + 0.5 * sigma * sigma) * t) / (sigma * sqrt_t)
    d2 = d1 - sigma * sqrt_t
    dk = k * math.exp(-r * t)
    density = norm.pdf(d1)
    gamma = density / (s * sigma * sqrt_t)
    vega = s * density * sqrt_t
    decay = -s * density * sigma / (2.0 * sqrt_t)
    if call:
        n1, n2 = norm.cdf(d1), norm.cdf(d2)
        return np.array([s * n1 - dk * n2, n1, gamma, vega, decay - r * dk * n2, t * dk * n2])
    n1, n2 = norm.cdf(-d1), norm.cdf(-d2)
    return np.array([dk * n2 - s * n1, -n1, gamma, vega, decay + r * dk * n2, -t * dk * n2])


def black_scholes_prepare(items, params):
    return {"cols": record_columns(items, "S, K, T, r, sigma, is_call")}


def black_scholes_vectorized(b):
    """Closed form on the columns of all options, puts and calls together through a sign;
    ndtr for the CDF. An invalid contract gives NaN."""
    s, k, t, r, sigma, flag = b["cols"]
    sign = np.where(flag == 1.0, 1.0, -1.0)
    sqrt_t = np.sqrt(t)
    vol = sigma * sqrt_t
    d1 = (np.log(s / k) + (r + 0.5 * sigma * sigma) * t) / vol
    d2 = d1 - vol
    dk = k * np.exp(-r * t)
    n1 = scipy.special.ndtr(sign * d1)
    n2 = scipy.special.ndtr(sign * d2)
    density = FRAC_1_SQRT_2PI * np.exp(-0.5 * d1 * d1)
    sdk_n2 = sign * dk * n2
    out = np.empty((6, s.size))
    out[0] = sign * (s * n1 - dk * n2)
    out[1] = sign * n1
    out[2] = density / (s * vol)
    out[3] = s * density * sqrt_t
    out[4] = -s * density * sigma / (2.0 * sqrt_t) - r * sdk_n2
    out[5] = t * sdk_n2
    ok = contract_ok(s, k, t, r, flag) & (sigma > 0) & np.isfinite(sigma)
    out[:, ~ok] = np.nan
    return out.T


# --- implied_vol ----------------------------------------------------------------------------

def bs_price_scalar(s, k, t, r, sigma, call):
    """A Black-Scholes price with scipy.stats.norm.cdf on scalars."""
    sqrt_t = math.sqrt(t)
    d1 = (math.log(s / k) + (r + 0.5 * sigma * sigma) * t) / (sigma * sqrt_t)
    d2 = d1 - sigma * sqrt_t
    dk = k * math.exp(-r * t)
    if call:
        return s * norm.cdf(d1) - dk * norm.cdf(d2)
    return dk * norm.cdf(-d2) - s * norm.cdf(-d1)


def implied_vol_per_item(item, params):
    """scipy.optimize.brentq over [1e-6, 5] per option; a price within rounding of an end of
    the reachable range gives that end, one outside it is an error (Crunch's rule)."""
    if item[0].shape != (6,):
        raise ValueError("expected one record [price, S, K, T, r, is_call]")
    price, s, k, t, r, is_call = item[0].tolist()
    if any(math.isnan(v) for v in (price, s, k, t, r, is_call)):
        return np.array([np.nan])
    call = scalar_contract(s, k, t, r, is_call)
    lo, hi = SIGMA_RANGE

    def f(sigma):
        return bs_price_scalar(s, k, t, r, sigma, call) - price

    f_lo, f_hi = f(lo), f(hi)
    noise = 8.0 * EPS * (s + k)
    if f_lo > noise or f_hi < -noise:
        raise ValueError(f"price {price} is outside the range sigma in [{lo}, {hi}] reaches")
    if f_lo >= -noise:
        return np.array([lo])
    if f_hi <= noise:
        return np.array([hi])
    return np.array([brentq(f, lo, hi)])


def implied_vol_prepare(items, params):
    return {"cols": record_columns(items, "price, S, K, T, r, is_call")}


def bs_price_vega(sigma, s, log_sk, t, sqrt_t, r, dk, sign):
    """Black-Scholes prices and vegas on arrays (sign +1 for calls, -1 for puts)."""
    vol = sigma * sqrt_t
    d1 = (log_sk + (r + 0.5 * sigma * sigma) * t) / vol
    d2 = d1 - vol
    price = sign * (s * scipy.special.ndtr(sign * d1) - dk * scipy.special.ndtr(sign * d2))
    return price, s * FRAC_1_SQRT_2PI * np.exp(-0.5 * d1 * d1) * sqrt_t


def implied_vol_vectorized(b):
    """Safeguarded Newton (bisection whenever a step leaves the bracket) on all options at
    once, dropping the converged ones each iteration. Unreachable prices and invalid contracts
    give NaN."""
    target, s, k, t, r, flag = b["cols"]
    lo, hi = SIGMA_RANGE
    out = np.full(target.size, np.nan)
    sign = np.where(flag == 1.0, 1.0, -1.0)
    sqrt_t = np.sqrt(t)
    log_sk = np.log(s / k)
    dk = k * np.exp(-r * t)
    p_lo, _ = bs_price_vega(lo, s, log_sk, t, sqrt_t, r, dk, sign)
    p_hi, _ = bs_price_vega(hi, s, log_sk, t, sqrt_t, r, dk, sign)
    noise = 8.0 * EPS * (s + k)
    valid = contract_ok(s, k, t, r, flag) & ~np.isnan(target)
    reachable = valid & (target >= p_lo - noise) & (target <= p_hi + noise)
    at_lo = reachable & (target <= p_lo + noise)
    at_hi = reachable & ~at_lo & (target >= p_hi - noise)
    out[at_lo] = lo
    out[at_hi] = hi
    idx = np.flatnonzero(reachable & ~at_lo & ~at_hi)
    state = np.stack([s, log_sk, t, sqrt_t, r, dk, sign, target])[:, idx]
    guess = np.sqrt(2.0 * np.pi / state[2]) * state[7] / state[0]  # Brenner-Subrahmanyam
    sigma = np.where((guess > lo) & (guess < hi), guess, 0.5 * (lo + hi))
    low, high = np.full(idx.size, lo), np.full(idx.size, hi)
    for _ in range(200):
        if idx.size == 0:
            break
        price, vega = bs_price_vega(sigma, *state[:7])
        diff = price - state[7]
        exact = diff == 0.0
        low = np.where(diff < 0.0, sigma, low)
        high = np.where(diff > 0.0, sigma, high)
        newton = sigma - diff / vega
        step = np.where((newton > low) & (newton < high), newton, 0.5 * (low + high))
        converged = ~exact & ((np.abs(step - sigma) <= 2.0 * EPS * sigma)
                              | (high - low <= 2.0 * EPS * high))
        out[idx[exact]] = sigma[exact]
        out[idx[converged]] = step[converged]
        sigma = step
        keep = ~(exact | converged)
        if not keep.all():
            idx, state, sigma = idx[keep], state[:, keep], sigma[keep]
            low, high = low[keep], high[keep]
    out[idx] = sigma  # the iteration cap, as Crunch's loop
    return out[:, None]


# --- ols ------------------------------------------------------------------------------------

def ols_per_item(item, params):
    """np.linalg.lstsq(X, y)[0] per item (NaN coefficients for NaN input, on which LAPACK
    fails to converge)."""
    x, y = item
    try:
        return np.linalg.lstsq(x, y, rcond=None)[0]
    except np.linalg.LinAlgError:
        if np.isnan(x).any() or np.isnan(y).any():
            return np.full(x.shape[1], np.nan)
        raise


def ols_prepare(items, params):
    check_arity(items, 2)
    x = stack(items, 0, 2, "X")
    y = stack(items, 1, 1, "y")
    if y.shape[1] != x.shape[1] or x.shape[2] == 0:
        raise ValueError(f"X of shape {x.shape[1:]} does not fit y of {y.shape[1:]}")
    if x.shape[1] < x.shape[2]:
        raise ValueError("under-determined: fewer observations than coefficients")
    return {"X": x, "y": y}


def ols_qr(x, y):
    """Batched Householder QR (np.linalg.qr on the stack), NaN for rank-deficient items with
    Crunch's pivot test."""
    g, n, p = x.shape
    q, r = np.linalg.qr(x)
    pivots = np.abs(np.diagonal(r, axis1=1, axis2=2))
    scale = np.abs(x).max(axis=(1, 2))
    deficient = (pivots <= (scale * EPS * n)[:, None]).any(axis=1)
    if deficient.any():
        r = r.copy()
        r[deficient] = np.eye(p)
    beta = np.linalg.solve(r, np.matmul(q.transpose(0, 2, 1), y[:, :, None]))[..., 0]
    beta[deficient] = np.nan
    return beta


def ols_vectorized(b):
    """Normal equations, batched (X^T X b = X^T y by np.linalg.solve on the stack) with one step
    of iterative refinement; items whose refinement step is not tiny (ill-conditioned X, NaN,
    singular X^T X) are redone by batched QR."""
    x, y = b["X"], b["y"]
    xt = x.transpose(0, 2, 1)
    y3 = y[:, :, None]
    try:
        gram = np.matmul(xt, x)
        beta = np.linalg.solve(gram, np.matmul(xt, y3))
        step = np.linalg.solve(gram, np.matmul(xt, y3 - np.matmul(x, beta)))
        beta = (beta + step)[..., 0]
        step_norm = np.sqrt(np.einsum("ij,ij->i", step[..., 0], step[..., 0]))
        fine = step_norm <= 1e-8 * np.sqrt(np.einsum("ij,ij->i", beta, beta))
    except np.linalg.LinAlgError:  # an exactly singular X^T X somewhere in the stack
        beta = np.empty(x.shape[::2])
        fine = np.zeros(x.shape[0], dtype=bool)
    if not fine.all():
        beta[~fine] = ols_qr(x[~fine], y[~fine])
    return beta


# --- fft_power ------------------------------------------------------------------------------

def fft_power_per_item(item, params):
    """np.abs(np.fft.rfft(x))**2 per item."""
    return np.abs(np.fft.rfft(item[0])) ** 2


def fft_power_prepare(items, params):
    check_arity(items, 1)
    return {"x": stack(items, 0, 1, "x", nonempty=True)}


def fft_power_vectorized(b):
    """np.fft.rfft(axis=1) on the stack, power as re^2 + im^2."""
    f = np.fft.rfft(b["x"], axis=1)
    return f.real**2 + f.imag**2


# --- cubic_spline ---------------------------------------------------------------------------

def cubic_spline_per_item(item, params):
    """scipy.interpolate.CubicSpline(x, y, bc_type='natural')(xq) per item."""
    x, y, xq = item
    return CubicSpline(x, y, bc_type="natural")(xq)


def cubic_spline_prepare(items, params):
    check_arity(items, 3)
    x = stack(items, 0, 1, "x")
    y = stack(items, 1, 1, "y")
    xq = np.stack([item[2] for item in items])
    if x.shape != y.shape or x.shape[1] < 2:
        raise ValueError("x and y need the same length, at least 2")
    g = x.shape[0]
    shared = bool(np.array_equal(x, np.broadcast_to(x[0], x.shape)))
    return {"x": x, "y": y, "xq": xq.reshape(g, -1), "shape": xq.shape, "shared_x": shared}


def natural_m_thomas(x, y):
    """Second derivatives of natural splines, one per row: the Thomas algorithm over the knots,
    each step vectorised across the items (rows are knots, columns items)."""
    xt, yt = np.ascontiguousarray(x.T), np.ascontiguousarray(y.T)
    n = xt.shape[0]
    m = np.zeros_like(xt)
    if n < 3:
        return m.T
    h = np.diff(xt, axis=0)
    slope = np.diff(yt, axis=0) / h
    diag = 2.0 * (h[:-1] + h[1:])
    rhs = 6.0 * (slope[1:] - slope[:-1])
    for j in range(1, n - 2):
        factor = h[j] / diag[j - 1]
        diag[j] -= factor * h[j]
        rhs[j] -= factor * rhs[j - 1]
    m[n - 2] = rhs[n - 3] / diag[n - 3]
    for j in range(n - 4, -1, -1):
        m[j + 1] = (rhs[j] - h[j + 1] * m[j + 2]) / diag[j]
    return m.T


def natural_m_shared(x, y):
    """Second derivatives of natural splines through one knot vector x: one banded solve
    (scipy.linalg.solve_banded) with a right-hand side per item."""
    g, n = y.shape
    m = np.zeros((g, n))
    if n < 3:
        return m
    h = np.diff(x)
    slope = np.diff(y, axis=1) / h
    bands = np.zeros((3, n - 2))
    bands[0, 1:] = h[1:-1]
    bands[1] = 2.0 * (h[:-1] + h[1:])
    bands[2, :-1] = h[1:-1]
    rhs = 6.0 * (slope[:, 1:] - slope[:, :-1])
    m[:, 1:-1] = scipy.linalg.solve_banded((1, 1), bands, rhs.T, check_finite=False).T
    return m


def knots_at_or_below(x, t):
    """searchsorted(x[i], t[i], 'right') for every row at once: a branch-free binary search
    over the rows padded with +inf to a power of two."""
    g, n = x.shape
    width = 1 << n.bit_length()  # > n, so the search never leaves its row
    padded = np.full((g, width), np.inf)
    padded[:, :n] = x
    flat = padded.ravel()
    base = (np.arange(g) * width)[:, None]
    pos = np.repeat(base, t.shape[1], axis=1)
    step = width >> 1
    while step:
        pos += (flat[pos + (step - 1)] <= t) * step
        step >>= 1
    return pos - base


def cubic_spline_vectorized(b):
    """Natural-spline second derivatives by a batched tridiagonal solve (one banded solve when
    all items share x), power-basis coefficients per piece, a batched binary search for the
    pieces of the query points, Horner's rule. Invalid knots give NaN."""
    x, y, xq = b["x"], b["y"], b["xq"]
    g, n = x.shape
    if b["shared_x"]:
        m = natural_m_shared(x[0], y)
        piece = np.searchsorted(x[0], xq, side="right")
    else:
        m = natural_m_thomas(x, y)
        piece = knots_at_or_below(x, xq)
    np.clip(piece, 1, n - 1, out=piece)
    flat = piece + (np.arange(g) * (n - 1) - 1)[:, None]  # (row, piece) into (g, n - 1)
    h = np.diff(x, axis=1)
    c1 = np.diff(y, axis=1) / h - h * (2.0 * m[:, :-1] + m[:, 1:]) / 6.0
    c2 = 0.5 * m[:, :-1]
    c3 = np.diff(m, axis=1) / (6.0 * h)
    dx = xq - x[:, :-1].ravel()[flat]
    out = y[:, :-1].ravel()[flat] + dx * (c1.ravel()[flat]
                                         + dx * (c2.ravel()[flat] + dx * c3.ravel()[flat]))
    bad = ~((h > 0).all(axis=1) & np.isfinite(x).all(axis=1))
    out[bad] = np.nan
    return out.reshape(b["shape"])


# --- matmul ---------------------------------------------------------------------------------

def matmul_per_item(item, params):
    """A @ B per item."""
    return item[0] @ item[1]


def matmul_prepare(items, params):
    check_arity(items, 2)
    a, b = stack(items, 0, 2, "A"), stack(items, 1, 2, "B")
    if a.shape[2] != b.shape[1]:
        raise ValueError(f"inner dimensions differ: {a.shape[1:]} @ {b.shape[1:]}")
    return {"A": a, "B": b}


def matmul_vectorized(b):
    """np.matmul on the (g, m, k) and (g, k, n) stacks."""
    return np.matmul(b["A"], b["B"])


# --- convolve -------------------------------------------------------------------------------

def convolve_per_item(item, params):
    """np.convolve(x, w, mode='valid') per item."""
    return np.convolve(item[0], item[1], mode="valid")


def convolve_prepare(items, params):
    check_arity(items, 2)
    x, w = stack(items, 0, 1, "x", nonempty=True), stack(items, 1, 1, "w", nonempty=True)
    return {"long": x, "short": w} if x.shape[1] >= w.shape[1] else {"long": w, "short": x}


def convolve_vectorized(b):
    """Sliding windows of the longer input (sliding_window_view) times the flipped shorter
    one, one einsum over the batch (the flipped copy is contiguous: einsum is ~3x slower on
    a negative-stride view)."""
    long, short = b["long"], b["short"]
    windows = sliding_window_view(long, short.shape[1], axis=1)
    return np.einsum("gjk,gk->gj", windows, np.ascontiguousarray(short[:, ::-1]))


# --- corrcoef -------------------------------------------------------------------------------

def corrcoef_per_item(item, params):
    """np.corrcoef(X, rowvar=False) per item."""
    return np.corrcoef(item[0], rowvar=False)


def corrcoef_prepare(items, params):
    check_arity(items, 1)
    return {"X": stack(items, 0, 2, "X")}


def corrcoef_vectorized(b):
    """Centred columns, batched Z^T Z by np.matmul on the stack, scaled by the standard
    deviations as np.corrcoef does, clipped to [-1, 1]."""
    x = b["X"]
    z = x - x.mean(axis=1, keepdims=True)
    c = np.matmul(z.transpose(0, 2, 1), z) / (x.shape[1] - 1.0)
    d = np.sqrt(np.diagonal(c, axis1=1, axis2=2))
    c /= d[:, :, None]
    c /= d[:, None, :]
    return np.clip(c, -1.0, 1.0, out=c)


# --- the table ------------------------------------------------------------------------------

@dataclass(frozen=True)
class Kernel:
    """per_item(item, params) -> array; prepare(items, params) -> batch (not timed);
    vectorized(batch) -> outputs stacked on axis 0."""

    per_item: Callable
    vectorized: Callable
    prepare: Callable


KERNELS = {
    "describe": Kernel(describe_per_item, describe_vectorized, describe_prepare),
    "percentile": Kernel(percentile_per_item, percentile_vectorized, percentile_prepare),
    "norm_cdf": Kernel(norm_cdf_per_item, norm_cdf_vectorized, elementwise_prepare),
    "norm_ppf": Kernel(norm_ppf_per_item, norm_ppf_vectorized, elementwise_prepare),
    "black_scholes": Kernel(black_scholes_per_item, black_scholes_vectorized,
                            black_scholes_prepare),
    "implied_vol": Kernel(implied_vol_per_item, implied_vol_vectorized, implied_vol_prepare),
    "ols": Kernel(ols_per_item, ols_vectorized, ols_prepare),
    "fft_power": Kernel(fft_power_per_item, fft_power_vectorized, fft_power_prepare),
    "cubic_spline": Kernel(cubic_spline_per_item, cubic_spline_vectorized,
                           cubic_spline_prepare),
    "matmul": Kernel(matmul_per_item, matmul_vectorized, matmul_prepare),
    "convolve": Kernel(convolve_per_item, convolve_vectorized, convolve_prepare),
    "corrcoef": Kernel(corrcoef_per_item, corrcoef_vectorized, corrcoef_prepare),
}


# What a reader of the report should know to read a kernel's differences.
NOTES = {
    "describe": "A sample whose values are all equal but whose mean is inexact in f64 (e.g."
                " ten 0.1s) gets NaN skewness and kurtosis from SciPy (its m2 <= (eps*mean)^2"
                " rule, followed here) but finite values from Crunch; relative differences"
                " near zero skewness are large by construction.",
    "implied_vol": "Where vega is tiny (deep in or out of the money, short expiry) a range of"
                   " sigmas reproduces the price exactly in f64; brentq, the vectorised Newton"
                   " and Crunch may return different members of that range, so differences"
                   " of 1e-5 there are not errors.",
    "ols": "lstsq returns a minimum-norm solution for a rank-deficient X where Crunch (and the"
           " vectorized code) report an error (NaN).",
}


# --- running both styles --------------------------------------------------------------------

@dataclass
class Group:
    """Items of one shape signature, stacked for the vectorized code."""

    indices: list
    batch: object = None
    error: str = None


def shape_groups(kernel, items, params):
    """Groups items by the shapes of their tensors and prepares each group (not timed)."""
    by_shape = {}
    for i, item in enumerate(items):
        by_shape.setdefault(tuple(t.shape for t in item), []).append(i)
    groups = []
    for indices in by_shape.values():
        group = Group(indices)
        try:
            group.batch = kernel.prepare([items[i] for i in indices], params)
        except Exception as e:  # the whole group fails, as the kernel would fail each item
            group.error = f"{type(e).__name__}: {e}"
        groups.append(group)
    return groups


def per_item_outputs(fn, items, params):
    """One call per item; a failing item gives None."""
    out = []
    for item in items:
        try:
            out.append(fn(item, params))
        except Exception:
            out.append(None)
    return out


def time_per_item(fn, items, params, min_seconds, repeats, check_seconds):
    """Times of `repeats` runs of the shortest prefix taking >= min_seconds (a run loops over
    all items several times when one pass is quicker), the passes per run, and the outputs of
    an untimed first pass (over as many items as fit in check_seconds, at least the prefix)."""
    outputs, prefix, elapsed = [], None, 0.0
    start = time.perf_counter()
    for i, item in enumerate(items):
        try:
            outputs.append(fn(item, params))
        except Exception:
            outputs.append(None)
        elapsed = time.perf_counter() - start
        if prefix is None and elapsed >= min_seconds:
            prefix = i + 1
        if prefix is not None and elapsed >= check_seconds:
            break
    passes = 1
    if prefix is None:
        prefix = len(items)
        passes = min(10_000, max(1, math.ceil(min_seconds / max(elapsed, 1e-9))))
    timed = items[:prefix]
    runs = []
    for _ in range(max(1, repeats)):
        t0 = time.perf_counter()
        for _ in range(passes):
            per_item_outputs(fn, timed, params)
        runs.append(time.perf_counter() - t0)
    return outputs, prefix, runs, passes


def run_vectorized(kernel, groups):
    """The vectorized function over every prepared group; returns the stacked outputs."""
    return [kernel.vectorized(g.batch) for g in groups]


def vectorized_outputs(kernel, groups, count):
    """Per-item outputs of one run over every group (a warm-up when timing). A group whose
    code raises fails its items and is marked, so that it is not timed."""
    outputs = [None] * count
    for g in groups:
        if g.error is None:
            try:
                stacked = kernel.vectorized(g.batch)
            except Exception as e:
                g.error = f"{type(e).__name__}: {e}"
                continue
            for j, i in enumerate(g.indices):
                outputs[i] = stacked[j]
    return outputs


def time_vectorized(kernel, groups, count, min_seconds, repeats):
    """Outputs of a warm-up run, and the times of >= max(3, repeats) runs over the working
    groups lasting >= min_seconds in all."""
    outputs = vectorized_outputs(kernel, groups, count)
    working = [g for g in groups if g.error is None]
    runs = []
    while working and (len(runs) < max(3, repeats) or sum(runs) < min_seconds):
        t0 = time.perf_counter()
        run_vectorized(kernel, working)
        runs.append(time.perf_counter() - t0)
    timed_items = sum(len(g.indices) for g in working)
    return outputs, timed_items, runs


# --- agreement ------------------------------------------------------------------------------

def compare(got, want):
    """Differences of `got` from `want`, item by item (lists of arrays, None for a failure).
    Items `want` lacks are skipped; equal NaNs and equal infinities agree."""
    stats = {"items_compared": 0, "items_skipped": 0, "python_failed": 0,
             "shape_mismatches": 0, "nan_mismatches": 0,
             "max_abs_diff": 0.0, "max_rel_diff": 0.0}
    for g, w in zip(got, want):
        if w is None:
            stats["items_skipped"] += 1
            continue
        if g is None:
            stats["python_failed"] += 1
            continue
        g, w = np.asarray(g, dtype=float), np.asarray(w, dtype=float)
        if g.shape != w.shape:
            stats["shape_mismatches"] += 1
            continue
        stats["items_compared"] += 1
        gnan, wnan = np.isnan(g), np.isnan(w)
        stats["nan_mismatches"] += int(np.count_nonzero(gnan != wnan))
        both = ~gnan & ~wnan & (g != w)
        if not both.any():
            continue
        diff = np.abs(g[both] - w[both])
        ref = np.abs(w[both])
        stats["max_abs_diff"] = max(stats["max_abs_diff"], float(diff.max()))
        nonzero = ref > 0
        if nonzero.any():
            rel = float((diff[nonzero] / ref[nonzero]).max())
            stats["max_rel_diff"] = max(stats["max_rel_diff"], rel)
    return stats


def timing(items_timed, runs, passes=1):
    """Median seconds of one pass over the timed items, and the rates that follow."""
    if not runs or not items_timed:
        return {"items_timed": 0, "runs": len(runs), "seconds": None,
                "seconds_per_item": None, "items_per_s": None}
    seconds = statistics.median(runs) / passes
    return {"items_timed": items_timed, "runs": len(runs), "passes_per_run": passes,
            "seconds": seconds,
            "seconds_per_item": seconds / items_timed if items_timed else None,
            "items_per_s": items_timed / seconds if seconds > 0 else None}


def with_check(entry, got, expected):
    """Adds the agreement with Crunch's results (or None values without them) to `entry`."""
    if expected is None:
        entry.update(max_abs_diff=None, max_rel_diff=None)
    else:
        entry.update(compare(got, expected[:len(got)]))
    return entry


# --- workloads ------------------------------------------------------------------------------

def read_params(raw):
    """Manifest parameters: numbers, JSON arrays, or {"shape": [...], "data": [...]}."""
    params = {}
    for name, value in (raw or {}).items():
        if isinstance(value, dict) and "data" in value:
            params[name] = np.asarray(numbers(value["data"]), dtype=float).reshape(value["shape"])
        else:
            params[name] = np.asarray(numbers(value), dtype=float)
    return params


def numbers(value):
    """JSON values as floats: null and the strings "NaN", "Infinity", "-Infinity" included."""
    if isinstance(value, list):
        return [numbers(v) for v in value]
    return math.nan if value is None else float(value)


def run_workload(spec, base, args):
    """Times and checks both styles on one manifest workload."""
    name = spec["kernel"]
    kernel = KERNELS.get(name)
    if kernel is None:
        return {"error": f"no Python baseline for kernel `{name}`"}
    items = crunchbin.read_items(base / spec["items"])
    params = read_params(spec.get("params"))
    entry = {"items": len(items)}
    if spec.get("count") not in (None, len(items)):
        entry["note_count"] = f"manifest count {spec['count']} but the file holds {len(items)}"
    expected = load_expected(spec, base, len(items), entry)

    groups = shape_groups(kernel, items, params)
    outputs_v, timed_v, runs_v = time_vectorized(
        kernel, groups, len(items), args.min_seconds, args.repeats)
    outputs_p, timed_p, runs_p, passes = time_per_item(
        kernel.per_item, items, params, args.min_seconds, args.repeats, args.check_seconds)

    entry["per_item"] = with_check(timing(timed_p, runs_p, passes), outputs_p, expected)
    entry["vectorized"] = with_check(timing(timed_v, runs_v), outputs_v, expected)
    entry["per_item_vs_vectorized"] = compare(outputs_v[:len(outputs_p)], outputs_p)
    entry["per_item"]["items_checked"] = len(outputs_p)
    entry["shape_groups"] = len(groups)
    if len(groups) > 1:
        entry["note_groups"] = f"items have {len(groups)} shapes; vectorized ran per shape group"
    failed = [g.error for g in groups if g.error]
    if failed:
        entry["vectorized_failed_groups"] = failed
    if name in NOTES:
        entry["note"] = NOTES[name]
    entry["methods"] = {"per_item": describe_fn(kernel.per_item),
                        "vectorized": describe_fn(kernel.vectorized)}
    if name == "cubic_spline":
        entry["shared_x"] = all(g.batch["shared_x"] for g in groups if g.batch)
    return entry


def load_expected(spec, base, count, entry):
    """Crunch's results as a list (None for failed items), or None when absent."""
    if not spec.get("expected"):
        entry["note_expected"] = "no expected results: agreement with Crunch not checked"
        return None
    path = base / spec["expected"]
    if not path.exists():
        entry["note_expected"] = f"{path.name} is missing: agreement with Crunch not checked"
        return None
    results = crunchbin.read_results(path)
    if len(results) != count:
        entry["note_expected"] = f"{len(results)} expected results for {count} items: not checked"
        return None
    entry["crunch_failed_items"] = sum(isinstance(r, tuple) for r in results)
    return [None if isinstance(r, tuple) else r for r in results]


def describe_fn(fn):
    return " ".join((fn.__doc__ or fn.__name__).split())


def environment():
    info = {"python": platform.python_version(), "numpy": np.__version__,
            "scipy": scipy.__version__, "blas": blas_info(),
            "threads": {var: os.environ.get(var) for var in THREAD_VARS},
            "machine": platform.machine(), "cpu_count": os.cpu_count()}
    return info


def blas_info():
    """The BLAS NumPy was built with, and the kernel it runs here (threadpoolctl)."""
    try:
        blas = np.show_config(mode="dicts")["Build Dependencies"]["blas"]
        name = f"{blas.get('name')} {blas.get('version')}".strip()
    except Exception:
        name = None
    try:
        import threadpoolctl

        pools = [p for p in threadpoolctl.threadpool_info() if p.get("user_api") == "blas"]
        kernels = ", ".join(
            f"{p.get('internal_api')} {p.get('version')} kernel {p.get('architecture')}"
            f" ({p.get('num_threads')} thread(s))"
            for p in pools
        )
        return f"{name}; running: {kernels}" if kernels else name
    except ImportError:
        return name


def json_safe(value):
    """NaN and infinities as the strings Crunch's JSON uses ("NaN", "Infinity", "-Infinity")."""
    if isinstance(value, float) and not math.isfinite(value):
        return "NaN" if math.isnan(value) else ("Infinity" if value > 0 else "-Infinity")
    if isinstance(value, dict):
        return {k: json_safe(v) for k, v in value.items()}
    if isinstance(value, list):
        return [json_safe(v) for v in value]
    return value


def run_benchmark(args):
    base = Path(args.inputs)
    manifest = json.loads((base / "manifest.json").read_text())
    only = set(args.only.split(",")) if args.only else None
    if only and only - set(KERNELS):
        sys.exit(f"--only names unknown kernels: {sorted(only - set(KERNELS))}")
    report = environment()
    report["settings"] = {"min_seconds": args.min_seconds, "repeats": args.repeats}
    report["kernels"] = {}
    for spec in manifest["workloads"]:
        if only and spec["kernel"] not in only:
            continue
        t0 = time.perf_counter()
        entry = run_workload(spec, base, args)
        report["kernels"][spec["kernel"]] = entry
        print(progress_line(spec["kernel"], entry, time.perf_counter() - t0), file=sys.stderr)
    Path(args.out).write_text(json.dumps(json_safe(report), indent=2, allow_nan=False) + "\n")


def progress_line(name, entry, seconds):
    if "error" in entry:
        return f"{name:14} {entry['error']}"
    def rate(style):
        return f"{entry[style]['items_per_s'] or 0.0:12,.0f}/s"

    def diff(style):
        d = entry[style].get("max_rel_diff")
        return "-" if d is None else f"{d:.1e}"

    return (f"{name:14} {entry['items']:6} items  per_item {rate('per_item')}"
            f"  vectorized {rate('vectorized')}  max rel diff from Crunch {diff('per_item')}"
            f" / {diff('vectorized')}  ({seconds:.1f} s)")


# --- self-test ------------------------------------------------------------------------------

def golden_tensor(t):
    return np.asarray(numbers(t["data"]), dtype=float).reshape(t["shape"])


def check_outputs(outputs, expected, rtol, atol):
    """Items failing numpy.isclose(got, expected, rtol, atol, equal_nan=True), and the worst
    |got - expected| - rtol * |expected| margin over atol."""
    bad, worst = 0, 0.0
    for got, want in zip(outputs, expected):
        if got is None or np.shape(got) != want.shape:
            bad += 1
            continue
        got = np.asarray(got, dtype=float)
        if not np.allclose(got, want, rtol=rtol, atol=atol, equal_nan=True):
            bad += 1
        finite = np.isfinite(got) & np.isfinite(want)
        if finite.any():
            ratio = np.abs(got - want)[finite] / (atol + rtol * np.abs(want[finite]))
            worst = max(worst, float(ratio.max()))
    return bad, worst


def self_test_kernel(name, kernel, golden):
    """Both styles on every golden case; returns (failed, line)."""
    failures, worst = {"per_item": 0, "vectorized": 0}, {"per_item": 0.0, "vectorized": 0.0}
    total = 0
    for case in golden["cases"]:
        items = [[golden_tensor(t) for t in item["inputs"]] for item in case["items"]]
        expected = [golden_tensor(item["expected"]) for item in case["items"]]
        params = read_params(case.get("params"))
        total += len(items)
        styles = [("per_item", per_item_outputs(kernel.per_item, items, params))]
        for variant in batch_variants(shape_groups(kernel, items, params)):
            styles.append(("vectorized", vectorized_outputs(kernel, variant, len(items))))
        for style, outputs in styles:
            bad, err = check_outputs(outputs, expected, case["rtol"], case["atol"])
            failures[style] += bad
            worst[style] = max(worst[style], err)
    verdict = lambda s: "PASS" if not failures[s] else f"FAIL ({failures[s]} items)"  # noqa: E731
    line = (f"{name:14} {total:4} items  per_item {verdict('per_item'):6}"
            f" (worst err/tol {worst['per_item']:.1e})  vectorized {verdict('vectorized'):6}"
            f" (worst err/tol {worst['vectorized']:.1e})")
    return any(failures.values()), line


def batch_variants(groups):
    """The prepared groups, and for cubic_spline's batches the same with the other knot path
    (golden items differ in shape, so each group holds one item and always shares its x)."""
    variants = [groups]
    if any(isinstance(g.batch, dict) and "shared_x" in g.batch for g in groups):
        flipped = [Group(g.indices, dict(g.batch, shared_x=not g.batch["shared_x"]), g.error)
                   if g.batch else g for g in groups]
        variants.append(flipped)
    return variants


def self_test_crunchbin():
    """Round trip of items and results through Crunch binary, and a truncated file refused."""
    items = [[np.arange(6.0)], [np.ones((2, 3)), np.array(2.5), np.zeros(0)]]
    back = crunchbin.decode_items(crunchbin.encode_items(items))
    ok = all(len(a) == len(b) and all(x.shape == y.shape and np.array_equal(x, y)
                                      for x, y in zip(a, b)) for a, b in zip(items, back))
    results = [np.array([1.0, np.nan]), ("domain", "no volatility reproduces the price")]
    back = crunchbin.decode_results(crunchbin.encode_results(results))
    ok &= np.array_equal(back[0], results[0], equal_nan=True) and back[1] == results[1]
    try:
        crunchbin.decode_items(crunchbin.encode_items(items)[:-3])
        ok = False
    except crunchbin.CrbError:
        pass
    return not ok, f"{'crunchbin':14} round trip and truncation check {'PASS' if ok else 'FAIL'}"


def run_self_test(args):
    golden_dir = Path(args.golden)
    failed, lines = self_test_crunchbin()
    print(lines)
    for name, kernel in KERNELS.items():
        if args.only and name not in args.only.split(","):
            continue
        path = golden_dir / f"{name}.json"
        if not path.exists():
            print(f"{name:14} FAIL: no golden file {path}")
            failed = True
            continue
        bad, line = self_test_kernel(name, kernel, json.loads(path.read_text()))
        failed |= bad
        print(line)
    print("self-test:", "FAILED" if failed else "all passed")
    return 1 if failed else 0


# --- command line ---------------------------------------------------------------------------

def parse_args(argv):
    default_golden = Path(__file__).resolve().parents[2].parent / "shared" / "golden"
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--inputs", help="directory with manifest.json and the .crb files")
    p.add_argument("--out", help="where to write the JSON report")
    p.add_argument("--min-seconds", type=float, default=0.3,
                   help="least time a timed run set lasts (default 0.3)")
    p.add_argument("--repeats", type=int, default=5, help="timed runs per style (default 5)")
    p.add_argument("--only", help="comma-separated kernels to run")
    p.add_argument("--check-seconds", type=float, default=10.0,
                   help="time the untimed per_item pass may take to produce outputs for the"
                        " agreement checks before it stops early (default 10)")
    p.add_argument("--threads", help="set OPENBLAS/OMP/MKL_NUM_THREADS before NumPy loads")
    p.add_argument("--self-test", action="store_true",
                   help="check both styles against the golden vectors and exit")
    p.add_argument("--golden", default=os.environ.get("CRUNCH_GOLDEN", str(default_golden)),
                   help="golden vector directory (default: ../shared/golden from the repo)")
    args = p.parse_args(argv)
    if not args.self_test and not (args.inputs and args.out):
        p.error("--inputs and --out are required (or --self-test)")
    return args


def main(argv=None):
    args = parse_args(sys.argv[1:] if argv is None else argv)
    np.seterr(all="ignore")  # NaN and division warnings are expected results, not errors
    warnings.simplefilter("ignore", RuntimeWarning)
    if args.self_test:
        return run_self_test(args)
    run_benchmark(args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
