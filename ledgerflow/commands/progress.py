"""Progress of long verbs on stderr: a rich bar on a terminal, plain lines at most every few
seconds otherwise (CI logs, redirected output).

``with bar(label, total) as update: update(done)`` — ``done`` is the count so far; ``total``
None (or 0) counts without an end; ``update(done, total)`` sets a total learnt later.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TextIO

PLAIN_EVERY_S = 5.0
Update = Callable[..., None]


@contextmanager
def bar(
    label: str, total: int | None, *, stream: TextIO | None = None, tty: bool | None = None
) -> Iterator[Update]:
    out = sys.stderr if stream is None else stream
    if tty is None:
        tty = out.isatty()
    if tty:
        with _rich(label, total, out) as update:
            yield update
        return
    plain = PlainProgress(label, total, out)
    yield plain.update
    plain.finish()


@contextmanager
def _rich(label: str, total: int | None, out: TextIO) -> Iterator[Update]:
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    columns = [TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn()]
    with Progress(*columns, console=Console(file=out), transient=False) as progress:
        task = progress.add_task(label, total=total or None)

        def update(done: int, total: int | None = None) -> None:
            if total:
                progress.update(task, total=total)
            progress.update(task, completed=done)

        yield update


class PlainProgress:
    """``label: done/total (rate/s)`` lines, at most one per ``PLAIN_EVERY_S``, and a last one
    when the work took that long."""

    def __init__(
        self, label: str, total: int | None, out: TextIO, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.label, self.total, self.out, self.clock = label, total or None, out, clock
        self.done = 0
        self.began = self.last = clock()

    def update(self, done: int, total: int | None = None) -> None:
        self.done = done
        self.total = total or self.total
        if self.clock() - self.last >= PLAIN_EVERY_S:
            self.last = self.clock()
            self._write()

    def line(self) -> str:
        rate = self.done / max(self.clock() - self.began, 1e-9)
        of = f"/{self.total}" if self.total else ""
        return f"{self.label}: {self.done}{of} ({rate:,.0f}/s)"

    def finish(self) -> None:
        if self.done and self.clock() - self.began >= PLAIN_EVERY_S:
            self._write()

    def _write(self) -> None:
        self.out.write(self.line() + "\n")
        self.out.flush()
