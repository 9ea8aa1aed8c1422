"""examples/python/crunch_package.py runs as documented, locally and through Redis."""

from __future__ import annotations

import subprocess
import sys

from conftest import ROOT


def test_the_package_example(redis_url, workers):
    workers.start()
    script = ROOT / "examples" / "python" / "crunch_package.py"
    done = subprocess.run(
        [sys.executable, str(script), "--count", "5000", "--redis", redis_url],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    out = done.stdout
    assert "5000 contracts priced, 1 failed" in out
    assert "identical to the local run: True" in out and "done-with-failures" in out
