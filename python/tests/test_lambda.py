"""`Client.submit(..., lam=FUNCTION)` fans a job out to Lambda: here cargo-lambda's Runtime API
emulator with the real `bootstrap` behind it, as in the host's own Lambda tests."""

from __future__ import annotations

import os
import socket
import subprocess
import time

import numpy as np
import pytest

import crunch
from conftest import ROOT, TARGET, built, free_port
from test_local import contracts

# The function name the emulator gives a runtime started with --only-lambda-apis.
FUNCTION = "_"


def wait_for_port(port: int, what: str) -> None:
    deadline = time.monotonic() + 60
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            if time.monotonic() > deadline:
                raise RuntimeError(f"{what} did not open port {port} within 60 s")
            time.sleep(0.05)


@pytest.fixture
def lambda_endpoint(redis_url, tmp_path):
    """The emulator's Invoke API endpoint, with one bootstrap serving the function."""
    bootstrap_bin = built(TARGET / "release" / "bootstrap")
    port = free_port()
    emulator = subprocess.Popen(
        ["cargo", "lambda", "watch", "--only-lambda-apis", "-A", "127.0.0.1", "-P", str(port)],
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    processes = [emulator]
    try:
        wait_for_port(port, "cargo lambda watch")
        log = open(tmp_path / "bootstrap.log", "w")
        processes.append(
            subprocess.Popen(
                [str(bootstrap_bin)],
                env={
                    **os.environ,
                    "AWS_LAMBDA_RUNTIME_API": f"http://127.0.0.1:{port}/.rt",
                    "AWS_LAMBDA_FUNCTION_NAME": FUNCTION,
                    "AWS_LAMBDA_FUNCTION_VERSION": "1",
                    "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": "2048",
                    "CRUNCH_REDIS": redis_url,
                    "CRUNCH_TIME_BUDGET_MS": "60000",
                },
                stdout=log,
                stderr=log,
            )
        )
        yield f"http://127.0.0.1:{port}"
    finally:
        for process in processes:
            process.kill()
            process.wait()


def test_a_job_fanned_out_to_lambda(redis_url, lambda_endpoint, monkeypatch):
    monkeypatch.setenv("CRUNCH_LAMBDA_ENDPOINT", lambda_endpoint)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "test")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "test")
    monkeypatch.setenv("AWS_REGION", "us-east-1")
    c = contracts(2000)
    job = crunch.Client(redis_url).submit("black_scholes", c, batch_size=50, lam=FUNCTION, workers=3)
    status = job.wait(progress=False, timeout=120)
    assert status.state == "done" and status.batches_done == 40
    assert np.array_equal(job.results(), crunch.run("black_scholes", c))


def test_workers_without_a_function_is_refused(redis_url):
    with pytest.raises(crunch.InvalidInputError, match="lam"):
        crunch.Client(redis_url).submit("black_scholes", contracts(3), workers=2)
