"""Unavailable is not empty (issue 11, case 9): a broker SIGKILLed and restarted while the
chained agents recover must not make them restart a chain from genesis.

Runs its own private Kafka and Redis (the shared dev stack is never killed): a worker
decides turns, folds usage windows and answers training commands; then the broker and
the worker are SIGKILLed together, the broker is restarted and a new worker starts at
once, so the policy, training and usage agents recover their chain heads while the broker
is still coming back. More traffic follows. The audit must find every turn decided once
and every chain (decisions, training.audit, usage.windows) unbroken.
"""

from __future__ import annotations

import asyncio
import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from aiokafka import AIOKafkaProducer

from ledgerflow.audit.cli import run_audit
from ledgerflow.config import Settings
from ledgerflow.contracts import codec
from ledgerflow.contracts.events import Event, new_event
from ledgerflow.contracts.payloads import DisableTraining, EnableTraining, MessageSubmitted
from ledgerflow.kafka.admin import ensure_topics
from ledgerflow.kafka.logs import read_all
from ledgerflow.stack import kafka as kafka_stack
from ledgerflow.stack import manage
from ledgerflow.stack.processes import port_in_use
from ledgerflow.topics import (
    CONVERSATION_EVENTS,
    POLICY_DECISIONS,
    TRAINING_AUDIT,
    TRAINING_COMMANDS,
    USAGE_WINDOWS,
)
from tests.support.privatestack import private_settings, private_stack
from tests.support.processes import Process, start

TENANTS = ("acme", "globex", "initech")
CONVERSATIONS = 6
TIMEOUT_S = 120.0
RECOVERING_S = 4.0  # a new worker boots in ~3 s, then recovers its partitions from the logs
ENV = {
    "LEDGERFLOW_USAGE_WINDOW_S": "1",
    "LEDGERFLOW_USAGE_LATENESS_S": "0.5",
    "LEDGERFLOW_WORKER_METRICS": "off",
}


@pytest.fixture
def private(tmp_path: Path) -> Iterator[Settings]:
    """A private Kafka + Redis in ``tmp_path``, stopped at the end."""
    base = private_settings(tmp_path / "stack", http="127.0.0.1:0")
    with private_stack(base):
        settings = base.with_overrides(topic_prefix="recovery.")
        asyncio.run(ensure_topics(settings))
        yield settings


def _turns(batch: int, second: int) -> list[Event]:
    events = []
    for c in range(CONVERSATIONS):
        tenant = TENANTS[c % len(TENANTS)]
        for k in range(4):
            events.append(
                new_event(
                    "MessageSubmitted",
                    tenant=tenant,
                    subject=f"conv-{c}",
                    producer="gateway",
                    payload=MessageSubmitted(f"b{batch}-t{k}", "user", f"turn {k}", "slm-1", 10 + k),
                    occurred_at_micros=second + k * 400_000 + c,  # two 1-s windows
                )
            )
    return events


def _commands(batch: int, second: int) -> list[Event]:
    kind = DisableTraining if batch % 2 else EnableTraining
    return [
        new_event(
            kind.TYPE,
            tenant=tenant,
            subject=tenant,
            producer="edge:admin",
            payload=kind(f"cmd-{batch}-{tenant}", "admin", "pilot", None if batch % 2 else 3600, None),
            occurred_at_micros=second,
        )
        for tenant in TENANTS
    ]


async def _publish(settings: Settings, turns: list[Event], commands: list[Event]) -> None:
    producer = AIOKafkaProducer(
        bootstrap_servers=settings.kafka_bootstrap, acks="all", enable_idempotence=True
    )
    await producer.start()
    try:
        for e in turns:
            await producer.send_and_wait(
                settings.topic(CONVERSATION_EVENTS), codec.encode(e), key=e.subject.encode()
            )
        for e in commands:
            await producer.send_and_wait(
                settings.topic(TRAINING_COMMANDS), codec.encode(e), key=e.subject.encode()
            )
    finally:
        await producer.stop()


