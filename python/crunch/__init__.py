"""Crunch from Python: NumPy arrays in, arrays out.

Numeric kernels (option pricing, statistics, regressions, spectra, ...) compiled to one
sandboxed WebAssembly component run on every core of this machine with :func:`run`, or as
jobs in Redis drained by ``crunch worker`` processes and AWS Lambda with :class:`Client`.
The standard kernel pack is built into the package.

>>> import numpy as np, crunch
>>> contracts = np.array([[100.0, 100.0, 1.0, 0.05, 0.2, 1.0]])   # S, K, T, r, sigma, is_call
>>> crunch.run("black_scholes", contracts)[0, 0]                    # price
10.450583572185565
"""

from ._errors import (
    BatchFailedError,
    CrunchError,
    DomainError,
    InvalidInputError,
    JobCancelledError,
    JobFailedError,
    JobNotFoundError,
    RedisUnavailableError,
    WaitTimeoutError,
)
from ._jobs import Client, Job, Pack, Status
from ._local import Kernel, kernels, run
from ._native import STANDARD_DIGEST
from ._results import Failure, Results

try:
    from importlib.metadata import PackageNotFoundError, version

    __version__ = version("crunch")
except PackageNotFoundError:  # pragma: no cover - only in an uninstalled source tree
    __version__ = "0.0.0"

__all__ = [
    "run",
    "kernels",
    "Kernel",
    "Results",
    "Failure",
    "Client",
    "Job",
    "Status",
    "Pack",
    "STANDARD_DIGEST",
    "CrunchError",
    "InvalidInputError",
    "DomainError",
    "BatchFailedError",
    "JobFailedError",
    "JobCancelledError",
    "JobNotFoundError",
    "WaitTimeoutError",
    "RedisUnavailableError",
]
