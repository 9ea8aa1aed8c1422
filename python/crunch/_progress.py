"""Progress bars: tqdm's (``tqdm.auto``: a widget in notebooks) when it is installed, else a
plain one-line bar on stderr."""

from __future__ import annotations

import sys
import time
from typing import Any, Optional


class _LineBar:
    """A minimal stand-in for tqdm: ``[#####.....] 50/100 items`` redrawn at most ten times a
    second."""

    def __init__(self, total: int, desc: str, unit: str) -> None:
        self.total = total
        self.desc = desc
        self.unit = unit
        self.n = 0
        self._drawn = 0.0
        self._draw(force=True)

    def update(self, n: int = 1) -> None:
        self.n += n
        self._draw()

    def _draw(self, force: bool = False) -> None:
        now = time.monotonic()
        if not force and now - self._drawn < 0.1:
            return
        self._drawn = now
        width = 30
        filled = int(width * self.n / self.total) if self.total else width
        bar = "#" * filled + "." * (width - filled)
        sys.stderr.write(f"\r{self.desc}: [{bar}] {self.n}/{self.total} {self.unit}")
        sys.stderr.flush()

    def close(self) -> None:
        self._draw(force=True)
        sys.stderr.write("\n")
        sys.stderr.flush()


def bar(total: int, desc: str, unit: str = "items") -> Any:
    """A progress bar over ``total`` units: tqdm's when it is installed."""
    try:
        from tqdm.auto import tqdm
    except ImportError:
        return _LineBar(total, desc, unit)
    return tqdm(total=total, desc=desc, unit=unit, leave=True)


class Counter:
    """Moves a bar to an absolute count (the engine reports items done so far)."""

    def __init__(self, bar: Optional[Any]) -> None:
        self.bar = bar

    def __call__(self, done: int) -> None:
        if self.bar is not None and done > self.bar.n:
            self.bar.update(done - self.bar.n)
