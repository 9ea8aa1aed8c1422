"""Fixtures of the package's test suite: the repository's built parts (the `crunch` binary,
test and example kernel packs from `just build`), a private redis-server on a free loopback
port, and `crunch worker` processes on it."""

from __future__ import annotations

import os
import socket
import subprocess
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
TARGET = Path(os.environ.get("CARGO_TARGET_DIR", ROOT / "target"))
COMPONENTS = TARGET / "wasm32-wasip2" / "component"


def built(path: Path) -> Path:
    """A file `just build` makes; a clear failure (not a skip) when it is missing."""
    if not path.exists():
        pytest.fail(f"{path} is missing: run `just build` first")
    return path


@pytest.fixture(scope="session")
def crunch_bin() -> Path:
    return built(TARGET / "release" / "crunch")


@pytest.fixture(scope="session")
def hostile_pack() -> Path:
    """Kernels that misbehave on purpose (tests/components/hostile)."""
    return built(COMPONENTS / "crunch_hostile_kernels.wasm")


@pytest.fixture(scope="session")
def risk_pack() -> Path:
    """The example pack of one's own (examples/custom-kernel), version 1."""
    return built(COMPONENTS / "crunch_example_risk_v1.wasm")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class RedisServer:
    """A private `redis-server` without persistence on a free loopback port."""

    def __init__(self) -> None:
        self.port = free_port()
        self.process = subprocess.Popen(
            ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        self.url = f"redis://127.0.0.1:{self.port}"
        deadline = time.monotonic() + 10
        while True:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1) as s:
                    s.sendall(b"PING\r\n")
                    if s.recv(16).startswith(b"+PONG"):
                        return
            except OSError:
                pass
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"redis-server on port {self.port} did not answer within 10 s")
            time.sleep(0.05)

    def stop(self) -> None:
        self.process.kill()
        self.process.wait()


@pytest.fixture
def redis_url():
    server = RedisServer()
    try:
        yield server.url
    finally:
        server.stop()


class Workers:
    """`crunch worker` processes on one Redis, stopped at the end of the test."""

    def __init__(self, crunch_bin: Path, url: str) -> None:
        self.crunch_bin = crunch_bin
        self.url = url
        self.processes: list[subprocess.Popen] = []

    def start(self, threads: int = 2) -> subprocess.Popen:
        process = subprocess.Popen(
            [str(self.crunch_bin), "worker", "--threads", str(threads)],
            env={**os.environ, "CRUNCH_REDIS": self.url},
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        self.processes.append(process)
        return process

    def stop(self) -> None:
        for process in self.processes:
            process.kill()
            process.wait()


@pytest.fixture
def workers(crunch_bin, redis_url):
    pool = Workers(crunch_bin, redis_url)
    try:
        yield pool
    finally:
        pool.stop()


def cli(crunch_bin: Path, *args: str, url: str | None = None, check: bool = True) -> subprocess.CompletedProcess:
    """Runs the `crunch` CLI; its stdout and stderr as text."""
    env = dict(os.environ)
    if url:
        env["CRUNCH_REDIS"] = url
    result = subprocess.run([str(crunch_bin), *args], env=env, capture_output=True, text=True, timeout=300)
    if check and result.returncode != 0:
        raise AssertionError(f"crunch {' '.join(args)} exited {result.returncode}:\n{result.stderr}")
    return result
