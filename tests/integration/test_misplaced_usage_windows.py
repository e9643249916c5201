"""A usage window written into another partition of ``usage.windows`` than its tenant's does not
steer the usage agent's recovery, on the real broker and a real worker.

The usage agent writes a tenant's windows under the tenant's key, so Kafka's default partitioner
puts all of them in one partition; recovery reads the topic partition by partition and takes a
record only if it is the next link of its chain. A forged first link (sequence 1, hashed right:
the chain has no secret) of a live chain, written into a partition read before the tenant's, was
taken as the chain's head: every genuine record of that chain was then ignored as "no next link",
and the agent wrote every window of it again. Now a record outside its tenant's partition (or
keyed by another key than its tenant) is logged and ignored, as the training and models agents
ignore outcomes outside their tenant's partition, and the audit names it ``usage.misplaced`` and
leaves it out of the chains (it made the genuine chain the finding).
"""

from __future__ import annotations

import asyncio
import random
import time
from collections import Counter
from pathlib import Path

from aiokafka import AIOKafkaProducer

from ledgerflow.config import Settings
from ledgerflow.contracts import codec
from ledgerflow.contracts.events import Event
from ledgerflow.contracts.payloads import UsageWindow
from ledgerflow.kafka.logs import read_all
from ledgerflow.kafka.placement import placement
from ledgerflow.policy.wire import chain
from ledgerflow.topics import USAGE_WINDOWS
from ledgerflow.traffic import interleaved, publish
from ledgerflow.usage.windows import WindowClosed
from ledgerflow.usage.wire import record_of, source_of
from tests.integration.test_audit import audit_at_rest
from tests.support.processes import Process, pipeline_settled, start

WINDOWS_PARTITIONS = 3  # usage.windows (ledgerflow/topics.py)
TENANT = next(t for t in (f"mu-{i}" for i in range(100)) if placement(t.encode(), WINDOWS_PARTITIONS) != 0)
ENV = {"LEDGERFLOW_USAGE_WINDOW_S": "1", "LEDGERFLOW_USAGE_LATENESS_S": "0.5"}
TIMEOUT_S = 90.0
SECOND = 1_000_000


def windows(settings: Settings) -> list[tuple[int, int, Event]]:
    out = []
    for raw in asyncio.run(read_all(settings, settings.topic(USAGE_WINDOWS))):
        out.append((raw.partition, raw.offset, codec.decode(raw.value or b"")))
    return out


def traffic(seed: int) -> list[Event]:
    rng = random.Random(seed)
    return list(interleaved(rng, [TENANT], 12, time.time_ns() // 1000, run_id=f"mu{seed}"))


def settle(settings: Settings, worker: Process, events: list[Event]) -> list[tuple[int, int, Event]]:
    """Every turn decided and the usage windows of ``events`` written and no longer changing."""
    turns = sum(e.type == "MessageSubmitted" for e in events)
    last = max(e.occurred_at for e in events)
    deadline, before, steady = time.monotonic() + TIMEOUT_S, -1, 0
    while time.monotonic() < deadline:
        assert worker.popen.poll() is None, f"worker exited:\n{worker.log_tail()}"
        done, _ = asyncio.run(pipeline_settled(settings, turns))
        found = windows(settings)
        closed = any(w.payload.window_end > last for _, _, w in found)  # type: ignore[union-attr]
        steady = steady + 1 if len(found) == before else 0
        before = len(found)
        if done and closed and steady >= 6:
            return found
        time.sleep(0.5)
    raise AssertionError(f"usage windows not settled\n{worker.log_tail()}")


async def produce_at(settings: Settings, partition: int, value: bytes) -> int:
    producer = AIOKafkaProducer(bootstrap_servers=settings.kafka_bootstrap, acks="all")
    await producer.start()
    try:
        meta = await producer.send_and_wait(
            settings.topic(USAGE_WINDOWS), value, key=TENANT.encode(), partition=partition
        )
        return int(meta.offset)
    finally:
        await producer.stop()


def test_a_forged_first_link_in_another_partition_does_not_make_the_agent_write_its_windows_again(
    settings: Settings, log_dir: Path
) -> None:
    first = traffic(1)
    worker = start(settings, "worker", "worker", log_dir=log_dir, extra_env=ENV)
    try:
        asyncio.run(publish(settings, iter(first), progress_every_s=0))
        written = settle(settings, worker, first)
    finally:
        assert worker.stop() == 0
    home = placement(TENANT.encode(), WINDOWS_PARTITIONS)
    assert {p for p, _, _ in written} == {home}
    genuine = next(w for _, _, w in written)
    source = source_of(genuine.producer)
    assert source is not None
    window = genuine.payload
    assert isinstance(window, UsageWindow)
    # The first link of genuine's chain (its tenant and source partition), for a window an hour
    # earlier, hashed right, written into partition 0: read back before the tenant's partition.
    early = window.window_start - 3600 * SECOND
    forged = WindowClosed(TENANT, window.model, early, early + SECOND, 7, 1, 0)
    value = codec.encode(chain(record_of(forged, source, early + SECOND), None))
    offset = asyncio.run(produce_at(settings, 0, value))

    later = traffic(2)
    second = start(settings, "worker-2", "worker", log_dir=log_dir, extra_env=ENV)
    try:
        asyncio.run(publish(settings, iter(later), progress_every_s=0))
        found = settle(settings, second, first + later)
    finally:
        second.stop()
    ours = [w for p, _, w in found if p == home]
    twice = [i for i, n in Counter(w.event_id for w in ours).items() if n > 1]
    assert twice == [], f"{len(twice)} of {len(ours)} windows written twice"
    # The audit names the forged record, and only it: before, it walked it into the chain first
    # (partition 0 is read before the tenant's), and the genuine chain was the finding.
    report = audit_at_rest(settings)
    findings = [(f.kind, f.topic, f.partition, f.offset) for f in report.ordered()]
    assert findings == [("usage.misplaced", settings.topic(USAGE_WINDOWS), 0, offset)], findings
