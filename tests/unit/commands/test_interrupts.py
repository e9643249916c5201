"""SIGTERM ends `rebuild` and `audit` as Ctrl-C does: inside asyncio.run the main task is
cancelled and its clean-up runs; the default handler (end the process at once) left half-built
key spaces and orphaned worker processes (tests/integration/test_rebuild_interrupted.py)."""

from __future__ import annotations

import asyncio
import os
import signal
import time

import pytest

from ledgerflow.commands.interrupts import terminate_as_interrupt


def test_sigterm_inside_asyncio_run_cancels_the_main_task_and_its_clean_up_runs() -> None:
    log: list[str] = []

    async def verb() -> None:
        try:
            asyncio.get_running_loop().call_later(0.05, os.kill, os.getpid(), signal.SIGTERM)
            await asyncio.sleep(10)
            log.append("ran on")
        finally:
            await asyncio.sleep(0.01)  # an await in the clean-up is not cancelled again
            log.append("cleaned up")

    with terminate_as_interrupt(), pytest.raises(KeyboardInterrupt):
        asyncio.run(verb())
    assert log == ["cleaned up"]


def test_sigterm_outside_an_event_loop_is_a_keyboard_interrupt() -> None:
    with terminate_as_interrupt(), pytest.raises(KeyboardInterrupt):
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(1.0)  # the handler runs before this ends


def test_the_previous_sigterm_handler_comes_back() -> None:
    before = signal.getsignal(signal.SIGTERM)
    with terminate_as_interrupt():
        assert signal.getsignal(signal.SIGTERM) is not before
    assert signal.getsignal(signal.SIGTERM) is before
