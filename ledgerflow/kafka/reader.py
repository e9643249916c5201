"""Reading logs up to a horizon of end offsets fixed when the reading starts: one consumer (no
group), partition by partition (``partition``) or all of a topic's partitions merged by record
timestamp (``merged``). The audit, the chaos run's evidence and ``ledgerflow migrate`` read with it."""

from __future__ import annotations

import heapq
from collections import deque
from collections.abc import AsyncIterator, Iterable
from typing import Self

from aiokafka import AIOKafkaConsumer, TopicPartition

from ledgerflow.config import Settings
from ledgerflow.errors import InfrastructureError
from ledgerflow.kafka.admin import partition_counts
from ledgerflow.kafka.logs import RawRecord

Horizon = dict[str, list[int]]  # full topic name -> end offset per partition


class LogReader:
    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._consumer: AIOKafkaConsumer | None = None

    async def __aenter__(self) -> Self:
        self._consumer = AIOKafkaConsumer(
            bootstrap_servers=self._settings.kafka_bootstrap,
            enable_auto_commit=False,
            max_partition_fetch_bytes=8 * 1024 * 1024,
            fetch_max_bytes=64 * 1024 * 1024,
        )
        try:
            await self._consumer.start()
        except Exception as exc:  # aiokafka raises several kinds when no broker answers
            await self._consumer.stop()  # or its "Unclosed" warnings follow the one-line error
            raise InfrastructureError(
                f"no Kafka broker answers at {self._settings.kafka_bootstrap} ({exc!r}): start one with "
                "`ledgerflow stack up`, or set LEDGERFLOW_KAFKA_BOOTSTRAP"
            ) from None
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._consumer is not None:
            await self._consumer.stop()

    async def horizon(self, topics: Iterable[str]) -> Horizon:
        """End offsets now, in the order given (list a topic after the topics it reads from).

        A topic that does not exist is left out (the caller notes it)."""
        consumer = self._require()
        ends: Horizon = {}
        for topic in topics:
            try:
                count = (await partition_counts(self._settings, [topic]))[topic]
            except InfrastructureError:
                continue
            tps = [TopicPartition(topic, p) for p in range(count)]
            got = await consumer.end_offsets(tps)
            ends[topic] = [got[tp] for tp in tps]
        return ends

    async def partition(
        self, topic: str, partition: int, end: int, batch: int = 5000
    ) -> AsyncIterator[RawRecord]:
        """Records of one partition from its first offset to ``end`` (exclusive)."""
        consumer = self._require()
        if end <= 0:
            return
        tp = TopicPartition(topic, partition)
        consumer.assign([tp])
        await consumer.seek_to_beginning(tp)
        while await consumer.position(tp) < end:
            got = await consumer.getmany(tp, timeout_ms=1000, max_records=batch)
            for rec in got.get(tp, []):
                if rec.offset >= end:
                    return
                yield RawRecord(
                    topic, partition, rec.offset, rec.key, rec.value, tuple(rec.headers or ()), rec.timestamp
                )

    async def merged(
        self, topic: str, ends: list[int], starts: list[int] | None = None, batch: int = 5000
    ) -> AsyncIterator[RawRecord]:
        """Every partition's records from its offset in ``starts`` (default: its first) up to its
        end in ``ends``, interleaved by record timestamp: each step yields the oldest of the
        partitions' next records (ties: the lower partition). Within a partition the log's order
        always holds, whatever the timestamps say."""
        consumer = self._require()
        first = starts if starts is not None else [0] * len(ends)
        tps = {p: TopicPartition(topic, p) for p, end in enumerate(ends) if end > first[p]}
        if not tps:
            return
        consumer.assign(list(tps.values()))
        for p, tp in tps.items():
            if first[p] > 0:
                consumer.seek(tp, first[p])
            else:
                await consumer.seek_to_beginning(tp)
        buffered: dict[int, deque[RawRecord]] = {p: deque() for p in tps}
        heads: list[tuple[int, int, int]] = []  # (timestamp, partition, offset) of each buffered head
        while tps or heads:
            for p in [p for p in tps if not buffered[p]]:  # refill every partition without a head
                while not buffered[p] and p in tps:
                    got = await consumer.getmany(tps[p], timeout_ms=1000, max_records=batch)
                    for rec in got.get(tps[p], []):
                        if rec.offset < ends[p]:
                            buffered[p].append(
                                RawRecord(
                                    topic,
                                    p,
                                    rec.offset,
                                    rec.key,
                                    rec.value,
                                    tuple(rec.headers or ()),
                                    rec.timestamp,
                                )
                            )
                    if await consumer.position(tps[p]) >= ends[p]:
                        del tps[p]
                if buffered[p]:
                    head = buffered[p][0]
                    heapq.heappush(heads, (head.timestamp_ms, p, head.offset))
            if not heads:
                continue
            _, p, _ = heapq.heappop(heads)
            yield buffered[p].popleft()
            if buffered[p]:
                head = buffered[p][0]
                heapq.heappush(heads, (head.timestamp_ms, p, head.offset))

    def _require(self) -> AIOKafkaConsumer:
        if self._consumer is None:
            raise RuntimeError("use LogReader as an async context manager")
        return self._consumer
