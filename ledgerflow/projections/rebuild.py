"""Replaying the logs into a projection's key space: rebuilds, recovery after a Redis
flush, and the auditor's scratch copy all use this one function.

``replay`` reads ``conversation.events`` and ``policy.decisions`` from offset 0 up to
``until`` (default: their end offsets at call time), partition by partition, and applies
``project`` through the fenced writer in pipelined batches. Because every write is fenced
by (entity, topic-partition, offset), replaying over a space that already holds some of
the records applies each missing record exactly once and skips the rest.

``restore`` makes a space complete again after Redis lost it (a flush, a restart without
persistence):
1. If the sentinel exists the space is complete: nothing to do.
2. Create a replay token key; replay everything from offset 0 with every write guarded by
   that key. A flush during the replay removes it, so the rest of the replay writes nothing
   (``SpaceLost``) instead of building on a hole: start again at step 1.
3. One atomic step: if the token key still exists, set the sentinel and drop the token.
   Writers guarded by the sentinel resume only now. (On a Redis Cluster both keys are kept
   per slot and this step runs in each slot, ``guards.py``: a slot whose token copy is gone
   gets no sentinel, and the replay runs again.)
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import redis.asyncio as aioredis
from aiokafka import AIOKafkaConsumer, ConsumerRecord, TopicPartition

from ledgerflow.config import Settings
from ledgerflow.contracts import codec
from ledgerflow.contracts.codec import TOPIC_TYPES
from ledgerflow.contracts.events import Event, check_key
from ledgerflow.errors import DecodeError
from ledgerflow.kafka.admin import partition_counts
from ledgerflow.kafka.placement import Placements, pinned_placements_of
from ledgerflow.projections.conversations import SOURCES, project
from ledgerflow.projections.guards import guard_complete, promote, set_guard
from ledgerflow.projections.keys import Keys
from ledgerflow.projections.ops import FencedOps, Position
from ledgerflow.projections.verify import integrity_problem, placement_problem
from ledgerflow.projections.writer import ProjectionWriter, SpaceLost
from ledgerflow.topics import CONVERSATION_EVENTS, TRAINING_AUDIT

log = logging.getLogger(__name__)

PROJECTION = "read-models"
PLACED = (CONVERSATION_EVENTS, TRAINING_AUDIT)
"""The topics whose records are projected only from the partition their key (a conversation, a
tenant) belongs in (``kafka/placement.py``): ``projectable`` and the projector check both."""
TOKEN_TTL_S = 24 * 3600  # a replay token a crashed replay left behind expires


BATCH = 2000


@dataclass
class ReplayStats:
    records: int = 0
    applied: int = 0
    skipped: int = 0
    undecodable: int = 0
    misrouted: int = 0  # turns not in their conversation's partition (kafka/placement.py)
    quarantined: int = 0
    deduped: int = 0
    round_trips: int = 0
    seconds: float = 0.0

    @property
    def rate(self) -> float:
        return self.records / self.seconds if self.seconds else 0.0


Progress = Callable[[int, int], None]  # (records done, records total)


async def end_offsets(settings: Settings) -> dict[TopicPartition, int]:
    topics = [settings.topic(t) for t in SOURCES]
    counts = await partition_counts(settings, topics)
    consumer = AIOKafkaConsumer(bootstrap_servers=settings.kafka_bootstrap, enable_auto_commit=False)
    await consumer.start()
    try:
        ends: dict[TopicPartition, int] = await consumer.end_offsets(
            [TopicPartition(t, p) for t, n in counts.items() for p in range(n)]
        )
        return ends
    finally:
        await consumer.stop()


async def replay(
    settings: Settings,
    redis: aioredis.Redis,
    keys: Keys,
    until: dict[TopicPartition, int] | None = None,
    progress: Progress | None = None,
    start: dict[str, int] | None = None,
    guard: str | None = None,
) -> ReplayStats:
    """Apply every record below ``until`` to ``keys``' space; return what was done.

    ``start`` maps ``topic:partition`` to the first offset to read (default 0). With
    ``guard``, every write requires that key to exist; raises ``SpaceLost`` if it is gone.
    """
    began = time.perf_counter()
    until = until if until is not None else await end_offsets(settings)
    bases = {settings.topic(t): t for t in SOURCES}
    total = sum(until.values())
    stats = ReplayStats()
    writer = ProjectionWriter(redis)
    placements = await pinned_placements_of(settings, PLACED)
    consumer = replay_consumer(settings)
    await consumer.start()
    try:
        first = {tp: (start or {}).get(f"{tp.topic}:{tp.partition}", 0) for tp in until}
        tps = [tp for tp, end in until.items() if end > first[tp]]
        if tps:
            consumer.assign(tps)
            for tp in tps:
                consumer.seek(tp, first[tp])
        remaining = set(tps)
        while remaining:
            got = await consumer.getmany(*remaining, timeout_ms=1000, max_records=BATCH)
            groups: list[FencedOps] = []
            checkpoint: dict[str, int] = {}
            for tp, records in got.items():
                groups += groups_of(
                    tp, records, until[tp], bases[tp.topic], keys, stats, checkpoint, placements
                )
            for tp in list(remaining):
                if await consumer.position(tp) >= until[tp]:
                    remaining.discard(tp)
            if groups or checkpoint:
                result = await writer.apply(
                    groups, (keys.checkpoint(PROJECTION), checkpoint) if checkpoint else None, guard=guard
                )
                if result.lost:
                    raise SpaceLost(
                        f"{guard} is gone: Redis lost the space {keys.namespace} during the replay"
                    )
                stats.applied += result.applied
                stats.deduped += result.deduped
                stats.quarantined += len(result.refused)
                stats.skipped += result.skipped
                stats.round_trips += result.round_trips
            if progress is not None:
                progress(stats.records, total)
    finally:
        await stop_consumer(consumer)
    stats.seconds = time.perf_counter() - began
    return stats


def groups_of(
    tp: TopicPartition,
    records: list[ConsumerRecord[bytes, bytes]],
    end: int,
    base: str,
    keys: Keys,
    stats: ReplayStats,
    checkpoint: dict[str, int],
    placements: Mapping[str, Placements],
) -> list[FencedOps]:
    """The projection's op groups of ``records`` (of ``tp``, base topic ``base``) below ``end``
    (``projectable``'s records, projected)."""
    return [
        group
        for event, at in projectable(tp, records, end, base, stats, checkpoint, placements)
        for group in project(event, at, keys)
    ]


def projectable(
    tp: TopicPartition,
    records: list[ConsumerRecord[bytes, bytes]],
    end: int,
    base: str,
    stats: ReplayStats,
    checkpoint: dict[str, int],
    placements: Mapping[str, Placements],
) -> list[tuple[Event, Position]]:
    """The records of ``records`` (of ``tp``, base topic ``base``) below ``end`` that the
    projection projects, decoded, with their positions.

    Records that do not decode, turns not in their conversation's partition under
    ``placements[CONVERSATION_EVENTS]``, decisions or training outcomes that fail their
    integrity check, or training outcomes not in their tenant's partition under
    ``placements[TRAINING_AUDIT]`` (``verify.placement_problem``), are counted in ``stats`` and
    projected as nothing — the live projector refuses the same ones; ``checkpoint`` records
    progress for all of them."""
    out: list[tuple[Event, Position]] = []
    allowed = TOPIC_TYPES[base]
    topic, partition = tp.topic, tp.partition
    cursor = f"{topic}:{partition}"
    turns = placements[CONVERSATION_EVENTS] if base == CONVERSATION_EVENTS else None
    placed = placements.get(base)
    for rec in records:
        if rec.offset >= end:
            break
        stats.records += 1
        checkpoint[cursor] = rec.offset  # progress, decodable or not
        if turns is not None and not turns.belongs(rec.key, partition):
            stats.misrouted += 1
            continue
        try:
            event = codec.decode(rec.value or b"", allowed_types=allowed)
            check_key(event, rec.key)
        except DecodeError:
            stats.undecodable += 1
            continue
        if integrity_problem(event) is not None or placement_problem(event, partition, placed) is not None:
            stats.quarantined += 1
            continue
        out.append((event, Position(topic, partition, rec.offset)))
    return out


async def restore(settings: Settings, redis: aioredis.Redis, keys: Keys) -> ReplayStats | None:
    """Make ``keys``' space complete (see the module doc); None if it already was."""
    while True:
        if await guard_complete(redis, keys.sentinel()):  # Step 1.
            return None
        token = keys.replay_guard(uuid.uuid4().hex)  # Step 2.
        await set_guard(redis, token, str(time.time()), ex=TOKEN_TTL_S)
        try:
            stats = await replay(settings, redis, keys, guard=token)
        except SpaceLost:
            continue
        if await promote(redis, token, keys.sentinel(), str(time.time())):  # Step 3.
            return stats


async def stop_consumer(consumer: AIOKafkaConsumer) -> None:
    """Stop ``consumer``; a ``CancelledError`` that aiokafka raises from its own cancelled
    internal task during ``stop()`` (not a cancellation of ours) is not allowed to crash the
    caller (it crashed the projector's agent once under load)."""
    try:
        await consumer.stop()
    except asyncio.CancelledError:
        task = asyncio.current_task()
        if task is not None and task.cancelling():
            raise  # we are being cancelled: let it through
        log.info("replay: the Kafka consumer raised CancelledError while stopping; ignored")  # normal


def replay_consumer(settings: Settings) -> AIOKafkaConsumer:
    """A group-less consumer for reading logs from the start in large fetches (not started)."""
    return AIOKafkaConsumer(
        bootstrap_servers=settings.kafka_bootstrap,
        enable_auto_commit=False,
        max_partition_fetch_bytes=8 * 1024 * 1024,
        fetch_max_bytes=64 * 1024 * 1024,
    )
