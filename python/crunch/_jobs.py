"""Jobs through Redis: :class:`Client` submits and lists jobs and kernel packs, :class:`Job`
follows one. The wire format and keys are those of docs/protocol.md (the host library's own
code writes and reads them), so jobs submitted here run on ``crunch worker`` and on Lambda, and
the CLI reads them, and the other way round."""

from __future__ import annotations

import html
import json
import os
import time
import warnings
from dataclasses import dataclass
from typing import Any, List, Mapping, NamedTuple, Optional, Union

from . import _native
from ._errors import (
    CrunchError,
    InvalidInputError,
    JobCancelledError,
    JobFailedError,
    WaitTimeoutError,
)
from ._progress import bar
from ._results import Failure, check_mode, finish

__all__ = ["Client", "Job", "Status", "Pack"]

FINAL_STATES = ("done", "done-with-failures", "failed", "cancelled")

DEFAULT_TTL = 86_400
DEFAULT_TIME_LIMIT = 60.0
DEFAULT_MAX_DELIVERIES = 3


@dataclass(frozen=True)
class Status:
    """A job's state and counters, as its ``crunch:{JOB}:progress`` hash holds them.

    ``state`` is ``submitting``, ``queued``, ``running``, ``done``, ``done-with-failures``,
    ``failed`` or ``cancelled``; ``error`` says why a job ``failed``.
    """

    state: str
    batches_done: int
    batches_dead: int
    batch_count: int
    items_ok: int
    items_failed: int
    item_count: int
    error: Optional[str] = None

    @property
    def finished(self) -> bool:
        """Whether the job will not change any more."""
        return self.state in FINAL_STATES

    @property
    def items_done(self) -> int:
        """Items with a result or an error."""
        return self.items_ok + self.items_failed

    def __str__(self) -> str:
        text = (
            f"{self.state}: {self.batches_done + self.batches_dead}/{self.batch_count} batches, "
            f"{self.items_ok} ok, {self.items_failed} failed of {self.item_count} items"
        )
        return f"{text} ({self.error})" if self.error else text


class Pack(NamedTuple):
    """A kernel pack in the registry: its ``NAME:TAG``, sha256 digest, size and kernels."""

    tag: str
    digest: str
    size: int
    kernels: List[str]


