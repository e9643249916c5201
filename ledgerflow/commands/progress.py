"""Progress of long verbs on stderr: a rich bar on a terminal, plain lines at most every few
seconds otherwise (CI logs, redirected output), nothing with a total of zero.

``bar(label, total)`` yields ``advance(n=1)``; ``total`` None counts without an end.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TextIO

PLAIN_EVERY_S = 5.0


@contextmanager
def bar(
    label: str, total: int | None, *, stream: TextIO | None = None, tty: bool | None = None
) -> Iterator[Callable[..., None]]:
    out = sys.stderr if stream is None else stream
    if tty is None:
        tty = out.isatty()
    if tty:
        with _rich(label, total, out) as advance:
            yield advance
        return
    plain = PlainProgress(label, total, out)
    yield plain.advance
    plain.finish()


@contextmanager
def _rich(label: str, total: int | None, out: TextIO) -> Iterator[Callable[..., None]]:
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    console = Console(file=out)
    columns = [TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn()]
    with Progress(*columns, console=console, transient=False) as progress:
        task = progress.add_task(label, total=total)

        def advance(n: int = 1, *, total: int | None = None) -> None:
            if total is not None:
                progress.update(task, total=total)
            progress.advance(task, n)

        yield advance


class PlainProgress:
    """``label: done/total (rate/s)`` lines, at most one per ``PLAIN_EVERY_S``, and a last one."""

    def __init__(
        self, label: str, total: int | None, out: TextIO, clock: Callable[[], float] = time.monotonic
    ):
        self.label, self.total, self.out, self.clock = label, total, out, clock
        self.done = 0
        self.began = self.last = clock()

    def advance(self, n: int = 1, *, total: int | None = None) -> None:
        if total is not None:
            self.total = total
        self.done += n
        if self.clock() - self.last >= PLAIN_EVERY_S:
            self.last = self.clock()
            self.out.write(self.line() + "\n")
            self.out.flush()

    def line(self) -> str:
        rate = self.done / max(self.clock() - self.began, 1e-9)
        of = f"/{self.total}" if self.total is not None else ""
        return f"{self.label}: {self.done}{of} ({rate:,.0f}/s)"

    def finish(self) -> None:
        if self.done and self.clock() - self.began >= PLAIN_EVERY_S:  # short work needs no summary line
            self.out.write(self.line() + "\n")
            self.out.flush()