def _settled(settings: Settings, turns: list[Event], commands: list[Event], windows: set[int]) -> str:
    """'' when every turn is decided, every command answered and every window emitted."""
    decided = set()
    for raw in asyncio.run(read_all(settings, settings.topic(POLICY_DECISIONS))):
        decided.add(codec.decode(raw.value or b"").payload.input_event_id)  # type: ignore[union-attr]
    answered = set()
    for raw in asyncio.run(read_all(settings, settings.topic(TRAINING_AUDIT))):
        answered.add(getattr(codec.decode(raw.value or b"").payload, "command_id", None))
    emitted = set()
    for raw in asyncio.run(read_all(settings, settings.topic(USAGE_WINDOWS))):
        emitted.add(codec.decode(raw.value or b"").payload.window_start)  # type: ignore[union-attr]
    missing = [
        f"{len({e.event_id for e in turns} - decided)} turns undecided",
        f"{len({e.payload.command_id for e in commands} - answered)} commands unanswered",  # type: ignore[union-attr]
        f"windows {sorted(windows - emitted)} not emitted",
    ]
    done = decided >= {e.event_id for e in turns} and answered >= {e.payload.command_id for e in commands}  # type: ignore[union-attr]
    return "" if done and emitted >= windows else "; ".join(missing)


def _wait(
    settings: Settings, worker: Process, turns: list[Event], commands: list[Event], windows: set[int]
) -> None:
    deadline = time.monotonic() + TIMEOUT_S
    state = "not checked"
    while time.monotonic() < deadline:
        assert worker.popen.poll() is None, f"worker exited:\n{worker.log_tail()}"
        try:
            state = _settled(settings, turns, commands, windows)
        except Exception as exc:  # the broker may still be coming back
            state = repr(exc)
        if not state:
            return
        time.sleep(1.0)
    raise AssertionError(f"not settled within {TIMEOUT_S} s: {state}\n{worker.log_tail()}")


def _kill_broker_and_restart(settings: Settings) -> None:
    node = manage.nodes(settings).kafka
    pid = node.process.pid()
    assert pid is not None
    os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + 30
    while (
        node.process.pid() is not None or port_in_use(node.host, node.port)
    ) and time.monotonic() < deadline:
        time.sleep(0.05)
    kafka_stack.start(node)  # returns once the port accepts connections, before the log is loaded


def _kill_both_and_restart(settings: Settings, worker: Process, logs: Path) -> Process:
    os.kill(worker.popen.pid, signal.SIGKILL)
    worker.popen.wait(timeout=30)
    _kill_broker_and_restart(settings)
    return start(settings, "worker", "worker", log_dir=logs, extra_env=ENV)


def test_agents_recovering_while_the_broker_restarts_never_restart_a_chain(
    private: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    logs = tmp_path / "logs"
    now_s = time.time_ns() // 1000 // 1_000_000
    seconds = [(now_s - 50 + 10 * b) * 1_000_000 for b in range(3)]
    turns0, turns1, turns2 = (_turns(b, seconds[b]) for b in range(3))
    commands0, commands1, commands2 = (_commands(b, seconds[b]) for b in range(3))
    windows0, windows1, windows2 = ({seconds[b] + k * 1_000_000 for k in range(2)} for b in range(3))

    worker = start(private, "worker", "worker", log_dir=logs, extra_env=ENV)
    try:
        asyncio.run(_publish(private, turns0, commands0))
        _wait(private, worker, turns0, commands0, windows0)

        # Broker and worker die together; a new worker recovers while the broker comes back.
        worker = _kill_both_and_restart(private, worker, logs)
        asyncio.run(_publish(private, turns1, commands1))
        # The broker dies again while the new worker recovers and decides batch 1.
        time.sleep(RECOVERING_S)
        _kill_broker_and_restart(private)
        asyncio.run(_publish(private, turns2, commands2))
        every = turns0 + turns1 + turns2
        _wait(private, worker, every, commands0 + commands1 + commands2, windows0 | windows1 | windows2)
    finally:
        worker.stop()

    for name, value in ENV.items():  # the audit re-folds usage windows with the worker's settings
        monkeypatch.setenv(name, value)
    report = asyncio.run(run_audit(private, projections=False, progress=False, grace_s=0))
    assert report.clean, [str(f) for f in report.findings[:5]]
    assert report.stats["turns"] == report.stats["decisions re-derived"] == len(every)
    assert report.stats["training records"] >= 3 * len(TENANTS)
    assert report.stats["usage.windows records"] >= len(windows0 | windows1 | windows2)
    assert report.stats["usage windows closed by event time"] >= len(windows0 | windows1 | windows2) - 1