class Client:
    """A connection to the Redis that holds Crunch jobs and kernel packs.

    Args:
        url: ``redis://[user:password@]host:port[/db]``, ``rediss://...`` for TLS, or
            ``redis+cluster://host:port,host:port``; default ``$CRUNCH_REDIS``.

    Raises:
        RedisUnavailableError: Redis could not be reached (after retrying with backoff).
    """

    def __init__(self, url: Optional[str] = None) -> None:
        url = url or os.environ.get("CRUNCH_REDIS")
        if not url:
            raise InvalidInputError("no Redis URL: pass Client(url) or set CRUNCH_REDIS")
        self._native = _native.NativeClient(url)

    @property
    def url(self) -> str:
        """The Redis URL, without its password."""
        return self._native.url

    def __repr__(self) -> str:
        return f"<crunch.Client {self.url}>"

    def submit(
        self,
        kernel: str,
        items: Any,
        params: Optional[Mapping[str, Any]] = None,
        *,
        pack: Union[str, "os.PathLike[str]", None] = None,
        batch_size: Union[int, str] = "auto",
        ttl: Optional[float] = None,
        lam: Optional[str] = None,
        workers: Optional[int] = None,
        time_limit: Optional[float] = None,
        max_deliveries: int = DEFAULT_MAX_DELIVERIES,
    ) -> "Job":
        """Submits a job: writes its spec, its input batches and its queue to Redis, where
        ``crunch worker`` processes and Lambda functions take the batches.

        Args:
            kernel: the kernel's name.
            items: as for :func:`crunch.run`.
            params: the kernel's named parameters.
            pack: the pack the job pins by digest: default the standard pack (stored in the
                registry as ``crunch-standard:latest`` so that any worker can fetch it); a
                registry reference ``NAME[:TAG]`` or ``sha256:DIGEST`` (see
                :meth:`push_pack`); or the path of a component every worker can read.
            batch_size: items per batch, or ``"auto"``: a sample of the items runs through the
                pack first (about half a second) and ``crunch plan``'s model sizes the batches
                for this machine's cores, or with ``lam`` for the Lambda invocations (1769 MB);
                the job's spec records the plan it followed.
            ttl: seconds every key of the job lives (default one day).
            lam: start workers as asynchronous invocations of this Lambda function (the
                endpoint can be overridden with ``$CRUNCH_LAMBDA_ENDPOINT``).
            workers: invocations to start with ``lam`` (default: with ``batch_size="auto"`` the
                plan's fan-out, else one per batch; at most 10 either way).
            time_limit: seconds one batch may run (default 60).
            max_deliveries: deliveries after which a failing batch is dead-lettered.

        Returns:
            The :class:`Job`.
        """
        if batch_size == "auto":
            size = None
        elif isinstance(batch_size, int) and not isinstance(batch_size, bool) and batch_size > 0:
            size = batch_size
        else:
            raise InvalidInputError(f'batch_size must be a positive number or "auto"; got {batch_size!r}')
        if isinstance(pack, (bytes, bytearray)):
            raise InvalidInputError(
                "a job's pack is a registry reference or a path every worker can read: "
                "push the component with push_pack() and pass pack='NAME:TAG'"
            )
        if workers is not None and lam is None:
            raise InvalidInputError("workers counts Lambda invocations: pass lam=FUNCTION too")
        if workers is not None and workers < 1:
            raise InvalidInputError(f"workers must be at least 1; got {workers}")
        job_id, _batches, _items, report = self._native.submit(
            kernel,
            items,
            params,
            None if pack is None else os.fspath(pack),
            size,
            float(DEFAULT_TTL if ttl is None else ttl),
            float(DEFAULT_TIME_LIMIT if time_limit is None else time_limit),
            max_deliveries,
            lam,
            workers,
        )
        if report is not None:
            invoked, retries, failed = report
            if failed:
                warnings.warn(
                    f"job {job_id}: started {invoked} Lambda invocations of {lam} "
                    f"({retries} retries); {len(failed)} failed: {failed[0]}. The job is queued "
                    f"and loses nothing: run `crunch worker --job {job_id}` or invoke {lam} again",
                    RuntimeWarning,
                    stacklevel=2,
                )
        return Job(self, job_id, kernel)

    def job(self, job_id: str) -> "Job":
        """The job ``job_id`` (submitted from here, by the CLI or by any client).

        Raises:
            JobNotFoundError: Redis holds no such job.
        """
        spec = self._native.spec(job_id)
        return Job(self, job_id, spec["kernel"])

    def jobs(self) -> List["Job"]:
        """Every job in Redis, oldest first, each with its status as listed."""
        out = []
        for job_id, status in self._native.jobs():
            job = Job(self, job_id)
            job._last = Status(**status)
            out.append(job)
        return out

    def push_pack(self, path: Union[str, "os.PathLike[str]"], name: str, tag: str = "latest") -> Pack:
        """Checks the kernel pack component at ``path`` and stores it in the registry as
        ``name:tag``; jobs then name it by that reference (``pack="name:tag"``).

        Raises:
            InvalidInputError: the file is not a pack the host accepts (the reason is given).
        """
        digest, size, kernels = self._native.push_pack(os.fspath(path), name, tag)
        return Pack(f"{name}:{tag}", digest, size, list(kernels))

    def packs(self) -> List[Pack]:
        """Every tag in the kernel registry, sorted by tag."""
        return [Pack(t, d, s, list(k)) for t, d, s, k in self._native.packs()]


