"""Kernels on this machine: :func:`run` and :func:`kernels`."""

from __future__ import annotations

import os
from typing import Any, List, Mapping, NamedTuple, Optional, Union

from . import _native
from ._progress import Counter, bar
from ._results import check_mode, finish

__all__ = ["run", "kernels", "Kernel"]

PackArg = Union[str, "os.PathLike[str]", bytes, None]


class Kernel(NamedTuple):
    """A kernel of a pack: the name :func:`run` takes, and what it computes."""

    name: str
    summary: str


def run(
    kernel: str,
    items: Any,
    params: Optional[Mapping[str, Any]] = None,
    *,
    threads: Optional[int] = None,
    batch_size: Optional[int] = None,
    time_limit: Optional[float] = None,
    memory_limit: Optional[int] = None,
    pack: PackArg = None,
    errors: str = "raise",
    progress: bool = False,
):
    """Runs ``kernel`` on every item of ``items`` on this machine, many batches in parallel,
    each in its own sandboxed WebAssembly instance.

    Args:
        kernel: the kernel's name, e.g. ``"black_scholes"`` (see :func:`kernels`).
        items: an ndarray whose first axis is the item axis (a ``(n, 6)`` array is n items of
            one 6-vector; C-contiguous float64 is read in place, anything else is converted
            once), or a sequence of items, each an array-like (one input tensor) or a tuple of
            array-likes (several input tensors, e.g. ``(X, y)`` for ``ols``).
        params: the kernel's named parameters, e.g. ``{"q": [5, 50, 95]}``.
        threads: threads running batches (default: every core).
        batch_size: items per batch (default: about eight batches per thread, at most 4096
            items and 512 KiB of input each).
        time_limit: seconds one batch may run before it is stopped and fails (default 60).
        memory_limit: MiB of memory one batch may use (default 1024).
        pack: another kernel pack: the path of a component (.wasm) or its bytes (default: the
            standard pack, built into this package).
        errors: what to do with failed items. ``"raise"`` (default): raise on the first failed
            item (:class:`InvalidInputError`, :class:`DomainError` or
            :class:`BatchFailedError`, naming the item and kernel, with every failure in
            ``.failures``). ``"nan"``: return ``(values, failures)``, failed rows NaN.
            ``"return"``: return a :class:`Results` with both.
        progress: show a progress bar (tqdm's when it is installed).

    Returns:
        One ndarray (first axis: items) when every result has the same shape, else a list of
        arrays; with ``errors="nan"`` a ``(values, failures)`` tuple; with ``"return"`` a
        :class:`Results`.

    The GIL is released while kernels run; Ctrl-C stops every batch and raises
    KeyboardInterrupt.
    """
    check_mode(errors)
    counter = None
    if progress:
        counter = Counter(bar(_count(items), kernel))
    try:
        raw = _native.run(
            kernel, items, params, threads, batch_size, time_limit, memory_limit, pack, counter
        )
        if counter is not None:
            counter(len(raw[0]))
    finally:
        if counter is not None:
            counter.bar.close()
    return finish(raw, kernel, errors)


def kernels(pack: PackArg = None) -> List[Kernel]:
    """The kernels of ``pack`` (default: the standard pack), in the pack's order."""
    return [Kernel(*k) for k in _native.kernels(pack)]


def _count(items: Any) -> int:
    try:
        return len(items)
    except TypeError:
        return 0
