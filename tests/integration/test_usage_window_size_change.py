"""The documented way to change the usage window size (docs/usage.md, "Changing the window size"),
run as an operator would: stop the workers, delete ``usage.windows``, start them with the new
size, rebuild the read models. Every window is then written again at the new size from the start
of ``conversation.events``, each turn's tokens counted once, and the audit at the new size is
clean (the read models equal a rebuild: no window of the old size is left in them)."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections import Counter
from pathlib import Path

import pytest
from aiokafka.admin import AIOKafkaAdminClient

from ledgerflow.audit.cli import audit_cli
from ledgerflow.config import Settings
from ledgerflow.contracts import codec
from ledgerflow.contracts.payloads import UsageWindow
from ledgerflow.errors import InfrastructureError
from ledgerflow.kafka.logs import read_all
from ledgerflow.metrics import WORKER_METRICS_ENV
from ledgerflow.topics import CONVERSATION_EVENTS, USAGE_WINDOWS
from tests.integration.clikit import run_cli
from tests.integration.test_usage_window_size import publish, turns
from tests.support.processes import Process, start

TIMEOUT_S = 90.0


def _windows(settings: Settings) -> list[tuple[str, UsageWindow]]:
    """(writer, window) of every ``usage.windows`` record: the writer names the source partition."""
    try:
        records = asyncio.run(read_all(settings, settings.topic(USAGE_WINDOWS)))
    except InfrastructureError:  # not created yet: the worker creates it at start
        return []
    events = [codec.decode(r.value or b"") for r in records]
    return [(e.producer, e.payload) for e in events if isinstance(e.payload, UsageWindow)]


def _worker(settings: Settings, log_dir: Path, size_s: int) -> Process:
    env = {
        "LEDGERFLOW_USAGE_WINDOW_S": str(size_s),
        "LEDGERFLOW_USAGE_LATENESS_S": "0",
        WORKER_METRICS_ENV: "off",
    }
    return start(settings, f"worker-{size_s}s", "worker", log_dir=log_dir, extra_env=env)


def _wait_windows(
    settings: Settings, worker: Process, expected: Counter[tuple[int, int]]
) -> list[UsageWindow]:
    """Until ``usage.windows`` holds windows of every (start, size) in ``expected``, with totals."""
    deadline = time.monotonic() + TIMEOUT_S
    while True:
        written = _windows(settings)
        found = Counter(
            (w.window_start, w.window_end - w.window_start) for _, w in written if w.revision >= 0
        )
        if set(found) >= set(expected):
            return written
        assert worker.popen.poll() is None, worker.log_tail()
        assert time.monotonic() < deadline, (
            f"windows {sorted(found)} not {sorted(expected)}\n{worker.log_tail()}"
        )
        time.sleep(0.5)


def _delete_topic(settings: Settings, topic: str) -> None:
    async def run() -> None:
        admin = AIOKafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap)
        await admin.start()
        try:
            await admin.delete_topics([topic])
            while topic in await admin.list_topics():
                await asyncio.sleep(0.2)
        finally:
            await admin.close()

    asyncio.run(run())


def _charged(windows: list[tuple[str, UsageWindow]]) -> int:
    """Tokens the windows charge: each window's latest revision (a correction revises it); a
    window is its writer's (source partition), model and bounds."""
    latest: dict[tuple[str, int, int, str], UsageWindow] = {}
    for writer, w in windows:
        key = (writer, w.window_start, w.window_end, w.model)
        if w.revision >= 0 and (key not in latest or w.revision >= latest[key].revision):
            latest[key] = w
    return sum(w.tokens for w in latest.values())


@pytest.mark.timeout(300)
def test_the_window_size_change_procedure_writes_every_window_again_once(
    settings: Settings, log_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    now_s = time.time_ns() // 1_000_000_000
    convs = [f"conv-{uuid.uuid4().hex[:6]}" for _ in range(2)]
    seconds = [now_s - 40, now_s - 39, now_s - 36, now_s - 33, now_s - 30]
    events = turns(seconds, convs[0], 7) + turns([s + 1 for s in seconds], convs[1], 11)
    total = sum(e.payload.tokens or 0 for e in events)  # type: ignore[union-attr]

    def expected(size_s: int) -> Counter[tuple[int, int]]:
        return Counter(
            (e.occurred_at // (size_s * 1_000_000) * size_s * 1_000_000, size_s * 1_000_000) for e in events
        )

    first = _worker(settings, log_dir, 1)
    try:
        publish(settings, events)
        before = _wait_windows(settings, first, expected(1))
    finally:
        assert first.stop() == 0
    assert _charged(before) == total

    # The procedure: workers stopped; delete usage.windows; start them with the new size; rebuild.
    _delete_topic(settings, settings.topic(USAGE_WINDOWS))
    second = _worker(settings, log_dir, 2)
    try:
        after = _wait_windows(settings, second, expected(2))
        assert {w.window_end - w.window_start for _, w in after} == {2_000_000}, "a window of the old size"
        assert _charged(after) == total, "turns lost or counted twice at the new size"
        rebuilt = run_cli(settings, "projections", "rebuild")
        assert rebuilt.code == 0, rebuilt
        out = tmp_path / "audit.json"
        monkeypatch.setenv("LEDGERFLOW_USAGE_WINDOW_S", "2")  # the audit re-folds with the workers' settings
        monkeypatch.setenv("LEDGERFLOW_USAGE_LATENESS_S", "0")
        code = audit_cli(settings, json_out=str(out), skip_projections=False, quiet=True)
        report = json.loads(out.read_text())
        assert code == 0, json.dumps(report["findings"][:5], indent=2)
        assert report["stats"].get("usage windows totalled"), report["stats"]
    finally:
        second.stop()
    assert len(asyncio.run(read_all(settings, settings.topic(CONVERSATION_EVENTS)))) == len(events)
