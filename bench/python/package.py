"""The `crunch` Python package against the `crunch` CLI, on the same machine in one run.

    python package.py --crunch target/release/crunch --out FILE.json [--items 1000000]
                      [--repeats 5] [--calls 2000]

1. Throughput: ``crunch.run("black_scholes", contracts)`` on --items contracts (an (n, 6)
   C-contiguous float64 array, read in place) against ``crunch run --kernel black_scholes`` on the
   same contracts (an .npy file), same threads (every core). The CLI's figure is its own
   "compute" time (the batches, without reading or writing the files); the package's is the
   whole call, wall clock, from the array in to the (n, 6) array out. Median of --repeats each,
   after one untimed run of each; the ratio package / CLI is the figure (bar: <= 1.10). The two
   outputs are checked to be identical.
2. Overhead: one ``crunch.run("black_scholes", one_contract)`` call (a (1, 6) array), median
   over --repeats rounds of --calls calls, in microseconds (aim: <= 50 us). It includes one
   batch's fixed cost (a fresh sandboxed instance, see the criterion `fixed_cost` figure).

Prints and writes one JSON object.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

import crunch


def contracts(n: int) -> np.ndarray:
    rng = np.random.default_rng(2024)
    return np.column_stack(
        [
            rng.uniform(50, 150, n),
            rng.uniform(50, 150, n),
            rng.uniform(0.05, 2.0, n),
            rng.uniform(0.0, 0.08, n),
            rng.uniform(0.05, 0.8, n),
            rng.integers(0, 2, n).astype(float),
        ]
    )


def cli_compute_seconds(crunch_bin: str, inp: Path, out: Path) -> float:
    done = subprocess.run(
        [crunch_bin, "run", "--kernel", "black_scholes", "--input", str(inp), "--output", str(out)],
        capture_output=True,
        text=True,
        check=True,
    )
    match = re.search(r"compute ([0-9.]+) s", done.stderr)
    if not match:
        raise RuntimeError(f"no compute time in crunch run's output:\n{done.stderr}")
    return float(match.group(1))


def main() -> None:
    parser = argparse.ArgumentParser(description="the crunch package against the crunch CLI")
    parser.add_argument("--crunch", required=True, help="the crunch binary")
    parser.add_argument("--out", required=True, type=Path)
    parser.add_argument("--items", type=int, default=1_000_000)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--calls", type=int, default=2000)
    args = parser.parse_args()

    c = contracts(args.items)
    with tempfile.TemporaryDirectory() as tmp:
        inp, out = Path(tmp) / "contracts.npy", Path(tmp) / "greeks.npy"
        np.save(inp, c)
        cli_compute_seconds(args.crunch, inp, out)
        cli = [cli_compute_seconds(args.crunch, inp, out) for _ in range(args.repeats)]
        from_cli = np.load(out)

    crunch.run("black_scholes", c)
    package = []
    for _ in range(args.repeats):
        start = time.perf_counter()
        greeks = crunch.run("black_scholes", c)
        package.append(time.perf_counter() - start)
    identical = bool(np.array_equal(greeks, from_cli))

    one = c[:1].copy()
    crunch.run("black_scholes", one)
    rounds = []
    for _ in range(args.repeats):
        start = time.perf_counter()
        for _ in range(args.calls):
            crunch.run("black_scholes", one)
        rounds.append((time.perf_counter() - start) / args.calls * 1e6)

    cli_s, package_s = statistics.median(cli), statistics.median(package)
    report = {
        "kernel": "black_scholes",
        "items": args.items,
        "threads": os.cpu_count(),
        "cli_compute_s": cli_s,
        "package_s": package_s,
        "package_over_cli": package_s / cli_s,
        "identical_outputs": identical,
        "one_item_call_us": statistics.median(rounds),
        "python": sys.version.split()[0],
        "crunch": crunch.__version__,
    }
    text = json.dumps(report, indent=2)
    args.out.write_text(text)
    print(text)


if __name__ == "__main__":
    main()
