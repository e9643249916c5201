"""Appending to ``identity.audit``: one hash chain per writer (the Kafka key is the chain id).

The dev issuer's chain (``issuer:<name>``) is written by short-lived CLI processes
(``stack up``, ``keys rotate``, ``token``): each takes a file lock in the state directory,
reads the topic (one small partition) for its chain's head, links its records after it
and waits for the acks. An edge's chain (``edge:<id>``) is its own for its lifetime, so
it keeps the head in memory (``ChainWriter``).

The head is read partition by partition, the last record of the chain read winning: right while
each chain's records are in one partition. Partitions added to the topic move chains (a second
alter may move one back to a lower partition, read first: its head read then is a stale one, and
the next record forks the chain). So ``append`` refuses while the topic's partition count is not
the one the workers pinned (``agents/layout.py``; none pinned: today's), as the workers do.
"""

from __future__ import annotations

import fcntl
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

from aiokafka import AIOKafkaProducer

from ledgerflow.config import Settings
from ledgerflow.contracts import codec
from ledgerflow.contracts.chain import ChainHead
from ledgerflow.contracts.codec import TOPIC_TYPES
from ledgerflow.contracts.events import Event, new_event
from ledgerflow.contracts.payloads import Payload
from ledgerflow.errors import DecodeError, InfrastructureError
from ledgerflow.kafka.admin import partition_counts
from ledgerflow.kafka.logs import read_topic
from ledgerflow.kafka.placement import pinned_placements_of
from ledgerflow.policy.wire import chain, head_after
from ledgerflow.topics import IDENTITY_AUDIT

PRODUCER = "ledgerflow-identity"
LOCK_NAME = ".identity-audit.lock"
PROCEDURE = "docs/scaling.md#adding-partitions"


class TrailMoved(InfrastructureError):
    """``identity.audit`` has another partition count than the pinned one: nothing is appended."""


def moved(pinned: int, now: int) -> str | None:
    """Pure: one line when ``identity.audit`` has ``now`` partitions but ``pinned`` were pinned."""
    if now == pinned:
        return None
    return (
        f"identity.audit has {now} partitions but {pinned} were pinned: partitions were added, which "
        "moves chains to other partitions, and a chain's head read back partition by partition may be "
        f"a stale one (the next record would fork the chain); refusing to append: see {PROCEDURE}"
    )


async def check_unmoved(settings: Settings) -> None:
    """TrailMoved unless ``identity.audit`` has the partition count the workers pinned (no pin:
    today's count, nothing to compare)."""
    topic = settings.topic(IDENTITY_AUDIT)
    now = (await partition_counts(settings, [topic]))[topic]
    pinned = (await pinned_placements_of(settings, [IDENTITY_AUDIT]))[IDENTITY_AUDIT].partitions
    problem = moved(pinned, now)
    if problem is not None:
        raise TrailMoved(problem)


class ChainWriter:
    """Links records of one chain in order (pure apart from the clock it is given)."""

    def __init__(self, chain_id: str, head: ChainHead | None = None) -> None:
        self.chain_id = chain_id
        self.head = head

    def link(self, tenant: str, payload: Payload, at_micros: int) -> Event:
        event = new_event(
            payload.TYPE,
            tenant=tenant,
            subject=self.chain_id,
            payload=payload,
            producer=PRODUCER,
            occurred_at_micros=at_micros,
        )
        return chain(event, self.head)

    def advance(self, linked: Event) -> None:
        """Call once ``linked`` is acknowledged: the next record links after it."""
        self.head = head_after(linked)


async def chain_head(settings: Settings, chain_id: str) -> ChainHead | None:
    """The last record of ``chain_id`` on ``identity.audit`` (None: the chain is empty)."""
    head = None
    async for raw in read_topic(settings, settings.topic(IDENTITY_AUDIT)):
        if raw.key != chain_id.encode() or raw.value is None:
            continue
        try:
            event = codec.decode(raw.value, allowed_types=TOPIC_TYPES[IDENTITY_AUDIT])
        except DecodeError:
            continue
        if event.subject == chain_id and event.sequence is not None and event.hash is not None:
            head = head_after(event)
    return head


async def append(settings: Settings, chain_id: str, items: Sequence[tuple[str, Payload]]) -> list[Event]:
    """Append ``(tenant, payload)`` records to ``chain_id``, acknowledged, under the state-dir lock;
    TrailMoved (nothing appended) if partitions were added to the topic (``check_unmoved``)."""
    if not items:
        return []
    with _locked(settings.state_dir):
        await check_unmoved(settings)
        writer = ChainWriter(chain_id, await chain_head(settings, chain_id))
        producer = AIOKafkaProducer(
            bootstrap_servers=settings.kafka_bootstrap, acks="all", enable_idempotence=True
        )
        await producer.start()
        written = []
        try:
            for tenant, payload in items:
                event = writer.link(tenant, payload, time.time_ns() // 1000)
                await producer.send_and_wait(
                    settings.topic(IDENTITY_AUDIT), codec.encode(event), key=chain_id.encode()
                )
                writer.advance(event)
                written.append(event)
        finally:
            await producer.stop()
    return written


@contextmanager
def _locked(state_dir: Path) -> Iterator[None]:
    state_dir.mkdir(parents=True, exist_ok=True)
    with open(state_dir / LOCK_NAME, "a+b") as handle:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)
