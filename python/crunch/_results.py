"""What a run or a job gives back: results, failures, and the three ``errors`` modes."""

from __future__ import annotations

from typing import Any, List, NamedTuple, Optional, Tuple, Union

import numpy as np

from ._errors import InvalidInputError, items_failed

__all__ = ["Failure", "Results", "ERROR_MODES"]

ERROR_MODES = ("raise", "nan", "return")

Values = Union[np.ndarray, List[Optional[np.ndarray]]]


class Failure(NamedTuple):
    """One failed item: its position in the input, the batch it ran in, the kind of error
    (``invalid-input``, ``domain``, ``unknown-kernel`` or ``batch-failed``) and the reason."""

    item: int
    batch: int
    kind: str
    message: str


class Results:
    """The results of a run or a job with ``errors="return"``.

    ``values`` is one ndarray whose first axis is the item axis when every result has the same
    shape (failed items' rows are NaN), else a list with one array per item (``None`` for a
    failed item). ``failures`` lists every failed item.
    """

    __slots__ = ("values", "failures", "kernel", "job")

    def __init__(
        self, values: Values, failures: List[Failure], kernel: str, job: Optional[str] = None
    ) -> None:
        self.values = values
        self.failures = failures
        self.kernel = kernel
        self.job = job

    def __len__(self) -> int:
        return len(self.values)

    @property
    def ok(self) -> np.ndarray:
        """A boolean array: True for every item that has a result."""
        mask = np.ones(len(self.values), dtype=bool)
        mask[[f.item for f in self.failures]] = False
        return mask

    def raise_for_failures(self) -> None:
        """Raises the exception ``errors="raise"`` would have raised, if any item failed."""
        if self.failures:
            raise items_failed(self.kernel, self.failures, self.job)

    def __repr__(self) -> str:
        n = len(self.values)
        shape = getattr(self.values, "shape", None)
        what = f"array{shape}" if shape is not None else f"list of {n}"
        return f"<crunch.Results {self.kernel}: {n - len(self.failures)} ok, {len(self.failures)} failed, {what}>"


def check_mode(errors: str) -> None:
    if errors not in ERROR_MODES:
        raise InvalidInputError(f"errors must be one of {', '.join(ERROR_MODES)}; got {errors!r}")


def finish(
    raw: Tuple[Any, list], kernel: str, errors: str, job: Optional[str] = None
) -> Union[Values, Tuple[Values, List[Failure]], Results]:
    """Applies the ``errors`` mode to the native ``(values, failures)`` pair."""
    values, failed = raw
    failures = [Failure(*f) for f in failed] if failed else []
    if errors == "raise":
        if failures:
            raise items_failed(kernel, failures, job)
        return values
    if errors == "nan":
        return values, failures
    return Results(values, failures, kernel, job)
