"""Replaying the logs into a projection's key space: rebuilds, recovery after a Redis
flush, and the auditor's scratch copy all use this one function.

``replay`` reads ``conversation.events`` and ``policy.decisions`` from offset 0 up to
``until`` (default: their end offsets at call time), partition by partition, and applies
``project`` through the fenced writer in pipelined batches. Because every write is fenced
by (entity, topic-partition, offset), replaying over a space that already holds some of
the records applies each missing record exactly once and skips the rest.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

import redis.asyncio as aioredis
from aiokafka import AIOKafkaConsumer, TopicPartition

from ledgerflow.config import Settings
from ledgerflow.contracts import codec
from ledgerflow.contracts.codec import TOPIC_TYPES
from ledgerflow.contracts.events import check_key
from ledgerflow.errors import DecodeError
from ledgerflow.kafka_admin import partition_counts
from ledgerflow.projections.conversations import SOURCES, project
from ledgerflow.projections.keys import Keys
from ledgerflow.projections.ops import FencedOps, Position
from ledgerflow.projections.writer import ProjectionWriter

BATCH = 2000


@dataclass
class ReplayStats:
    records: int = 0
    applied: int = 0
    skipped: int = 0
    undecodable: int = 0
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
        return await consumer.end_offsets([TopicPartition(t, p) for t, n in counts.items() for p in range(n)])
    finally:
        await consumer.stop()


async def replay(
    settings: Settings,
    redis: aioredis.Redis,
    keys: Keys,
    until: dict[TopicPartition, int] | None = None,
    progress: Progress | None = None,
    start: dict[str, int] | None = None,
) -> ReplayStats:
    """Apply every record below ``until`` to ``keys``' space; return what was done.

    ``start`` maps ``topic:partition`` to the first offset to read (default 0).
    """
    began = time.perf_counter()
    until = until if until is not None else await end_offsets(settings)
    bases = {settings.topic(t): t for t in SOURCES}
    total = sum(until.values())
    stats = ReplayStats()
    writer = ProjectionWriter(redis)
    consumer = AIOKafkaConsumer(
        bootstrap_servers=settings.kafka_bootstrap,
        enable_auto_commit=False,
        max_partition_fetch_bytes=8 * 1024 * 1024,
        fetch_max_bytes=64 * 1024 * 1024,
    )
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
                end = until[tp]
                for rec in records:
                    if rec.offset >= end:
                        break
                    stats.records += 1
                    checkpoint[f"{tp.topic}:{tp.partition}"] = rec.offset  # progress, decodable or not
                    try:
                        event = codec.decode(rec.value or b"", allowed_types=TOPIC_TYPES[bases[tp.topic]])
                        check_key(event, rec.key)
                    except DecodeError:
                        stats.undecodable += 1
                        continue
                    groups += project(event, Position(tp.topic, tp.partition, rec.offset), keys)
            for tp in list(remaining):
                if await consumer.position(tp) >= until[tp]:
                    remaining.discard(tp)
            if groups or checkpoint:
                result = await writer.apply(
                    groups, (keys.checkpoint("read-models"), checkpoint) if checkpoint else None
                )
                stats.applied += result.applied
                stats.skipped += result.skipped
                stats.round_trips += result.round_trips
            if progress is not None:
                progress(stats.records, total)
    finally:
        await consumer.stop()
    stats.seconds = time.perf_counter() - began
    return stats
