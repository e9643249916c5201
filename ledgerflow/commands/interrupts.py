"""SIGTERM ends a verb as Ctrl-C does (exit 130), so its clean-up runs.

Python's default for SIGTERM ends the process on the spot: ``ledgerflow projections rebuild``
or ``audit`` stopped by a service manager, ``timeout`` or a cancelled CI job left its half-built
key space in Redis and its spawned worker processes running. Inside ``asyncio.run`` Ctrl-C
cancels the main task (the ``finally`` blocks delete what was half built, the worker processes
are stopped); this handler does the same for SIGTERM by calling whatever handles SIGINT now.
"""

from __future__ import annotations

import signal
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType


@contextmanager
def terminate_as_interrupt() -> Iterator[None]:
    """Within the block, SIGTERM is handled as SIGINT is at that moment (asyncio's handler in
    ``asyncio.run``: cancel the main task; otherwise ``KeyboardInterrupt``)."""

    def on_term(signum: int, frame: FrameType | None) -> None:
        handler = signal.getsignal(signal.SIGINT)
        if callable(handler):
            handler(signal.SIGINT, frame)
        else:  # SIGINT ignored (a background job) or not Python's: interrupt all the same
            raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, on_term)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)
