"""A one-line progress bar on stderr with rate and ETA, for long replays.

Shown only when stderr is a terminal (``show=None``) or when forced (``show=True``): CI logs
and redirected output stay clean. ``render`` is pure; ``Progress`` redraws at most every ``interval`` seconds.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from typing import TextIO

WIDTH = 24


def render(label: str, done: int, total: int, elapsed: float) -> str:
    """``label [#####-----]  12,000/20,000 records  8,000 rec/s  ETA 0:01``."""
    rate = done / elapsed if elapsed > 0 else 0.0
    if total > 0:
        share = min(done / total, 1.0)
        filled = int(share * WIDTH)
        bar = "[" + "#" * filled + "-" * (WIDTH - filled) + "]"
        left = max(total - done, 0)
        eta = _clock(left / rate) if rate > 0 else "?"
        return f"{label} {bar} {done:,}/{total:,} records  {rate:,.0f} rec/s  ETA {eta}"
    return f"{label} {done:,} records  {rate:,.0f} rec/s"


def _clock(seconds: float) -> str:
    whole = int(seconds + 0.5)
    hours, rest = divmod(whole, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


class Progress:
    def __init__(
        self,
        label: str,
        total: int = 0,
        *,
        stream: TextIO | None = None,
        show: bool | None = None,
        interval: float = 0.25,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.stream = stream if stream is not None else sys.stderr
        self.enabled = _is_tty(self.stream) if show is None else show
        self.label, self.total, self.done = label, total, 0
        self._interval, self._clock = interval, clock
        self._began = clock()
        self._drawn = float("-inf")

    def advance(self, n: int = 1) -> None:
        self.update(self.done + n)

    def update(self, done: int, total: int | None = None) -> None:
        self.done = done
        if total is not None:
            self.total = total
        now = self._clock()
        if self.enabled and now - self._drawn >= self._interval:
            self._drawn = now
            self._draw(now)

    def finish(self) -> None:
        if self.enabled:
            self._draw(self._clock())
            self.stream.write("\n")
            self.stream.flush()

    def _draw(self, now: float) -> None:
        self.stream.write("\r" + render(self.label, self.done, self.total, now - self._began) + "\x1b[K")
        self.stream.flush()


def _is_tty(stream: TextIO) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False
