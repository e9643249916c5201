"""A worker started with another usage window size than ``usage.windows`` was written with refuses,
on the real stack: one line naming both sizes, exit code 1, nothing written again (before, its
re-fold wrote the history a second time under new windows)."""

from __future__ import annotations

import asyncio
import time
import uuid
from pathlib import Path

from ledgerflow.config import Settings
from ledgerflow.contracts.events import Event, new_event
from ledgerflow.contracts.payloads import MessageSubmitted
from ledgerflow.kafka.logs import read_all
from ledgerflow.traffic import Publisher
from tests.support.processes import start

TIMEOUT_S = 60.0


def turns(at_s: list[int], conv: str | None = None, tokens: int = 5) -> list[Event]:
    """Turns of one conversation (a fresh one by default) at the given seconds."""
    conv = conv or f"conv-{uuid.uuid4().hex[:6]}"
    return [
        new_event(
            "MessageSubmitted",
            tenant="acme",
            subject=conv,
            producer="test",
            occurred_at_micros=s * 1_000_000,
            payload=MessageSubmitted(f"t{s}", "user", "ok", "slm-1", tokens),
        )
        for s in at_s
    ]


def publish(settings: Settings, events: list[Event]) -> None:
    async def run() -> None:
        async with Publisher(settings) as pub:
            for e in events:
                await pub.send(e)
            await pub.flush()

    asyncio.run(run())


def windows(settings: Settings) -> list[bytes]:
    return [raw.value or b"" for raw in asyncio.run(read_all(settings, settings.topic("usage.windows")))]


def test_a_worker_with_another_window_size_refuses_and_writes_nothing(
    settings: Settings, log_dir: Path
) -> None:
    now_s = time.time_ns() // 1_000_000_000
    first = start(
        settings,
        "worker-1s",
        "worker",
        "--agents",
        "usage",
        log_dir=log_dir,
        extra_env={"LEDGERFLOW_USAGE_WINDOW_S": "1", "LEDGERFLOW_USAGE_LATENESS_S": "0"},
    )
    try:
        publish(settings, turns([now_s - 30, now_s - 29, now_s - 20]))
        deadline = time.monotonic() + TIMEOUT_S
        while len(written := windows(settings)) < 3:  # the last one closed by the wall clock
            assert time.monotonic() < deadline, f"windows not written: {len(written)}\n{first.log_tail()}"
            time.sleep(0.5)
    finally:
        assert first.stop() == 0
    second = start(
        settings,
        "worker-2s",
        "worker",
        "--agents",
        "usage",
        log_dir=log_dir,
        extra_env={"LEDGERFLOW_USAGE_WINDOW_S": "2", "LEDGERFLOW_USAGE_LATENESS_S": "0"},
    )
    try:
        publish(settings, turns([now_s - 10]))  # the first batch reads usage.windows back
        deadline = time.monotonic() + TIMEOUT_S
        while second.popen.poll() is None:
            assert time.monotonic() < deadline, f"the worker did not refuse\n{second.log_tail()}"
            time.sleep(0.5)
        assert second.popen.returncode == 1, second.log_tail()
        assert "LEDGERFLOW_USAGE_WINDOW_S is 2 s but usage.windows holds windows of 1 s" in second.log_tail()
        assert windows(settings) == written, "nothing written at the new size"
    finally:
        second.stop()
