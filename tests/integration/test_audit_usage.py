"""``ledgerflow audit``'s usage check on the real stack: a usage window charged more (or less) than
its turns is named, with what it charged and what its turns give; an untouched run stays clean.

The worker runs 1 s windows (0.5 s lateness) and the turns span several seconds of event time, so
the usage agent closes most windows by event time within the test."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator

import pytest
from aiokafka import AIOKafkaProducer

from ledgerflow.config import Settings
from ledgerflow.contracts import codec
from ledgerflow.contracts.events import Event, new_event
from ledgerflow.contracts.payloads import MessageSubmitted
from ledgerflow.kafka.logs import read_all
from ledgerflow.policy.wire import chain, chain_key, head_after
from ledgerflow.projections.usage_fields import usage_field
from ledgerflow.redisclient import sync_client
from ledgerflow.topics import USAGE_WINDOWS
from ledgerflow.traffic import Publisher
from ledgerflow.usage.windows import WindowClosed
from ledgerflow.usage.wire import record_of, source_of
from tests.integration.test_audit import audit_at_rest, wait_settled
from tests.support.processes import Process, live_keys, start

WINDOWS = {"LEDGERFLOW_USAGE_WINDOW_S": "1", "LEDGERFLOW_USAGE_LATENESS_S": "0.5"}
SECONDS = 6  # windows of turns
TENANTS = ("acme", "globex")
S = 1_000_000


@pytest.fixture
def usage_worker(settings: Settings, log_dir, monkeypatch: pytest.MonkeyPatch) -> Iterator[Process]:
    """The worker, and this process (the audit's fold), with ``WINDOWS``."""
    for name, value in WINDOWS.items():
        monkeypatch.setenv(name, value)
    proc = start(settings, "worker", "worker", log_dir=log_dir)
    yield proc
    proc.stop()


def _turns() -> list[Event]:
    """Turns of two tenants, two conversations each, one per conversation per second of event time."""
    base = (time.time_ns() // 1000 // S - 30) * S
    return [
        new_event(
            "MessageSubmitted",
            tenant=tenant,
            subject=f"conv-{tenant}-{c}",
            producer="test",
            occurred_at_micros=base + second * S + c * 1000,
            payload=MessageSubmitted(f"t{second}", "user", "hello", "slm-1", 10 * (second + 1)),
        )
        for second in range(SECONDS)
        for tenant in TENANTS
        for c in range(2)
    ]


def _publish(settings: Settings, events: list[Event]) -> None:
    async def feed() -> None:
        async with Publisher(settings) as pub:
            for event in events:
                await pub.send(event)
            await pub.flush()

    asyncio.run(feed())


def _usage_fields(settings: Settings, tenant: str) -> dict[str, tuple[int, int]]:
    """The live usage read model of ``tenant``: field -> (tokens, turns)."""
    client = sync_client(settings.redis_url, socket_timeout=10)
    try:
        keys = live_keys(client, settings)
        tokens = {k.decode(): int(v) for k, v in client.hgetall(keys.usage(tenant)).items()}
        turns = {k.decode(): int(v) for k, v in client.hgetall(keys.usage_turns(tenant)).items()}
    finally:
        client.close()
    return {field: (tokens[field], turns.get(field, 0)) for field in tokens}


def _run_until_charged(settings: Settings, worker: Process) -> int:
    """Publish ``_turns``; wait until every turn is decided, charged in a closed window and projected.
    The turn count."""
    events = _turns()
    _publish(settings, events)
    deadline = time.monotonic() + 120
    while sum(turns for t in TENANTS for _, turns in _usage_fields(settings, t).values()) < len(events):
        assert worker.popen.poll() is None, worker.log_tail()
        assert time.monotonic() < deadline, {t: _usage_fields(settings, t) for t in TENANTS}
        time.sleep(0.5)
    wait_settled(settings, len(events), worker)
    return len(events)


def _forge_doubled(settings: Settings) -> tuple[tuple[str, int, int], Event, str]:
    """A correction of acme's second window, its totals doubled, chained onto its writer's chain as
    the usage agent chains (so the hash chains hold) and produced into usage.windows: where it
    sits, the window's genuine record, and the window's usage field."""
    raws = asyncio.run(read_all(settings, settings.topic(USAGE_WINDOWS)))
    records = [(raw, codec.decode(raw.value)) for raw in raws]
    windows = sorted(
        ((raw, ev) for raw, ev in records if ev.tenant == "acme" and ev.payload.revision >= 0),
        key=lambda item: (item[1].payload.window_start, item[1].producer),
    )
    raw, genuine = windows[1]
    window = genuine.payload
    last = [ev for _, ev in records if chain_key(ev) == chain_key(genuine)][-1]
    partition = source_of(genuine.producer)
    assert partition is not None
    doubled = WindowClosed(
        "acme",
        window.model,
        window.window_start,
        window.window_end,
        2 * window.tokens,
        2 * window.events,
        2 * window.estimated_tokens,
        window.revision + 1,
        True,
    )
    forged = chain(record_of(doubled, partition, genuine.occurred_at + 1), head_after(last))
    meta = asyncio.run(_produce(settings, raw.partition, codec.encode(forged)))
    field = usage_field(window.model, window.window_start, window.window_end, genuine.producer)
    return (settings.topic(USAGE_WINDOWS), raw.partition, meta.offset), genuine, field


async def _produce(settings: Settings, partition: int, value: bytes):  # type: ignore[no-untyped-def]
    producer = AIOKafkaProducer(bootstrap_servers=settings.kafka_bootstrap, acks="all")
    await producer.start()
    try:
        return await producer.send_and_wait(
            settings.topic(USAGE_WINDOWS), value, key=b"acme", partition=partition
        )
    finally:
        await producer.stop()


def test_a_window_charged_twice_its_turns_in_usage_windows_is_the_one_finding(
    settings: Settings, usage_worker: Process
) -> None:
    """A usage.windows record charging a window double its turns, chained so that the hash chains hold
    (and projected by the live read models as the rebuild projects it): the audit found nothing, as it
    only checked that each window closed by event time had a record."""
    _run_until_charged(settings, usage_worker)
    clean = audit_at_rest(settings)
    assert clean.clean, clean.findings[:5]
    assert clean.stats["usage windows totalled"] >= 2 * SECONDS

    where, genuine, field = _forge_doubled(settings)
    deadline = time.monotonic() + 60
    while _usage_fields(settings, "acme")[field] != (2 * genuine.payload.tokens, 2 * genuine.payload.events):
        assert time.monotonic() < deadline, "the live read models did not apply the forged record"
        time.sleep(0.2)
    report = audit_at_rest(settings)
    assert [(f.kind, f.topic, f.partition, f.offset, f.key) for f in report.findings] == [
        ("usage.overcharged", *where, "acme")
    ]
    window = genuine.payload
    detail = report.findings[0].detail
    assert f"[{window.window_start}, {window.window_end}) µs" in detail
    assert f"charged {2 * window.tokens} tokens for {2 * window.events} turn(s)" in detail
    assert f"give {window.tokens} tokens for {window.events} turn(s)" in detail


def test_a_window_doubled_in_the_usage_read_model_is_named_by_the_read_model_diff(
    settings: Settings, usage_worker: Process
) -> None:
    """A window doubled in Redis (tokens and turns): the read-model diff names that window's field in
    both usage keys, live against rebuilt, and nothing else."""
    _run_until_charged(settings, usage_worker)
    fields = _usage_fields(settings, "acme")
    field = sorted(fields)[1]
    tokens, turns = fields[field]
    client = sync_client(settings.redis_url, socket_timeout=10)
    try:
        keys = live_keys(client, settings)
        client.hset(keys.usage("acme"), field, 2 * tokens)
        client.hset(keys.usage_turns("acme"), field, 2 * turns)
    finally:
        client.close()
    report = audit_at_rest(settings)
    assert sorted((f.kind, f.key.rsplit(":", 2)[-1], f.detail.split(":")[0]) for f in report.findings) == [
        ("projection.diff", "turns", f"field {field!r}"),
        ("projection.diff", "usage", f"field {field!r}"),
    ], report.findings
    details = sorted(f.detail for f in report.findings)
    assert f"live '{2 * tokens}', rebuilt '{tokens}'" in " ".join(details)
    assert f"live '{2 * turns}', rebuilt '{turns}'" in " ".join(details)
