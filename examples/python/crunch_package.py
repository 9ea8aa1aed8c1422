"""The `crunch` package (`just py-dev` installs it into target/py-env, or `pip install` the
wheel `just wheel` builds): price options on every core, then the same job through Redis.

    python crunch_package.py                                  # local only
    python crunch_package.py --redis redis://127.0.0.1:6379   # and as a job (run `crunch worker`)
"""

import argparse

import numpy as np

import crunch


def contracts(n: int, seed: int = 0) -> np.ndarray:
    """n European options as rows of [S, K, T, r, sigma, is_call]."""
    rng = np.random.default_rng(seed)
    return np.column_stack(
        [
            rng.uniform(80, 120, n),
            rng.uniform(80, 120, n),
            rng.uniform(0.1, 2.0, n),
            rng.uniform(0.0, 0.05, n),
            rng.uniform(0.1, 0.5, n),
            rng.integers(0, 2, n).astype(float),
        ]
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--redis", help="also submit the contracts as a job to this Redis")
    parser.add_argument("--count", type=int, default=1_000_000)
    args = parser.parse_args()

    c = contracts(args.count)
    c[7, 4] = -0.2  # one contract with a negative volatility: a domain error for that item alone

    # Arrays in, arrays out: one row of [price, delta, gamma, vega, theta, rho] per contract.
    greeks, failures = crunch.run("black_scholes", c, errors="nan", progress=True)
    print(f"{len(greeks)} contracts priced, {len(failures)} failed: {failures[0].message}")
    print("first price:", greeks[0, 0])

    # Several tensors per item: regressions as (X, y) pairs.
    rng = np.random.default_rng(1)
    regressions = [(rng.normal(size=(50, 3)), rng.normal(size=50)) for _ in range(1000)]
    print("ols coefficients of the first:", crunch.run("ols", regressions)[0])

    if args.redis:
        client = crunch.Client(args.redis)
        job = client.submit("black_scholes", c)
        job.wait()  # a progress bar while `crunch worker` processes (or Lambdas) run it
        values, failures = job.results(errors="nan")
        same = np.array_equal(values, greeks, equal_nan=True)
        print(f"job {job.id}: {job.status()}; identical to the local run: {same}")


if __name__ == "__main__":
    main()
