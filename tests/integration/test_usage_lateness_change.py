"""A worker restarted with another ``LEDGERFLOW_USAGE_LATENESS_S`` charges each turn once, on the real
stack. Before, its re-fold took a late turn the first worker had written as a ``LateUsage`` delta for
a correction of its window (the larger lateness left the window remembered) and wrote that too: a
reader's sum (latest revision + deltas) counted the turn twice."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Callable
from pathlib import Path

from ledgerflow.config import Settings
from ledgerflow.contracts import codec
from ledgerflow.contracts.events import Event, new_event
from ledgerflow.contracts.payloads import MessageSubmitted, UsageWindow
from ledgerflow.kafka.logs import read_all
from ledgerflow.traffic import Publisher
from tests.support.processes import Process, start

TIMEOUT_S = 60.0
S = 1_000_000


def turn(conv: str, at_micros: int, tokens: int) -> Event:
    return new_event(
        "MessageSubmitted",
        tenant="acme",
        subject=conv,
        producer="test",
        occurred_at_micros=at_micros,
        payload=MessageSubmitted(f"t{uuid.uuid4().hex[:6]}", "user", "ok", "slm-1", tokens),
    )


def publish(settings: Settings, *events: Event) -> None:
    async def run() -> None:
        async with Publisher(settings) as pub:
            for e in events:
                await pub.send(e)
            await pub.flush()

    asyncio.run(run())


def records(settings: Settings) -> list[Event]:
    return [
        codec.decode(raw.value or b"")
        for raw in asyncio.run(read_all(settings, settings.topic("usage.windows")))
    ]


def charged(written: list[Event]) -> dict[int, int]:
    """Tokens per window start as a reader sums them: latest revision per (window, source) + deltas."""
    latest: dict[tuple[int, str], tuple[int, int]] = {}
    sums: dict[int, int] = {}
    for record in written:
        p = record.payload
        assert isinstance(p, UsageWindow)
        if p.revision < 0:
            sums[p.window_start] = sums.get(p.window_start, 0) + p.tokens
        elif latest.get((p.window_start, record.producer), (-1, 0))[0] < p.revision:
            latest[(p.window_start, record.producer)] = (p.revision, p.tokens)
    for (window, _), (_, tokens) in latest.items():
        sums[window] = sums.get(window, 0) + tokens
    return sums


def worker(settings: Settings, log_dir: Path, name: str, lateness_s: int) -> Process:
    env = {"LEDGERFLOW_USAGE_WINDOW_S": "1", "LEDGERFLOW_USAGE_LATENESS_S": str(lateness_s)}
    return start(settings, name, "worker", "--agents", "usage", log_dir=log_dir, extra_env=env)


def wait_for(
    settings: Settings, proc: Process, done: Callable[[list[Event]], bool], what: str
) -> list[Event]:
    deadline = time.monotonic() + TIMEOUT_S
    while True:
        written = records(settings)
        if done(written):
            return written
        assert time.monotonic() < deadline, f"{what}: {len(written)} records\n{proc.log_tail()}"
        assert proc.popen.poll() is None, f"the worker exited\n{proc.log_tail()}"
        time.sleep(0.5)


def test_a_larger_lateness_after_a_restart_does_not_count_a_late_delta_again(
    settings: Settings, log_dir: Path
) -> None:
    now = time.time_ns() // 1000 // S * S
    old = now - 5000 * S  # a window past retention (1 h) once the watermark is near now
    conv = f"conv-{uuid.uuid4().hex[:6]}"
    first = worker(settings, log_dir, "worker-lateness-0", 0)
    try:
        publish(settings, turn(conv, old, 5), turn(conv, now - 10 * S, 5))
        wait_for(settings, first, lambda w: len(w) >= 2, "windows not written")
        publish(settings, turn(conv, old + 200_000, 7))  # late past retention: a delta of 7
        written = wait_for(
            settings,
            first,
            lambda w: any(isinstance(r.payload, UsageWindow) and r.payload.revision < 0 for r in w),
            "no delta",
        )
    finally:
        assert first.stop() == 0
    assert charged(written)[old] == 12
    second = worker(settings, log_dir, "worker-lateness-4000", 4000)
    try:
        # Its first batch is re-folded with the partition, to its end: the window corrected to 16.
        publish(settings, turn(conv, old + 400_000, 11))
        written = wait_for(settings, second, lambda w: charged(w).get(old, 0) >= 5 + 7 + 11, "11 not charged")
        time.sleep(2)  # whatever else the restart writes
        written = records(settings)
    finally:
        assert second.stop() == 0
    assert charged(written)[old] == 5 + 7 + 11, [(r.payload, r.event_id) for r in written]
