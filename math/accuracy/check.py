"""Accuracy of crunch-math against a high-precision reference (mpmath), in ulp.

For each function: random points across its domain (fixed seed), evaluated by crunch-math
(`accuracy_eval`, the same code the kernels run) and by mpmath at 40 digits; the error of each
result is |got - exact| in units in the last place of the exact value. The same points are also
evaluated by the NumPy/SciPy function a user would call, for comparison. Prints a markdown table
(docs/kernels.md holds the last one).

Usage: python check.py --eval PATH/TO/accuracy_eval [--count 1000000] [--jobs N]
"""

import argparse
import multiprocessing
import os
import subprocess
import sys
import tempfile

import mpmath
import numpy as np
import scipy.special

mpmath.mp.dps = 40


def log_uniform(rng, n, lo_exp, hi_exp):
    """Values whose binary exponents are spread evenly between lo_exp and hi_exp."""
    return np.ldexp(rng.uniform(1.0, 2.0, n), rng.integers(lo_exp, hi_exp, n))


def points(name, n, rng):
    half = n // 2
    if name == "exp":
        return rng.uniform(-745.0, 709.78, n)
    if name == "log":
        return np.concatenate([log_uniform(rng, half, -1074, 1023), rng.uniform(0.25, 4.0, n - half)])
    if name in ("cdf", "cdf_upper"):
        xs = rng.uniform(-38.0, 9.0, n)
        return -xs if name == "cdf_upper" else xs
    if name == "pdf":
        return rng.uniform(-38.0, 38.0, n)
    if name == "ppf":
        tail = log_uniform(rng, half, -1074, -1)
        tail = np.where(rng.integers(0, 2, half) == 1, 1.0 - tail, tail)
        ps = np.concatenate([tail, rng.uniform(0.0, 1.0, n - half)])
        # 1 - tail rounds to 1 for the smallest tails: Φ⁻¹(1) = inf exactly; keep (0, 1).
        return np.where((ps > 0.0) & (ps < 1.0), ps, 0.5)
    raise ValueError(name)


def exact(name, x, got):
    x = mpmath.mpf(x)
    if name == "exp":
        return mpmath.exp(x)
    if name == "log":
        return mpmath.log(x)
    if name == "cdf":
        return mpmath.ncdf(x)
    if name == "cdf_upper":
        return mpmath.ncdf(-x)
    if name == "pdf":
        return mpmath.npdf(x)
    if name == "ppf":
        # Newton's method on Φ from crunch's own value (quadratic convergence at 40 digits).
        z = mpmath.mpf(got)
        for _ in range(4):
            z -= (mpmath.ncdf(z) - x) / mpmath.npdf(z)
        return z
    raise ValueError(name)


def ulp_error(value, want):
    """|value - want| in ulp of want (the spacing of doubles at want's magnitude)."""
    if not np.isfinite(value):
        return float("inf")
    if want == 0:
        return 0.0 if value == 0 else float("inf")
    e = max(int(mpmath.floor(mpmath.log(abs(want), 2))), -1022)
    return float(abs(mpmath.mpf(value) - want) / mpmath.ldexp(1, e - 52))


def errors_chunk(args):
    name, xs, ours, theirs = args
    worst_ours, worst_at, worst_theirs, sum_ours = 0.0, None, 0.0, 0.0
    for x, a, b in zip(xs, ours, theirs):
        want = exact(name, float(x), float(a))
        ea = ulp_error(float(a), want)
        eb = ulp_error(float(b), want)
        sum_ours += ea
        if ea > worst_ours:
            worst_ours, worst_at = ea, float(x)
        worst_theirs = max(worst_theirs, eb)
    return worst_ours, worst_at, worst_theirs, sum_ours


THEIRS = {
    "exp": ("numpy.exp", np.exp),
    "log": ("numpy.log", np.log),
    "cdf": ("scipy.special.ndtr", scipy.special.ndtr),
    "cdf_upper": ("scipy.special.ndtr(-x)", lambda x: scipy.special.ndtr(-x)),
    "pdf": ("exp(-x²/2)/√(2π)", lambda x: np.exp(-0.5 * x * x) / np.sqrt(2 * np.pi)),
    "ppf": ("scipy.special.ndtri", scipy.special.ndtri),
}

DOMAINS = {
    "exp": "[-745, 709.78] uniform",
    "log": "all positive doubles (log-uniform) and [0.25, 4] uniform",
    "cdf": "Φ(x), x in [-38, 9] uniform",
    "cdf_upper": "Φ(-x), x in [-9, 38] uniform",
    "pdf": "[-38, 38] uniform",
    "ppf": "p in (0, 1): log-uniform tails (both sides) and uniform",
}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--eval", required=True, help="the accuracy_eval binary")
    parser.add_argument("--count", type=int, default=1_000_000)
    parser.add_argument("--jobs", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--functions", default="exp,log,cdf,cdf_upper,pdf,ppf")
    args = parser.parse_args()
    rng = np.random.default_rng(20261130)
    rows = []
    with tempfile.TemporaryDirectory() as tmp, multiprocessing.Pool(args.jobs) as pool:
        for name in args.functions.split(","):
            xs = points(name, args.count, rng).astype("<f8")
            src, dst = os.path.join(tmp, "in.f64"), os.path.join(tmp, "out.f64")
            xs.tofile(src)
            subprocess.run([args.eval, name, src, dst], check=True)
            ours = np.fromfile(dst, dtype="<f8")
            label, f = THEIRS[name]
            with np.errstate(all="ignore"):
                theirs = f(xs)
            chunks = [
                (name, xs[i : i + 5000], ours[i : i + 5000], theirs[i : i + 5000])
                for i in range(0, len(xs), 5000)
            ]
            results = pool.map(errors_chunk, chunks)
            worst = max(results, key=lambda r: r[0])
            mean = sum(r[3] for r in results) / len(xs)
            theirs_worst = max(r[2] for r in results)
            rows.append((name, DOMAINS[name], worst[0], worst[1], mean, label, theirs_worst))
            print(f"{name}: max {worst[0]:.2f} ulp at {worst[1]!r}, mean {mean:.3f}; "
                  f"{label} max {theirs_worst:.2f}", file=sys.stderr)
    print(f"| function | points ({args.count:,} each) | max error (ulp) | mean (ulp) | "
          "NumPy/SciPy on the same points |")
    print("|---|---|---:|---:|---|")
    for name, domain, worst, at, mean, label, theirs_worst in rows:
        print(f"| `{name}` | {domain} | {worst:.2f} (x = {at:.6g}) | {mean:.3f} | "
              f"{label}: {theirs_worst:.2f} |")


if __name__ == "__main__":
    main()
