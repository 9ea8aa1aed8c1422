"""Type stubs of ``crunch._native``, the Rust half of the package (the public API is
``crunch``'s: :func:`crunch.run`, :func:`crunch.kernels`, :class:`crunch.Client`)."""

import os
from typing import Any, Callable, Dict, List, Mapping, Optional, Tuple, Union

import numpy as np

_Values = Union[np.ndarray, List[Optional[np.ndarray]]]
_RawFailure = Tuple[int, int, str, str]
_PackArg = Union[str, os.PathLike, bytes, None]

STANDARD_DIGEST: str
"""``sha256:<hex>`` of the standard kernel pack built into the package."""

def run(
    kernel: str,
    items: Any,
    params: Optional[Mapping[str, Any]] = None,
    threads: Optional[int] = None,
    batch_size: Optional[int] = None,
    time_limit: Optional[float] = None,
    memory_limit: Optional[int] = None,
    pack: _PackArg = None,
    progress: Optional[Callable[[int], None]] = None,
) -> Tuple[_Values, List[_RawFailure]]:
    """Runs ``kernel`` on ``items`` locally (see :func:`crunch.run`); returns the values
    (failed rows NaN, or ``None`` in a list) and the failures as ``(item, batch, kind, message)``.
    ``progress`` is called with the number of items done so far."""

def kernels(pack: _PackArg = None) -> List[Tuple[str, str]]:
    """``(name, summary)`` of every kernel of ``pack`` (default: the standard pack)."""

def standard_pack() -> Tuple[str, bytes]:
    """The digest and the bytes of the standard kernel pack component."""

class NativeClient:
    """A connection to Redis speaking protocol v1 through the host library."""

    def __init__(self, url: str) -> None: ...
    @property
    def url(self) -> str:
        """The URL without its password."""
    def submit(
        self,
        kernel: str,
        items: Any,
        params: Optional[Mapping[str, Any]],
        pack: Optional[str],
        batch_size: Optional[int],
        ttl: float,
        time_limit: float,
        max_deliveries: int,
        lam: Optional[str],
        workers: Optional[int],
    ) -> Tuple[str, int, int, Optional[Tuple[int, int, List[str]]]]:
        """Submits a job: ``(job id, batches, items, Lambda report (invoked, retries, failed)
        or None)``."""
    def spec(self, job: str) -> Dict[str, Any]:
        """The job spec."""
    def status(self, job: str) -> Dict[str, Any]:
        """The state and counters."""
    def results(self, job: str) -> Tuple[_Values, List[_RawFailure]]:
        """Every result in input order, as :func:`run` returns them."""
    def failures(self, job: str) -> List[_RawFailure]:
        """The failed items recorded so far."""
    def cancel(self, job: str) -> Dict[str, Any]:
        """Cancels the job; its state and counters after."""
    def jobs(self) -> List[Tuple[str, Dict[str, Any]]]:
        """Every job, oldest first, with its state and counters."""
    def push_pack(self, path: str, name: str, tag: str) -> Tuple[str, int, List[str]]:
        """Checks and pushes a pack: its digest, size and kernel names."""
    def packs(self) -> List[Tuple[str, str, int, List[str]]]:
        """Every registry tag: ``(tag, digest, size, kernel names)``."""
