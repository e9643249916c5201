"""SIGTERM during the chaos run's event loop cancels the loop's main task instead of raising
KeyboardInterrupt wherever the main thread is (ledgerflow/chaos/terminate.py). The signal is sent
by the test process to itself from inside a loop callback: raised there, the interrupt would cut
the callback short and leave the future it resolves pending, and the clean-up awaiting it hang."""

from __future__ import annotations

import asyncio
import os
import signal
from types import FrameType

import pytest

from ledgerflow.chaos.terminate import run_until_terminated


def _the_clis_handler(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt  # as ledgerflow/chaos/cli.py installs it for the whole run


def test_sigterm_inside_a_callback_cancels_the_run_and_its_clean_up_completes() -> None:
    cleaned: list[str] = []

    async def main() -> None:
        loop = asyncio.get_running_loop()
        resolved: asyncio.Future[str] = loop.create_future()

        def callback() -> None:
            os.kill(os.getpid(), signal.SIGTERM)  # arrives while a library callback runs
            resolved.set_result("resolved")

        loop.call_soon(callback)
        try:
            await asyncio.sleep(60)
        finally:
            cleaned.append(await asyncio.wait_for(resolved, 5))

    previous = signal.signal(signal.SIGTERM, _the_clis_handler)
    try:
        with pytest.raises(KeyboardInterrupt):
            run_until_terminated(main())
        assert cleaned == ["resolved"]
        assert signal.getsignal(signal.SIGTERM) is _the_clis_handler  # back for the rest of the run
    finally:
        signal.signal(signal.SIGTERM, previous)


def test_a_run_that_ends_returns_its_value_and_keeps_the_handler() -> None:
    async def main() -> int:
        await asyncio.sleep(0)
        return 7

    previous = signal.signal(signal.SIGTERM, _the_clis_handler)
    try:
        assert run_until_terminated(main()) == 7
        assert signal.getsignal(signal.SIGTERM) is _the_clis_handler
    finally:
        signal.signal(signal.SIGTERM, previous)


def test_a_cancellation_that_is_not_sigterm_stays_a_cancellation() -> None:
    async def main() -> None:
        task = asyncio.current_task()
        assert task is not None
        task.get_loop().call_soon(task.cancel)
        await asyncio.sleep(60)

    with pytest.raises(asyncio.CancelledError):
        run_until_terminated(main())
