"""Partitions added to ``identity.audit`` are refused like those of the other pinned topics.

``identity.audit`` is chained per key (``issuer:<name>`` written by the CLI, ``edge:<id>`` by each
edge). The CLI reads a chain's head back partition by partition, the last record read winning:
right while a chain is in one partition. After two alters (1 → 2 → 3) the issuer chain
``issuer:dev-6`` moved to partition 1, then back to 0, read first: on the code before this test
the CLI linked its next record after the stale head in partition 1, a second sequence 4 (the
chain forked for good), and ``ledgerflow audit`` reported ``chain.forged`` and ``chain.reordered``.
The topic was not pinned: no worker, CLI or audit noticed the alter itself."""

from __future__ import annotations

import asyncio
import time

import pytest
from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewPartitions

from ledgerflow.agents import layout
from ledgerflow.agents.batchloop import loop_group
from ledgerflow.audit.cli import run_audit
from ledgerflow.config import Settings
from ledgerflow.contracts import codec
from ledgerflow.contracts.payloads import Payload, TokenMinted
from ledgerflow.identity.trail import ChainWriter, TrailMoved, append
from ledgerflow.kafka.logs import read_all
from ledgerflow.kafka.placement import placement
from ledgerflow.topics import IDENTITY_AUDIT

ISSUER = "issuer:dev-6"  # partition 1 of 2, partition 0 of 3
EDGE = next(k for k in (f"edge:e{i}" for i in range(100)) if placement(k.encode(), 2) == 1)


async def _alter(settings: Settings, partitions: int) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap)
    await admin.start()
    try:
        await admin.create_partitions({settings.topic(IDENTITY_AUDIT): NewPartitions(partitions)})
    finally:
        await admin.close()


def _mint(n: int) -> tuple[str, Payload]:
    return "acme", TokenMinted(jti=f"j{n}", sub="u", roles=("admin",), kid="k", issued_at=n, expires_at=n + 1)


def _written(settings: Settings) -> list[tuple[int, int | None]]:
    """(partition, sequence) of every identity.audit record."""
    raws = asyncio.run(read_all(settings, settings.topic(IDENTITY_AUDIT)))
    return [(raw.partition, codec.decode(raw.value or b"").sequence) for raw in raws]


def test_partitions_added_to_identity_audit_are_refused_at_start_and_while_running(
    settings: Settings,
) -> None:
    group = loop_group(settings)
    pinned = asyncio.run(layout.pin(settings, group))
    assert pinned.counts[IDENTITY_AUDIT] == 1
    asyncio.run(_alter(settings, 2))
    with pytest.raises(layout.LayoutChanged, match="identity.audit has 2 partitions .* made with 1"):
        asyncio.run(layout.pin(settings, group))  # a worker starting
    problem = layout.changed(pinned, asyncio.run(layout.current(settings)))  # a running worker's timer
    assert problem is not None and IDENTITY_AUDIT in problem


def test_the_cli_appends_nothing_once_partitions_were_added(settings: Settings) -> None:
    asyncio.run(layout.pin(settings, loop_group(settings)))  # the workers pinned the layout
    asyncio.run(append(settings, ISSUER, [_mint(1), _mint(2)]))
    asyncio.run(_alter(settings, 2))
    with pytest.raises(TrailMoved, match="identity.audit has 2 partitions but 1 were pinned"):
        asyncio.run(append(settings, ISSUER, [_mint(3)]))
    assert _written(settings) == [(0, 1), (0, 2)], "nothing appended under the new count"


def test_the_audit_names_a_record_outside_its_chains_partition_and_leaves_it_out(settings: Settings) -> None:
    """An edge's chain continued in a new partition (its producer saw the new count; an edge is
    not checked as it writes): ``identity.misplaced``, left out of the chain walk."""
    asyncio.run(layout.pin(settings, loop_group(settings)))
    asyncio.run(append(settings, ISSUER, [_mint(1)]))
    asyncio.run(_alter(settings, 2))
    edge = ChainWriter(EDGE)

    async def write() -> None:
        producer = AIOKafkaProducer(bootstrap_servers=settings.kafka_bootstrap, acks="all")
        await producer.start()
        try:
            for n in (1, 2):
                linked = edge.link("acme", _mint(n)[1], time.time_ns() // 1000)
                await producer.send_and_wait(
                    settings.topic(IDENTITY_AUDIT), codec.encode(linked), key=EDGE.encode()
                )
                edge.advance(linked)
        finally:
            await producer.stop()

    asyncio.run(write())
    assert _written(settings) == [(0, 1), (1, 1), (1, 2)]
    report = asyncio.run(run_audit(settings, projections=False, progress=False))
    found = [(f.kind, f.topic, f.partition, f.offset, f.key) for f in report.findings]
    topic = settings.topic(IDENTITY_AUDIT)
    assert found == [("identity.misplaced", topic, 1, 0, EDGE), ("identity.misplaced", topic, 1, 1, EDGE)], (
        found
    )
