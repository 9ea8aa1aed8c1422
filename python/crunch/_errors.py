"""The exceptions of crunch: one base class, :class:`CrunchError`, and a subclass per cause."""

from __future__ import annotations

from typing import Optional, Sequence


class CrunchError(Exception):
    """Base class of every error crunch raises.

    When items failed, ``item`` is the first failed item's position in the input, ``failures``
    every failure (:class:`crunch.Failure`: item, batch, kind, message), ``kernel`` the kernel and
    ``job`` the job id (for results read from Redis); otherwise they are ``None`` and empty.
    """

    def __init__(
        self,
        message: str,
        *,
        kernel: Optional[str] = None,
        item: Optional[int] = None,
        failures: Sequence = (),
        job: Optional[str] = None,
    ) -> None:
        super().__init__(message)
        self.kernel = kernel
        self.item = item
        self.failures = list(failures)
        self.job = job


class InvalidInputError(CrunchError, ValueError):
    """Input the kernel cannot read: wrong number, rank or shape of tensors, a missing or
    malformed parameter, an unknown kernel, or an argument out of range."""


class DomainError(CrunchError, ValueError):
    """Well-formed input outside the kernel's mathematics (a singular system, a price outside
    the no-arbitrage bounds, ...)."""


class BatchFailedError(CrunchError):
    """A whole batch failed: the kernel trapped (panicked, overflowed its stack), ran past the
    time limit or exceeded the memory limit. The message names the kernel, batch and reason."""


class JobFailedError(CrunchError):
    """A job in Redis ended ``failed`` (for example its pack's digest did not match)."""


class JobCancelledError(JobFailedError):
    """A job in Redis was cancelled before it finished."""


class JobNotFoundError(CrunchError, LookupError):
    """Redis holds no job of that id: never submitted there, or expired with its TTL."""


class WaitTimeoutError(CrunchError, TimeoutError):
    """:meth:`crunch.Job.wait` gave up after its timeout; the job goes on."""


class RedisUnavailableError(CrunchError, ConnectionError):
    """Redis could not be reached (after retrying with backoff); the message says where."""


_BY_KIND = {
    "invalid-input": InvalidInputError,
    "unknown-kernel": InvalidInputError,
    "domain": DomainError,
    "batch-failed": BatchFailedError,
}


def items_failed(kernel: str, failures: Sequence, job: Optional[str] = None) -> CrunchError:
    """The exception for failed items: the class of the first failure's kind, naming that item
    and the kernel, carrying every failure."""
    first = failures[0]
    where = f"job {job}, " if job else ""
    message = (
        f"{where}kernel `{kernel}`, batch {first.batch}: item {first.item} failed "
        f"({first.kind}): {first.message}"
    )
    if len(failures) > 1:
        message += f" [{len(failures)} items failed in all: see .failures]"
    cls = _BY_KIND.get(first.kind, CrunchError)
    return cls(message, kernel=kernel, item=first.item, failures=failures, job=job)
