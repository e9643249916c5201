"""A co-partitioned, single-writer output topic: what the policy and training agents share.

Input partition *p* is written to output partition *p* only by the worker that owns *p*,
each record carrying the input offset it answers in the ``lf-input`` header
(``topics.INPUT_HEADER``). Reading output partition *p* back therefore tells a new
owner exactly how far *p* was processed (and the chain heads so far). A new owner first
``claim``s *p* — its transactional producer's epoch bump fences every earlier writer
(``kafka/fenced.py``) — then reads it: nothing an expelled owner still had in flight can land
after what the new owner read.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass

from aiokafka import AIOKafkaConsumer, TopicPartition

from ledgerflow.config import Settings
from ledgerflow.errors import InfrastructureError
from ledgerflow.kafka.admin import partition_counts
from ledgerflow.kafka.batches import Outbound
from ledgerflow.kafka.fenced import FencedWriters, settle_forever, stop_settling, transactional_producers
from ledgerflow.topics import INPUT_HEADER, input_offset_of

# A batch loop's decisions of one partition go in one record batch (the broker's limit: 1 MiB).
BATCH_BYTES = 512 * 1024


class LogNotReady(InfrastructureError):
    """An output log reads shorter than it was already seen: not readable to its end yet."""


class LogClosed(InfrastructureError):
    """An output log used after ``close`` (the worker is stopping)."""


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
        self._writers: FencedWriters | None = None
        self._reader: AIOKafkaConsumer | None = None
        self._settler: asyncio.Task[None] | None = None
        self._floor: dict[int, int] = {}  # partition -> end offset this process has seen
        self._closed = False

    async def start(self) -> None:
        """Check co-partitioning and start the reader and the writers' settling (again after a failure)."""
        self._check_open()
        if self._writers is not None and self._reader is not None:
            return
        await self.stop()  # what a failed earlier start left behind
        self._writers = self._reader = None
        counts = await partition_counts(self._settings, [self.input_topic, self.output_topic])
        if counts[self.input_topic] != counts[self.output_topic]:
            raise InfrastructureError(
                f"{self.output_topic} has {counts[self.output_topic]} partitions but {self.input_topic} has "
                f"{counts[self.input_topic]}: they must be equal (outputs are co-partitioned with inputs)"
            )
        reader = AIOKafkaConsumer(
            bootstrap_servers=self._settings.kafka_bootstrap, enable_auto_commit=False, fetch_max_wait_ms=10
        )
        try:
            await reader.start()
        except BaseException:
            await reader.stop()
            raise
        self._reader = reader
        bootstrap = self._settings.kafka_bootstrap
        producers = transactional_producers(bootstrap, linger_ms=2, max_batch_size=BATCH_BYTES)
        self._writers = FencedWriters(self.output_topic, producers)
        self._settler = asyncio.create_task(settle_forever(self._writers), name=f"settle {self.output_topic}")
        if self._closed:  # closed while starting: what this start opened is stopped too
            await self.stop()
            self._check_open()

    async def stop(self) -> None:
        await stop_settling(self._settler)
        self._settler = None
        if self._writers is not None:
            await self._writers.stop()
        if self._reader is not None:
            await self._reader.stop()

    async def close(self) -> None:
        """Stop for good, when the worker stops (``agents/shutdown.py``): open transactions are
        committed and the reader and writers stopped; a later ``start``, ``claim`` or ``write``
        raises ``LogClosed`` instead of opening clients again."""
        self._closed = True
        await self.stop()

    def _check_open(self) -> None:
        if self._closed:
            raise LogClosed(f"{self.output_topic}: the output log is closed (the worker is stopping)")

    async def claim(self, partition: int) -> None:
        """Fence every earlier writer of output ``partition`` before reading it back (``kafka/fenced.py``)."""
        self._check_open()
        assert self._writers is not None
        await self._writers.claim(partition)
        if self._closed:  # closed while claiming: the producer this claim started is stopped too
            await self._writers.release({partition})
            self._check_open()

    async def end(self, partition: int) -> int:
        """The output partition's end offset; LogNotReady if it is below one already seen.

        A log that reads shorter than this process saw it (acknowledged writes, records
        read) is not readable to its end yet — a broker restarting — never a shorter log.
        """
        self._check_open()
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
        self._check_open()
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
                yield Written(rec.offset, rec.value or b"", input_offset_of(rec.headers))

    async def write(self, records: Sequence[Outgoing]) -> list[int]:
        """Produce ``records`` in order through their partitions' fenced writers and wait for every
        ack: one ``send_batch`` per partition (``kafka/batches.py``). Their offsets, in order."""
        if not records:
            return []
        self._check_open()
        assert self._writers is not None
        by_partition: dict[int, list[Outbound]] = {}
        for r in records:
            by_partition.setdefault(r.partition, []).append(
                Outbound(
                    r.partition,
                    r.key,
                    r.value,
                    # ``lf-input`` first, then the trace context (tracing/spans.py)
                    [(INPUT_HEADER, str(r.input_offset).encode()), *r.headers]
                    if r.input_offset is not None
                    else r.headers,
                )
            )
        written = {p: iter(offsets) for p, offsets in (await self._writers.write(by_partition)).items()}
        offsets = [next(written[r.partition]) for r in records]
        for r, offset in zip(records, offsets, strict=True):
            if offset >= self._floor.get(r.partition, 0):
                self._floor[r.partition] = offset + 1
        return offsets