class Job:
    """A job in Redis. ``Client.submit``, ``Client.job`` and ``Client.jobs`` make them.

    In a notebook a Job shows its progress (as of when it is displayed).
    """

    def __init__(self, client: Client, job_id: str, kernel: Optional[str] = None) -> None:
        self.client = client
        self.id = job_id
        self._kernel = kernel
        self._last: Optional[Status] = None

    @property
    def kernel(self) -> str:
        """The job's kernel."""
        if self._kernel is None:
            self._kernel = self.spec()["kernel"]
        return self._kernel

    def spec(self) -> dict:
        """The job spec: kernel, pack digest, item and batch counts, TTL, creation time, and
        ``plan``: with ``batch_size="auto"`` the plan the batch size follows (its ``sample``
        and the ``estimate`` of the deployment it was chosen for, as ``crunch plan --json``
        prints them), else None."""
        spec = self.client._native.spec(self.id)
        if spec["plan"] is not None:
            spec["plan"] = json.loads(spec["plan"])
        return spec

    def status(self) -> Status:
        """The job's state and counters now."""
        self._last = Status(**self.client._native.status(self.id))
        return self._last

    def wait(self, progress: bool = True, timeout: Optional[float] = None, poll: float = 0.2) -> Status:
        """Waits until the job finishes, with a progress bar (tqdm's when it is installed).

        Returns:
            The final :class:`Status` (``done`` or ``done-with-failures``).

        Raises:
            JobFailedError: the job ended ``failed``.
            JobCancelledError: the job was cancelled.
            WaitTimeoutError: ``timeout`` seconds passed first (the job goes on).
        """
        start = time.monotonic()
        status = self.status()
        meter = bar(status.item_count, f"job {self.id}") if progress else None
        try:
            while True:
                if meter is not None and status.items_done > meter.n:
                    meter.update(status.items_done - meter.n)
                if status.finished:
                    break
                if timeout is not None and time.monotonic() - start >= timeout:
                    raise WaitTimeoutError(
                        f"job {self.id} is still {status} after {timeout} s", job=self.id
                    )
                time.sleep(poll)
                status = self.status()
        finally:
            if meter is not None:
                meter.close()
        self._raise_if_unsuccessful(status)
        return status

    def results(self, errors: str = "raise"):
        """Every result, in input order, with the ``errors`` modes of :func:`crunch.run`.

        Raises:
            CrunchError: the job has not finished (call :meth:`wait` first).
            JobFailedError, JobCancelledError: the job failed or was cancelled.
        """
        check_mode(errors)
        status = self.status()
        self._raise_if_unsuccessful(status)
        if not status.finished:
            raise CrunchError(f"job {self.id} is {status}: call wait() first", job=self.id)
        return finish(self.client._native.results(self.id), self.kernel, errors, self.id)

    def failures(self) -> List[Failure]:
        """The failed items recorded so far, in item order."""
        return [Failure(*f) for f in self.client._native.failures(self.id)]

    def cancel(self) -> Status:
        """Cancels the job: workers take no more of its batches; stored results stay."""
        self._last = Status(**self.client._native.cancel(self.id))
        return self._last

    def _raise_if_unsuccessful(self, status: Status) -> None:
        if status.state == "cancelled":
            raise JobCancelledError(f"job {self.id} was cancelled ({status})", job=self.id)
        if status.state == "failed":
            raise JobFailedError(f"job {self.id} failed: {status.error or status}", job=self.id)

    def __repr__(self) -> str:
        status = self._last if self._last is not None else self._try_status()
        kernel = f" {self._kernel}" if self._kernel else ""
        return f"<crunch.Job {self.id}{kernel}: {status if status else 'status unknown'}>"

    def _repr_html_(self) -> str:
        status = self._try_status()
        if status is None:
            return f"<b>crunch job</b> <code>{html.escape(self.id)}</code>: status unknown"
        done = status.batches_done + status.batches_dead
        color = {"done": "green", "done-with-failures": "darkorange"}.get(
            status.state, "firebrick" if status.state in ("failed", "cancelled") else "steelblue"
        )
        error = f"<br>{html.escape(status.error)}" if status.error else ""
        kernel = html.escape(self._kernel or "")
        return (
            f"<div><b>crunch job</b> <code>{html.escape(self.id)}</code> {kernel} "
            f"<span style='color:{color}'>{html.escape(status.state)}</span><br>"
            f"<progress value='{done}' max='{max(status.batch_count, 1)}' style='width:20em'></progress> "
            f"{done}/{status.batch_count} batches &middot; {status.items_ok} ok, "
            f"{status.items_failed} failed of {status.item_count} items{error}</div>"
        )

    def _try_status(self) -> Optional[Status]:
        try:
            return self.status()
        except CrunchError:
            return self._last
