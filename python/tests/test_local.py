"""`crunch.run` and `crunch.kernels` on this machine: results against NumPy/SciPy on several
kernels, items with several tensors, input forms, parameters and packs."""

from __future__ import annotations

import multiprocessing

import numpy as np
from scipy import interpolate, stats

import crunch

RNG = np.random.default_rng(16)


def black_scholes_reference(c: np.ndarray) -> np.ndarray:
    """Price and greeks (theta per year, vega and rho per unit) in closed form."""
    S, K, T, r, sigma, is_call = c.T
    sqrt_t = np.sqrt(T)
    d1 = (np.log(S / K) + (r + sigma**2 / 2) * T) / (sigma * sqrt_t)
    d2 = d1 - sigma * sqrt_t
    disc = K * np.exp(-r * T)
    pdf = stats.norm.pdf(d1)
    call = is_call == 1
    price = np.where(call, S * stats.norm.cdf(d1) - disc * stats.norm.cdf(d2), disc * stats.norm.cdf(-d2) - S * stats.norm.cdf(-d1))
    delta = np.where(call, stats.norm.cdf(d1), stats.norm.cdf(d1) - 1)
    gamma = pdf / (S * sigma * sqrt_t)
    vega = S * pdf * sqrt_t
    decay = -S * pdf * sigma / (2 * sqrt_t)
    theta = np.where(call, decay - r * disc * stats.norm.cdf(d2), decay + r * disc * stats.norm.cdf(-d2))
    rho = np.where(call, T * disc * stats.norm.cdf(d2), -T * disc * stats.norm.cdf(-d2))
    return np.stack([price, delta, gamma, vega, theta, rho], axis=1)


def contracts(n: int) -> np.ndarray:
    return np.column_stack(
        [
            RNG.uniform(50, 150, n),
            RNG.uniform(50, 150, n),
            RNG.uniform(0.1, 2.0, n),
            RNG.uniform(0.0, 0.08, n),
            RNG.uniform(0.1, 0.6, n),
            RNG.integers(0, 2, n).astype(float),
        ]
    )


def test_black_scholes_matches_the_closed_form():
    c = contracts(5000)
    out = crunch.run("black_scholes", c, threads=2, batch_size=700)
    assert out.shape == (5000, 6) and out.dtype == np.float64
    np.testing.assert_allclose(out, black_scholes_reference(c), rtol=1e-9, atol=1e-9)


def test_elementwise_kernels_match_scipy():
    x = RNG.normal(size=(300, 4, 5))
    np.testing.assert_allclose(crunch.run("norm_cdf", x), stats.norm.cdf(x), rtol=1e-14, atol=1e-300)
    p = RNG.uniform(1e-12, 1 - 1e-12, size=1000)
    # A 1-D array is 1000 items of one scalar each: results come back as 1000 scalars.
    np.testing.assert_allclose(crunch.run("norm_ppf", p), stats.norm.ppf(p), rtol=1e-13)


def test_describe_and_percentile_match_numpy_and_scipy():
    x = RNG.gamma(2.0, size=(200, 257))
    d = crunch.run("describe", x)
    ref = [stats.describe(row) for row in x]
    np.testing.assert_allclose(d[:, 0], 257)
    np.testing.assert_allclose(d[:, 1], [r.minmax[0] for r in ref])
    np.testing.assert_allclose(d[:, 3], [r.mean for r in ref], rtol=1e-13)
    np.testing.assert_allclose(d[:, 4], [r.variance for r in ref], rtol=1e-12)
    np.testing.assert_allclose(d[:, 5], [r.skewness for r in ref], rtol=1e-10)
    np.testing.assert_allclose(d[:, 6], [r.kurtosis for r in ref], rtol=1e-10)
    q = [5.0, 50.0, 95.0]
    pct = crunch.run("percentile", x, {"q": q})
    np.testing.assert_allclose(pct, np.percentile(x, q, axis=1).T, rtol=1e-13)
    # A scalar parameter gives scalar results.
    np.testing.assert_allclose(crunch.run("percentile", x, {"q": 90}), np.percentile(x, 90, axis=1), rtol=1e-13)


def test_fft_power_matches_numpy():
    x = RNG.normal(size=(64, 1000))
    np.testing.assert_allclose(crunch.run("fft_power", x), np.abs(np.fft.rfft(x, axis=1)) ** 2, rtol=1e-9, atol=1e-9)


