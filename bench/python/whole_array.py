"""Whole arrays, as a user runs them: the NumPy/SciPy computation on one array loaded from a
.npy file, one thread, for the benchmark's whole-array rows.

    python whole_array.py --kernel black_scholes --input contracts.npy [--repeats 3]

Prints JSON: the best compute time of --repeats runs, and the time to load the input and to save
the result (np.load / np.save), in seconds.
"""

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

for var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[var] = "1"

import numpy as np  # noqa: E402
import scipy.special  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
import baselines  # noqa: E402

COMPUTE = {
    # The closed form on the contracts' columns, as baselines.py's vectorised version.
    "black_scholes": lambda a: baselines.black_scholes_vectorized({"cols": a.T}),
    "norm_cdf": scipy.special.ndtr,
    "norm_ppf": scipy.special.ndtri,
}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kernel", required=True, choices=sorted(COMPUTE))
    parser.add_argument("--input", required=True)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    start = time.perf_counter()
    array = np.load(args.input)
    load_s = time.perf_counter() - start
    f = COMPUTE[args.kernel]
    times = []
    for _ in range(args.repeats):
        start = time.perf_counter()
        out = f(array)
        times.append(time.perf_counter() - start)
    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        np.save(os.path.join(tmp, "out.npy"), out)
        save_s = time.perf_counter() - start
    print(json.dumps({"compute_s": min(times), "load_s": load_s, "save_s": save_s}))


if __name__ == "__main__":
    main()
