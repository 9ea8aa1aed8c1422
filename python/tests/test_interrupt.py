"""The GIL is released while kernels run, Ctrl-C stops a run (within its batches, not after
them), and a progress callback or bar follows the items done."""

from __future__ import annotations

import signal
import subprocess
import sys
import textwrap
import threading
import time

import numpy as np
import pytest

import crunch

# `spin_on_negative` loops until its batch's time limit: these runs take at least TIME_LIMIT
# seconds on any machine unless something stops them.
TIME_LIMIT = 120.0

CHILD = textwrap.dedent(
    """
    import sys, time
    import numpy as np
    import crunch

    pack, batches = sys.argv[1], int(sys.argv[2])
    items = -np.ones((batches * 2, 1))
    crunch.kernels(pack=pack)  # compiled before the clock starts
    print("running", flush=True)
    start = time.monotonic()
    try:
        crunch.run("spin_on_negative", items, pack=pack, batch_size=2, threads=2, time_limit={limit})
        print("finished", flush=True)
    except KeyboardInterrupt:
        print(f"interrupted after {{time.monotonic() - start:.2f}} s", flush=True)
    # The engine is still usable afterwards.
    print("after:", crunch.run("echo", np.ones((4, 1)), pack=pack).sum(), flush=True)
    """
).format(limit=TIME_LIMIT)


@pytest.mark.parametrize("batches", [1, 6], ids=["one batch on the calling thread", "batches on the pool"])
def test_ctrl_c_stops_a_long_run(hostile_pack, batches):
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD, str(hostile_pack), str(batches)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert child.stdout.readline().strip() == "running"
        time.sleep(1.0)
        child.send_signal(signal.SIGINT)
        out, err = child.communicate(timeout=TIME_LIMIT)
    finally:
        child.kill()
    assert child.returncode == 0, err
    first, after = out.strip().splitlines()
    assert first.startswith("interrupted after"), out
    # Without the stop, the first batch alone would spin until its time limit.
    assert float(first.split()[2]) < TIME_LIMIT
    assert after == "after: 4.0"


def test_the_gil_is_released_while_kernels_run(hostile_pack):
    """A Python thread keeps running while another thread's batch spins for seconds."""
    crunch.kernels(pack=hostile_pack)
    marks = {}

    def long_run():
        crunch.run("spin_on_negative", [[-1.0]], pack=hostile_pack, time_limit=2.0, errors="nan")
        marks["run_done"] = time.monotonic()

    worker = threading.Thread(target=long_run)
    worker.start()
    time.sleep(0.5)
    total = sum(i * i for i in range(100_000))  # pure Python: needs the GIL
    marks["python_done"] = time.monotonic()
    worker.join()
    assert total > 0
    assert marks["python_done"] < marks["run_done"]


def test_progress_reaches_every_item(hostile_pack, capsys):
    x = np.arange(1.0, 41.0).reshape(40, 1)
    seen = []
    values, _ = crunch._native.run("echo", x, None, 2, 5, None, None, str(hostile_pack), seen.append)
    assert values.shape == (40, 1)
    assert seen and seen[-1] == 40 and seen == sorted(seen)
    crunch.run("echo", x, pack=hostile_pack, batch_size=5, progress=True)
    assert "40/40" in capsys.readouterr().err


def test_progress_without_tqdm(hostile_pack, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "tqdm.auto", None)  # import fails as if not installed
    crunch.run("echo", np.ones((12, 1)), pack=hostile_pack, batch_size=3, progress=True)
    err = capsys.readouterr().err
    assert "echo: [" in err and "12/12 items" in err


def test_an_exception_in_the_progress_callback_stops_the_run(hostile_pack):
    """The first report comes after the first batch (quick); the second while the pool's
    batches spin: raising there stops them."""
    calls = []

    def fail_on_second_report(done):
        calls.append(done)
        if len(calls) == 2:
            raise RuntimeError(f"stop at {done}")

    items = -np.ones((8, 1))
    items[0] = 1.0
    start = time.monotonic()
    with pytest.raises(RuntimeError, match="stop at 1"):
        crunch._native.run(
            "spin_on_negative", items, None, 2, 1, TIME_LIMIT, None, str(hostile_pack), fail_on_second_report
        )
    assert time.monotonic() - start < TIME_LIMIT
