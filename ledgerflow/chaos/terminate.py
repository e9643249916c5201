"""SIGTERM during the run's event loop: cancel the loop's main task, so its clean-up runs at an
``await`` (as Ctrl-C's does under ``asyncio.run``), then raise KeyboardInterrupt as the CLI's own
SIGTERM handler does outside the loop.

That handler raises KeyboardInterrupt wherever the main thread is: inside the event loop that can
be a library's callback, and a future it was about to resolve stays pending for ever, so the
loop's clean-up (closing the producer) waited on it and the run never reached the step that
stops its brokers and Redis (seen once in tests/integration/test_cli_chaos_stop.py: no exit two
minutes after SIGTERM, the edges and the worker still running)."""

from __future__ import annotations

import asyncio
import signal
import threading
from collections.abc import Coroutine
from typing import Any, TypeVar

T = TypeVar("T")


def run_until_terminated(main: Coroutine[Any, Any, T]) -> T:
    """``asyncio.run(main)``; SIGTERM (in the main thread) cancels ``main`` and then raises
    KeyboardInterrupt here. The SIGTERM handler in place before is back when this returns."""
    terminated = asyncio.Event()

    async def cancellable() -> T:
        task = asyncio.current_task()
        if task is None or threading.current_thread() is not threading.main_thread():
            return await main  # only the main thread gets signals: nothing to take over

        def cancel() -> None:
            terminated.set()
            task.cancel()

        loop = asyncio.get_running_loop()
        previous = signal.getsignal(signal.SIGTERM)
        loop.add_signal_handler(signal.SIGTERM, cancel)
        try:
            return await main
        finally:
            loop.remove_signal_handler(signal.SIGTERM)  # leaves SIG_DFL: the one before goes back
            if previous is not None:  # None: a handler not set from Python, nothing to put back
                signal.signal(signal.SIGTERM, previous)

    try:
        return asyncio.run(cancellable())
    except asyncio.CancelledError:
        if terminated.is_set():
            raise KeyboardInterrupt from None
        raise