def test_items_with_several_tensors():
    # ols: [X, y] per item; items as tuples.
    items, expected = [], []
    for _ in range(50):
        X = RNG.normal(size=(40, 3))
        y = X @ RNG.normal(size=3) + RNG.normal(scale=0.1, size=40)
        items.append((X, y))
        expected.append(np.linalg.lstsq(X, y, rcond=None)[0])
    np.testing.assert_allclose(crunch.run("ols", items), np.array(expected), rtol=1e-9)

    # cubic_spline: [x, y, xq], three tensors, lists accepted for each.
    x = np.linspace(0, 10, 12)
    splines = [(x, np.sin(x + k), [0.5, 3.3, 9.9]) for k in range(20)]
    want = [interpolate.CubicSpline(x, y, bc_type="natural")(xq) for x, y, xq in splines]
    np.testing.assert_allclose(crunch.run("cubic_spline", splines), np.array(want), rtol=1e-12)

    # matmul with results of different shapes: a list, one array per item.
    pairs = [(RNG.normal(size=(m, 4)), RNG.normal(size=(4, m + 1))) for m in (1, 2, 3)]
    out = crunch.run("matmul", pairs)
    assert isinstance(out, list) and [o.shape for o in out] == [(1, 2), (2, 3), (3, 4)]
    for o, (a, b) in zip(out, pairs):
        np.testing.assert_allclose(o, a @ b, rtol=1e-13)


def test_results_do_not_depend_on_batching_or_threads():
    c = contracts(3001)
    one = crunch.run("black_scholes", c, threads=1, batch_size=5000)
    many = crunch.run("black_scholes", c, threads=2, batch_size=7)
    assert np.array_equal(one, many)


def test_any_array_like_gives_the_same_results():
    c = contracts(200)
    want = crunch.run("black_scholes", c)
    assert np.array_equal(crunch.run("black_scholes", np.asfortranarray(c)), want)
    assert np.array_equal(crunch.run("black_scholes", c.tolist()), want)
    assert np.array_equal(crunch.run("black_scholes", [tuple([row]) for row in c]), want)
    wide = np.zeros((200, 12))
    wide[:, ::2] = c
    assert np.array_equal(crunch.run("black_scholes", wide[:, ::2]), want)
    x = RNG.normal(size=(10, 8)).astype(np.float32)
    np.testing.assert_array_equal(crunch.run("norm_cdf", x), crunch.run("norm_cdf", x.astype(np.float64)))
    # The input is left as it was.
    before = c.copy()
    crunch.run("black_scholes", c)
    assert np.array_equal(c, before)


def test_empty_input():
    out = crunch.run("black_scholes", np.empty((0, 6)))
    assert isinstance(out, np.ndarray) and out.shape[0] == 0
    assert crunch.run("black_scholes", []) == []


def test_kernels_lists_the_standard_pack():
    names = [k.name for k in crunch.kernels()]
    assert names[:3] == ["describe", "percentile", "norm_cdf"]
    assert len(names) == 12 and "black_scholes" in names
    assert all(k.summary for k in crunch.kernels())
    assert crunch.STANDARD_DIGEST.startswith("sha256:") and len(crunch.STANDARD_DIGEST) == 71


def test_another_pack_by_path_or_bytes(risk_pack):
    assert [k.name for k in crunch.kernels(pack=risk_pack)] == ["var", "ma_crossover"]
    returns = RNG.normal(scale=0.01, size=(30, 250, 4))
    weights = np.array([0.4, 0.3, 0.2, 0.1])
    items = [(r, weights) for r in returns]
    var = crunch.run("var", items, {"confidence": 0.95}, pack=str(risk_pack))
    by_bytes = crunch.run("var", items, {"confidence": 0.95}, pack=risk_pack.read_bytes())
    assert np.array_equal(var, by_bytes)
    losses = np.sort(-(returns @ weights), axis=1)
    np.testing.assert_allclose(var[:, 0], losses[:, int(np.ceil(0.95 * 250)) - 1], rtol=1e-12)


def _price(c: np.ndarray) -> np.ndarray:
    return crunch.run("black_scholes", c, threads=2, batch_size=50)


def test_a_forked_child_runs_kernels():
    """A child made by fork() (multiprocessing's default on Linux) has none of the parent's
    batch or epoch threads: it makes its own."""
    c = contracts(500)
    want = _price(c)
    with multiprocessing.get_context("fork").Pool(1) as pool:
        got = pool.apply_async(_price, (c,)).get(timeout=120)
    assert np.array_equal(got, want)


def test_results_of_different_shapes_across_batches():
    items = [(np.arange(n, dtype=float) ** 2, np.array([1.0, -2.0, 0.5])) for n in [5] * 6 + [8] * 6]
    out = crunch.run("convolve", items, batch_size=3, threads=2)
    assert isinstance(out, list) and [len(o) for o in out] == [3] * 6 + [6] * 6
    for o, (x, w) in zip(out, items):
        np.testing.assert_allclose(o, np.convolve(x, w, mode="valid"), rtol=1e-14)
