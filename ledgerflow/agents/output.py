"""A co-partitioned, single-writer output topic: what the policy and training agents share.

Input partition *p* is written to output partition *p* only by the worker that owns *p*,
each record carrying the input offset it answers in the ``lf-input`` header
(``topics.INPUT_HEADER``). Reading output partition *p* back therefore tells a new
owner exactly how far *p* was processed (and the chain heads so far) — recovery without Kafka transactions.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.structs import RecordMetadata

from ledgerflow.config import Settings
from ledgerflow.errors import InfrastructureError
from ledgerflow.kafka.admin import partition_counts
from ledgerflow.topics import INPUT_HEADER

# A batch loop's decisions of one partition go in one record batch (the broker's limit: 1 MiB).
BATCH_BYTES = 512 * 1024


class LogNotReady(InfrastructureError):
    """An output log reads shorter than it was already seen: not readable to its end yet."""


@dataclass(frozen=True, slots=True)
class Outgoing:
    partition: int
    input_offset: int | None  # None for records no input caused (e.g. timer expiries)
    key: bytes
    value: bytes
    headers: tuple[tuple[str, bytes], ...] = ()
    """Extra headers (trace context, ``tracing/spans.py``); ``lf-input`` is added by ``write``."""


@dataclass(frozen=True, slots=True)
class Written:
    offset: int
    value: bytes
    input_offset: int | None


class CoPartitionedOutput:
    def __init__(self, settings: Settings, input_topic: str, output_topic: str) -> None:
        self._settings = settings
        self.input_topic = input_topic
        self.output_topic = output_topic
        self._producer: AIOKafkaProducer | None = None
        self._reader: AIOKafkaConsumer | None = None
        self._floor: dict[int, int] = {}  # partition -> end offset this process has seen

    async def start(self) -> None:
        """Check co-partitioning and start the producer and the reader (again after a failure)."""
        if self._producer is not None and self._reader is not None:
            return
        await self.stop()  # what a failed earlier start left behind
        self._producer = self._reader = None
        counts = await partition_counts(self._settings, [self.input_topic, self.output_topic])
        if counts[self.input_topic] != counts[self.output_topic]:
            raise InfrastructureError(
                f"{self.output_topic} has {counts[self.output_topic]} partitions but {self.input_topic} has "
                f"{counts[self.input_topic]}: they must be equal (outputs are co-partitioned with inputs)"
            )
        producer = AIOKafkaProducer(
            bootstrap_servers=self._settings.kafka_bootstrap,
            acks="all",
            enable_idempotence=True,
            linger_ms=2,
            max_batch_size=BATCH_BYTES,
        )
        reader = AIOKafkaConsumer(
            bootstrap_servers=self._settings.kafka_bootstrap, enable_auto_commit=False, fetch_max_wait_ms=10
        )
        try:
            await producer.start()
            await reader.start()
        except BaseException:
            await producer.stop()
            await reader.stop()
            raise
        self._producer, self._reader = producer, reader

    async def stop(self) -> None:
        for client in (self._producer, self._reader):
            if client is not None:
                await client.stop()

    async def end(self, partition: int) -> int:
        """The output partition's end offset; LogNotReady if it is below one already seen.

        A log that reads shorter than this process saw it (acknowledged writes, records
        read) is not readable to its end yet — a broker restarting — never a shorter log.
        """
        assert self._reader is not None
        tp = TopicPartition(self.output_topic, partition)
        end = int((await self._reader.end_offsets([tp]))[tp])
        seen = self._floor.get(partition, 0)
        if end < seen:
            raise LogNotReady(
                f"{self.output_topic}[{partition}] ends at {end} but offset {seen - 1} was already seen: "
                "the log is not readable to its end yet; waiting"
            )
        self._floor[partition] = end
        return end

    async def read(self, partition: int, start: int = 0, end: int | None = None) -> AsyncIterator[Written]:
        """Output partition ``partition`` from ``start`` to ``end`` (default: its end at call time).

        Reads until ``end`` is reached, however long the broker takes: a log that is not
        readable yet is waited for, never taken for a shorter one.
        """
        assert self._reader is not None
        tp = TopicPartition(self.output_topic, partition)
        end = await self.end(partition) if end is None else end
        if start >= end:
            return
        self._reader.assign([tp])
        self._reader.seek(tp, start)
        while await self._reader.position(tp) < end:
            batch = await self._reader.getmany(tp, timeout_ms=1000, max_records=5000)
            for rec in batch.get(tp, []):
                if rec.offset >= end:
                    return
                yield Written(rec.offset, rec.value or b"", _input_offset(rec.headers))

    async def write(self, records: Sequence[Outgoing]) -> list[int]:
        """Produce ``records`` in order (idempotent producer) and wait for every ack.

        One ``send_batch`` per partition (and per full batch): a record batch is built once,
        not a future and an accumulator round per record. Their offsets, in order."""
        if not records:
            return []
        assert self._producer is not None
        producer = self._producer
        sent: list[tuple[asyncio.Future[RecordMetadata], list[int]]] = []  # (ack, indexes into records)
        by_partition: dict[int, list[int]] = {}
        for i, r in enumerate(records):
            by_partition.setdefault(r.partition, []).append(i)
        for partition, indexes in by_partition.items():
            batch = producer.create_batch()
            members: list[int] = []
            for i in indexes:
                r = records[i]
                headers = [] if r.input_offset is None else [(INPUT_HEADER, str(r.input_offset).encode())]
                headers += r.headers  # trace context (tracing/spans.py)
                if batch.append(key=r.key, value=r.value, timestamp=None, headers=headers) is None:
                    sent.append(
                        (await producer.send_batch(batch, self.output_topic, partition=partition), members)
                    )
                    batch, members = producer.create_batch(), []
                    if batch.append(key=r.key, value=r.value, timestamp=None, headers=headers) is None:
                        raise InfrastructureError(f"a record of {len(r.value)} bytes does not fit a batch")
                members.append(i)
            sent.append((await producer.send_batch(batch, self.output_topic, partition=partition), members))
        offsets = [0] * len(records)
        for meta, (_, members) in zip(await asyncio.gather(*(ack for ack, _ in sent)), sent, strict=True):
            for n, i in enumerate(members):
                offsets[i] = meta.offset + n
            last = meta.offset + len(members)
            self._floor[meta.partition] = max(self._floor.get(meta.partition, 0), last)
        return offsets


def _input_offset(headers: object) -> int | None:
    for key, value in headers or ():  # type: ignore[attr-defined]
        if key == INPUT_HEADER:
            return int(value)
    return None
