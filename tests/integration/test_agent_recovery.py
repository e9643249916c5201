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
import socket
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
from ledgerflow.kafka_admin import ensure_topics
from ledgerflow.logs import read_all
from ledgerflow.stack import kafka as kafka_stack
from ledgerflow.stack import manage
from ledgerflow.testing import Process, free_port, start
from ledgerflow.topics import (
    CONVERSATION_EVENTS,
    POLICY_DECISIONS,
    TRAINING_AUDIT,
    TRAINING_COMMANDS,
    USAGE_WINDOWS,
)

TENANTS = ("acme", "globex", "initech")
CONVERSATIONS = 6
TIMEOUT_S = 120.0
ENV = {
    "LEDGERFLOW_USAGE_WINDOW_S": "1",
    "LEDGERFLOW_USAGE_LATENESS_S": "0.5",
    "LEDGERFLOW_WORKER_METRICS": "off",
}


def _free_port_pair() -> int:
    """A port p with p and p + 1 both free (Kafka and its KRaft controller)."""
    for _ in range(100):
        port = free_port()
        try:
            with socket.socket() as a, socket.socket() as b:
                a.bind(("127.0.0.1", port))
                b.bind(("127.0.0.1", port + 1))
            return port
        except OSError:
            continue
    raise RuntimeError("no free port pair on 127.0.0.1")


@pytest.fixture
def private(tmp_path: Path) -> Iterator[Settings]:
    """A private Kafka + Redis in ``tmp_path``, stopped at the end."""
    base = Settings(
        kafka_bootstrap=f"127.0.0.1:{_free_port_pair()}",
        redis_url=f"redis://127.0.0.1:{free_port()}/0",
        state_dir=tmp_path / "stack",
        http="127.0.0.1:0",
    )
    try:
        manage.up(base, say=lambda _: None)
        settings = base.with_overrides(topic_prefix="recovery.")
        asyncio.run(ensure_topics(settings))
        yield settings
    finally:
        manage.down(base, say=lambda _: None)


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
    kind = EnableTraining if batch == 0 else DisableTraining
    return [
        new_event(
            kind.TYPE,
            tenant=tenant,
            subject=tenant,
            producer="edge:admin",
            payload=kind(f"cmd-{batch}-{tenant}", "admin", "pilot", 3600 if batch == 0 else None, None),
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


def test_agents_recovering_while_the_broker_restarts_never_restart_a_chain(
    private: Settings, tmp_path: Path
) -> None:
    logs = tmp_path / "logs"
    now_s = time.time_ns() // 1000 // 1_000_000
    first_second, second_second = (now_s - 40) * 1_000_000, (now_s - 20) * 1_000_000
    turns0, commands0 = _turns(0, first_second), _commands(0, first_second)
    turns1, commands1 = _turns(1, second_second), _commands(1, second_second)
    windows0 = {first_second + k * 1_000_000 for k in range(2)}
    windows1 = {second_second + k * 1_000_000 for k in range(2)}

    worker = start(private, "worker", "worker", log_dir=logs, extra_env=ENV)
    try:
        asyncio.run(_publish(private, turns0, commands0))
        _wait(private, worker, turns0, commands0, windows0)

        # Broker and worker die together; a new worker recovers while the broker comes back.
        node = manage.nodes(private).kafka
        pid = node.process.pid()
        assert pid is not None
        os.kill(pid, signal.SIGKILL)
        os.kill(worker.popen.pid, signal.SIGKILL)
        worker.popen.wait(timeout=30)
        deadline = time.monotonic() + 30
        while node.process.pid() is not None and time.monotonic() < deadline:
            time.sleep(0.1)
        kafka_stack.start(node)  # returns once the port accepts connections
        worker = start(private, "worker", "worker", log_dir=logs, extra_env=ENV)

        asyncio.run(_publish(private, turns1, commands1))
        _wait(private, worker, turns0 + turns1, commands0 + commands1, windows0 | windows1)
    finally:
        worker.stop()

    report = asyncio.run(run_audit(private, projections=False, progress=False, grace_s=0))
    assert report.clean, [str(f) for f in report.findings[:5]]
    assert report.stats["turns"] == report.stats["decisions re-derived"] == len(turns0) + len(turns1)
    assert report.stats["training records"] >= 2 * len(TENANTS)
    assert report.stats["usage.windows records"] >= len(windows0 | windows1)
