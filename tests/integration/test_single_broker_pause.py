"""A single broker paused (SIGSTOP) for longer than the worker's group sessions while the worker
decides a backlog, on a PRIVATE Kafka and Redis (the shared stack is never paused): after SIGCONT
the worker resumes by itself, every turn is decided exactly once and the audit (chains, decisions
re-derived, read models equal to a rebuild) is clean.

The chaos run pauses one broker of three (its partitions move to the others); here nothing can
move: the group coordinator, every leader and the transaction-less idempotent producer all stop
at once, the producer's in-flight batches time out and land when the broker wakes, and every
group session expires. Passed on the code it was added with (a probe of a claim no test held)."""

from __future__ import annotations

import asyncio
import collections
import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from ledgerflow.audit.cli import run_audit
from ledgerflow.config import Settings
from ledgerflow.contracts import codec
from ledgerflow.kafka.admin import ensure_topics
from ledgerflow.kafka.logs import read_all
from ledgerflow.stack import manage
from ledgerflow.topics import POLICY_DECISIONS
from tests.integration.test_agent_recovery import _publish, _turns
from tests.support.privatestack import private_settings, private_stack
from tests.support.processes import pipeline_settled, start

ENV = {"LEDGERFLOW_WORKER_METRICS": "off"}
BATCHES = 200
PAUSE_S = 14.0  # past the groups' 10 s session timeout
TIMEOUT_S = 150.0


@pytest.fixture
def private(tmp_path: Path) -> Iterator[Settings]:
    base = private_settings(tmp_path / "stack", http="127.0.0.1:0")
    with private_stack(base):
        settings = base.with_overrides(topic_prefix="pause.")
        asyncio.run(ensure_topics(settings))
        yield settings


def _decided(settings: Settings) -> collections.Counter[str]:
    raws = asyncio.run(read_all(settings, settings.topic(POLICY_DECISIONS)))
    return collections.Counter(codec.decode(r.value or b"").payload.input_event_id for r in raws)  # type: ignore[union-attr]


def test_a_paused_broker_mid_backlog_loses_and_repeats_nothing(private: Settings, tmp_path: Path) -> None:
    now_us = time.time_ns() // 1000
    turns = [t for b in range(BATCHES) for t in _turns(b, now_us - 60_000_000 + b * 1000)]
    asyncio.run(_publish(private, turns, []))
    worker = start(private, "worker", "worker", log_dir=tmp_path / "logs", extra_env=ENV)
    kafka = manage.nodes(private).kafka.process.pid()
    assert kafka is not None
    try:
        deadline = time.monotonic() + 60
        while sum(_decided(private).values()) < len(turns) // 10:
            assert time.monotonic() < deadline, worker.log_tail()
            time.sleep(0.2)
        print(f"paused at {sum(_decided(private).values())} of {len(turns)} decisions", flush=True)
        os.kill(kafka, signal.SIGSTOP)
        try:
            time.sleep(PAUSE_S)
        finally:
            os.kill(kafka, signal.SIGCONT)
        deadline = time.monotonic() + TIMEOUT_S
        while True:
            assert worker.popen.poll() is None, f"worker exited:\n{worker.log_tail()}"
            try:
                done, state = asyncio.run(pipeline_settled(private, len(turns)))
            except Exception as exc:
                done, state = False, repr(exc)
            if done:
                break
            assert time.monotonic() < deadline, f"not settled: {state}\n{worker.log_tail(60)}"
            time.sleep(1.0)
        decided = _decided(private)
        twice = {k: n for k, n in decided.items() if n > 1}
        assert not twice, f"{len(twice)} turns decided more than once"
        assert set(decided) == {t.event_id for t in turns}
    finally:
        log = worker.log_tail(80)
        worker.stop()
    report = asyncio.run(run_audit(private, projections=True, progress=False, grace_s=0))
    assert report.clean, [str(f) for f in report.findings[:5]] + [log]
