"""Partitions added to ``training.commands`` and ``models.commands`` (the tenant-keyed command
topics): a tenant's training lock and model registry live in the one partition its key hashes
to, so a command a producer puts in a new partition would be decided against an empty state.

The worker refuses in one line and exits 1, the running one and a restarted one alike, and a
command produced straight to a new partition is never answered: no outcome, no second chain
for its tenant (``agents/layout.py``; docs/scaling.md, "Adding partitions"). The test has its own
topic prefix, created with three partitions, then altered to five.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
from aiokafka import AIOKafkaProducer

from ledgerflow.config import Settings
from ledgerflow.contracts import codec
from ledgerflow.contracts.events import Event, new_event
from ledgerflow.contracts.payloads import EnableTraining, Payload, RegisterModel
from ledgerflow.kafka.admin import ensure_topics
from ledgerflow.kafka.logs import read_all
from ledgerflow.kafka.placement import placement
from ledgerflow.topics import MODELS_AUDIT, MODELS_COMMANDS, TRAINING_AUDIT, TRAINING_COMMANDS
from tests.integration.test_partitions_added import AFTER, BEFORE, NO_METRICS, _alter, _refused
from tests.support.processes import Process, start

ANSWER_WITHIN_S = 120.0


@dataclass(frozen=True)
class Aggregate:
    commands: str
    outcomes: str
    kind: str
    payload: Callable[[str], Payload]  # command id -> the command's payload


AGGREGATES = {
    "training": Aggregate(
        TRAINING_COMMANDS,
        TRAINING_AUDIT,
        "EnableTraining",
        lambda cid: EnableTraining(cid, "ann", "fine-tune run", 3600),
    ),
    "models": Aggregate(
        MODELS_COMMANDS,
        MODELS_AUDIT,
        "RegisterModel",
        lambda cid: RegisterModel(cid, "ann", "slm-1", "local", 8192, 0.5, None, True, None),
    ),
}


def tenant_moved_to_a_new_partition() -> str:
    """A tenant whose key Kafka's partitioner puts in a partition that did not exist before."""
    return next(t for i in range(1000) if placement((t := f"pa-{i}").encode(), AFTER) >= BEFORE)


def command(agg: Aggregate, tenant: str, command_id: str) -> bytes:
    event = new_event(
        agg.kind,
        tenant=tenant,
        subject=tenant,
        payload=agg.payload(command_id),
        producer="edge:ann",
        occurred_at_micros=time.time_ns() // 1000,
    )
    return codec.encode(event)


async def _send(settings: Settings, topic: str, value: bytes, key: bytes, partition: int | None) -> int:
    producer = AIOKafkaProducer(bootstrap_servers=settings.kafka_bootstrap, acks="all")
    await producer.start()
    try:
        meta = await producer.send_and_wait(settings.topic(topic), value, key=key, partition=partition)
        return int(meta.partition)
    finally:
        await producer.stop()


def outcomes(settings: Settings, agg: Aggregate) -> list[tuple[int, Event]]:
    """(partition, record) of every outcome on the aggregate's audit topic."""
    raws = asyncio.run(read_all(settings, settings.topic(agg.outcomes)))
    return [(r.partition, codec.decode(r.value)) for r in raws]


def _answered(
    settings: Settings, agg: Aggregate, command_id: str, worker: Process
) -> list[tuple[int, Event]]:
    deadline = time.monotonic() + ANSWER_WITHIN_S
    while time.monotonic() < deadline:
        assert worker.popen.poll() is None, f"the worker exited:\n{worker.log_tail()}"
        found = outcomes(settings, agg)
        if any(getattr(e.payload, "command_id", None) == command_id for _, e in found):
            return found
        time.sleep(0.5)
    raise AssertionError(f"no outcome of {command_id} within {ANSWER_WITHIN_S:.0f} s\n{worker.log_tail()}")


def _worker(settings: Settings, tmp_path: Path, agents: str) -> Process:
    return start(
        settings, "worker", "worker", "--agents", agents, log_dir=tmp_path / "logs", extra_env=NO_METRICS
    )


@pytest.mark.timeout(420)
@pytest.mark.parametrize(
    ("name", "agents"),
    # all: the models agent's progress is no commit of the hot path (the projector's of
    # training.audit is); alone: a worker without the hot path commits none of its own
    [("training", "all"), ("training", "training"), ("models", "all"), ("models", "models")],
)
def test_a_command_in_a_new_partition_is_refused_and_never_answered(
    stack: Settings, tmp_path: Path, name: str, agents: str
) -> None:
    agg = AGGREGATES[name]
    settings = stack.with_overrides(topic_prefix=f"t{uuid.uuid4().hex[:10]}.")
    asyncio.run(ensure_topics(settings, partitions=BEFORE))
    tenant = tenant_moved_to_a_new_partition()
    key, home, moved = tenant.encode(), placement(tenant.encode(), BEFORE), placement(tenant.encode(), AFTER)
    worker = _worker(settings, tmp_path, agents)
    try:
        asyncio.run(_send(settings, agg.commands, command(agg, tenant, "first"), key, None))
        before = _answered(settings, agg, "first", worker)
        asyncio.run(_alter(settings, AFTER))  # every multi-partition topic, as an operator would
        line = _refused(worker)
    finally:
        worker.stop()
    assert f"has {AFTER} partitions but this worker group's progress was made with {BEFORE}" in line, line
    # A producer that sees five partitions puts the tenant's next command in a new one.
    assert asyncio.run(_send(settings, agg.commands, command(agg, tenant, "second"), key, moved)) == moved
    again = _worker(settings, tmp_path, agents)  # a restart (the supervisor's, an operator's) refuses too
    try:
        assert f"has {AFTER} partitions" in _refused(again)
    finally:
        again.stop()
    after = outcomes(settings, agg)
    assert after == before, f"outcomes appeared after the refusal: {after[len(before) :]}"
    assert {p for p, e in after if e.tenant == tenant} == {home}, "the tenant's chain forked"


@pytest.mark.timeout(300)
@pytest.mark.parametrize("name", sorted(AGGREGATES))
def test_a_command_outside_its_tenants_partition_stops_the_running_worker_unanswered(
    stack: Settings, tmp_path: Path, name: str
) -> None:
    """No partitions added: a producer with another partitioner (librdkafka's CRC32, a hand-picked
    partition) puts a tenant's command in an old partition that holds none of its state. The
    running worker's check of every command refuses its batch before deciding anything."""
    agg = AGGREGATES[name]
    settings = stack.with_overrides(topic_prefix=f"t{uuid.uuid4().hex[:10]}.")
    asyncio.run(ensure_topics(settings, partitions=BEFORE))
    tenant = "pa-0"
    key, home = tenant.encode(), placement(tenant.encode(), BEFORE)
    elsewhere = (home + 1) % BEFORE
    worker = _worker(settings, tmp_path, "all")
    try:
        asyncio.run(_send(settings, agg.commands, command(agg, tenant, "first"), key, None))
        before = _answered(settings, agg, "first", worker)
        asyncio.run(_send(settings, agg.commands, command(agg, tenant, "second"), key, elsewhere))
        line = _refused(worker)
    finally:
        worker.stop()
    where = f"{settings.topic(agg.commands)}[{elsewhere}]@0 (key {key!r})"
    assert f"{where} is not in partition {home} of the {BEFORE} partitions this worker pinned" in line, line
    assert outcomes(settings, agg) == before
