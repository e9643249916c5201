"""Reading whole topics back (for audits, tests and benchmarks): every record with its position."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition

from ledgerflow.config import Settings
from ledgerflow.kafka.admin import partition_counts
from ledgerflow.kafka.placement import placement


@dataclass(frozen=True, slots=True)
class RawRecord:
    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    headers: tuple[tuple[str, bytes], ...]
    timestamp_ms: int


async def read_topic(
    settings: Settings, topic: str, batch: int = 5000, key: bytes | None = None
) -> AsyncIterator[RawRecord]:
    """Every record of ``topic`` (full name) up to its end at call time, partition by partition;
    with ``key``, only the partition Kafka's default partitioner puts that key in (every record a
    producer wrote under it; the caller still filters by key)."""
    counts = await partition_counts(settings, [topic])
    consumer = AIOKafkaConsumer(
        bootstrap_servers=settings.kafka_bootstrap,
        enable_auto_commit=False,
        max_partition_fetch_bytes=8 * 1024 * 1024,
    )
    await consumer.start()
    try:
        wanted = range(counts[topic]) if key is None else [placement(key, counts[topic])]
        tps = [TopicPartition(topic, p) for p in wanted]
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        ends = await consumer.end_offsets(tps)
        for tp in tps:
            done = await consumer.position(tp) >= ends[tp]
            while not done:
                got = await consumer.getmany(tp, timeout_ms=1000, max_records=batch)
                for rec in got.get(tp, []):
                    if rec.offset >= ends[tp]:
                        done = True
                        break
                    yield RawRecord(
                        topic,
                        tp.partition,
                        rec.offset,
                        rec.key,
                        rec.value,
                        tuple(rec.headers or ()),
                        rec.timestamp,
                    )
                    done = rec.offset >= ends[tp] - 1
                if not done and await consumer.position(tp) >= ends[tp]:
                    done = True
    finally:
        await consumer.stop()


async def read_all(settings: Settings, topic: str) -> list[RawRecord]:
    return [r async for r in read_topic(settings, topic)]


async def read_range(settings: Settings, topic: str, partition: int, start: int, end: int) -> list[RawRecord]:
    """Records ``start <= offset < end`` of one partition (full topic name)."""
    if start >= end:
        return []
    consumer = AIOKafkaConsumer(
        bootstrap_servers=settings.kafka_bootstrap,
        enable_auto_commit=False,
        max_partition_fetch_bytes=8 * 1024 * 1024,
    )
    await consumer.start()
    out: list[RawRecord] = []
    try:
        tp = TopicPartition(topic, partition)
        consumer.assign([tp])
        consumer.seek(tp, start)
        while await consumer.position(tp) < end:
            got = await consumer.getmany(tp, timeout_ms=1000, max_records=5000)
            for rec in got.get(tp, []):
                if rec.offset >= end:
                    return out
                out.append(
                    RawRecord(
                        topic,
                        partition,
                        rec.offset,
                        rec.key,
                        rec.value,
                        tuple(rec.headers or ()),
                        rec.timestamp,
                    )
                )
    finally:
        await consumer.stop()
    return out


async def end_offset(settings: Settings, topic: str, partition: int) -> int:
    """One partition's end offset (full topic name): its high watermark, as a reader of uncommitted
    records sees it — one past the last offset any consumer can have been given."""
    consumer = AIOKafkaConsumer(bootstrap_servers=settings.kafka_bootstrap, enable_auto_commit=False)
    await consumer.start()
    try:
        tp = TopicPartition(topic, partition)
        return int((await consumer.end_offsets([tp]))[tp])
    finally:
        await consumer.stop()


async def stop_reader(task: asyncio.Task[Any] | None, consumer: AIOKafkaConsumer | None) -> None:
    """Stop a background reader: cancel its task, wait until it ended, then stop its consumer."""
    if task is not None:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
    if consumer is not None:
        await consumer.stop()


TAIL_WINDOW = 64


async def last_record_offsets(
    settings: Settings, ends: dict[TopicPartition, int]
) -> dict[TopicPartition, int]:
    """The offset of the last record below each partition's end (-1: none).

    Offsets are not contiguous: a transaction's commit or abort marker takes an offset and is no
    record (the co-partitioned outputs are written transactionally, ``kafka/fenced.py``), so "every
    record applied" means "applied up to the last record", not "up to ``end - 1``". Reads each
    partition's tail only, doubling the window back while it holds no record."""
    wanted = {tp: end for tp, end in ends.items() if end > 0}
    if not wanted:
        return {tp: -1 for tp in ends}
    consumer = AIOKafkaConsumer(bootstrap_servers=settings.kafka_bootstrap, enable_auto_commit=False)
    await consumer.start()
    try:
        consumer.assign(list(wanted))
        firsts = await consumer.beginning_offsets(list(wanted))
        out = {tp: -1 for tp in ends}
        for tp, end in wanted.items():
            window = TAIL_WINDOW
            while True:
                start = max(firsts[tp], end - window)
                consumer.seek(tp, start)
                while await consumer.position(tp) < end:
                    got = await consumer.getmany(tp, timeout_ms=1000)
                    for rec in got.get(tp, []):
                        if rec.offset < end:
                            out[tp] = max(out[tp], rec.offset)
                if out[tp] >= 0 or start <= firsts[tp]:
                    break
                window *= 2
        return out
    finally:
        await consumer.stop()


def gaps_of(applied: Mapping[str, int], ends: Mapping[TopicPartition, int]) -> dict[TopicPartition, int]:
    """Partitions whose ``applied`` offset (by ``"topic:partition"``; -1: none) is below ``end - 1``:
    behind unless only transaction markers follow it (``last_record_offsets`` decides)."""
    return {tp: end for tp, end in ends.items() if applied.get(f"{tp.topic}:{tp.partition}", -1) < end - 1}


async def unapplied(
    settings: Settings, applied: Mapping[str, int], ends: Mapping[TopicPartition, int]
) -> list[str]:
    """``"topic:partition"`` of every partition with a record past its ``applied`` offset."""
    gaps = gaps_of(applied, ends)
    last = await last_record_offsets(settings, gaps)
    return [
        f"{tp.topic}:{tp.partition}"
        for tp in gaps
        if applied.get(f"{tp.topic}:{tp.partition}", -1) < last[tp]
    ]


async def count_records(settings: Settings, topic: str) -> int:
    """How many records ``topic`` (full name) holds now: its end offsets count transaction markers
    too (``last_record_offsets``), so the records are counted by reading them."""
    count = 0
    async for _ in read_topic(settings, topic):
        count += 1
    return count
