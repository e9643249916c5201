"""Following one topic on request: each read covers only the records written since the last one.

A ``LogTail`` keeps, for a process's lifetime, one group-less consumer and its own position in every
partition of one topic. ``catch_up()`` asks the log ends and reads from those positions up to them,
handing each batch to ``fold`` in a worker thread (decoding large records does not hold the event
loop); ``fold`` changes what it builds while holding ``lock`` (decoding before it), and whoever reads
that state on the event loop takes the same lock. A record is read
and folded once per process, whoever asks: the cost of a read is the records written since the
previous one, not the size of the topic.

One read runs at a time per tail. A caller that finds one under way waits for it, then reads on
only if the log had grown past where that read stopped. A caller given up on by its deadline does
not cancel the read: it runs on (``asyncio.shield``) and the next caller finds its progress kept.
Between reads every partition is paused, so the consumer fetches nothing in the background and its
connection is free for the log-end requests. Partitions added to the topic are picked up from the
consumer's metadata (refreshed every ``metadata_max_age_ms``).

A topic deleted or re-created under a running process must not leave its readers stuck: a read
that makes no progress for ``STALL_POLLS`` polls fails (the caller's 503; the next caller reads
afresh), and a log end found below what was read means a new log — ``reset`` clears what was
built from the old one and the tail reads the new one from its start. A topic that vanishes (deleted,
or a broker back without it) is dropped from the consumer at the first metadata answer that lacks it
(``kafka/vanished.py``): left assigned, even paused, its partitions made aiokafka ask for metadata in
a loop without backoff, logging thousands of lines a second. The next read opens a new consumer, which
fails (503 naming the topic) until the topic exists again; what was built from the old log is reset
then (``reset``) and the topic read from its start, whatever its length.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Callable, Sequence
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition

from ledgerflow.config import Settings
from ledgerflow.errors import InfrastructureError, TopicsMissing
from ledgerflow.kafka.admin import partition_counts
from ledgerflow.kafka.logs import RawRecord
from ledgerflow.kafka.vanished import assignment_presence, on_metadata

log = logging.getLogger(__name__)

Fold = Callable[[Sequence[RawRecord]], None]
"""Applies a batch of records (in log order per partition) to the state a tail maintains."""

FETCH_BYTES = 8 * 1024 * 1024
POLL_MS = 1000
STALL_POLLS = 5
"""Empty polls below the log end after which a read gives up (the topic was deleted, or its
leader is gone): the next caller starts a fresh read."""


class LogTail:
    def __init__(
        self,
        settings: Settings,
        topic: str,
        fold: Fold,
        *,
        batch: int = 500,
        reset: Callable[[], None] = lambda: None,
    ) -> None:
        """``topic``: the full name; ``batch``: records per ``fold`` call at most; ``reset``: forget
        what ``fold`` built (called under ``lock`` when the topic turns out to be a new log)."""
        self.topic = topic
        self._reset = reset
        self.lock = threading.Lock()
        self.records_read = 0
        self._settings = settings
        self._fold = fold
        self._batch = batch
        self._positions: dict[int, int] = {}  # partition -> the next offset to read
        self._consumer: AIOKafkaConsumer | None = None
        self._starting = asyncio.Lock()
        self._task: asyncio.Task[None] | None = None
        self._closed = False
        self._vanished = False  # the topic left the consumer's metadata: its partitions were dropped

    @property
    def closed(self) -> bool:
        return self._closed

    def partitions(self) -> int:
        """How many partitions the tail reads (0 before its first ``catch_up``)."""
        return 0 if self._consumer is None else len(self._consumer.assignment())

    async def catch_up(self) -> None:
        """Fold every record written before this call; raises what the broker raised."""
        consumer = await self._started()
        if self._vanished:  # dropped while a read was under way: nothing to read, and no stale answer
            raise self._missing()
        tps = self._assigned(consumer)
        ends = await consumer.end_offsets(tps)
        idle = self._task is None or self._task.done()
        if idle and any(end < self._positions.get(tp.partition, 0) for tp, end in ends.items()):
            log.warning(
                "log tail %s: the log ends below what was read: a new log; reading it from its start",
                self.topic,
            )
            with self.lock:
                self._reset()
                self._positions.clear()
        while not self._reached(ends):
            ours = self._task is None or self._task.done()
            if ours:
                self._task = asyncio.create_task(self._read(consumer, ends), name=f"tail:{self.topic}")
                self._task.add_done_callback(_retrieved)
            assert self._task is not None
            await asyncio.shield(self._task)
            if ours and not self._reached(ends):
                raise InfrastructureError(f"the reader of {self.topic} stopped short of the log end")

    async def close(self) -> None:
        self._closed = True
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
        consumer, self._consumer = self._consumer, None
        if consumer is not None:
            await consumer.stop()

    def _reached(self, ends: dict[TopicPartition, int]) -> bool:
        return all(self._positions.get(tp.partition, 0) >= end for tp, end in ends.items())

    async def _started(self) -> AIOKafkaConsumer:
        async with self._starting:
            if self._closed:
                raise InfrastructureError(f"the reader of {self.topic} is closed (the process is stopping)")
            if self._vanished and self._consumer is not None and (self._task is None or self._task.done()):
                consumer, self._consumer, self._vanished = self._consumer, None, False
                await consumer.stop()
                # The topic found again is a new log, however long: read from its start, nothing kept
                # (only one shorter than what was read was told apart, by its end).
                with self.lock:
                    self._reset()
                    self._positions.clear()
            if self._consumer is None:
                try:
                    count = (await partition_counts(self._settings, [self.topic]))[self.topic]
                except TopicsMissing:
                    raise self._missing() from None
                consumer = AIOKafkaConsumer(
                    bootstrap_servers=self._settings.kafka_bootstrap,
                    enable_auto_commit=False,
                    auto_offset_reset="earliest",  # a position retention deleted: the oldest record kept
                    fetch_max_wait_ms=50,
                    max_partition_fetch_bytes=FETCH_BYTES,
                )
                try:
                    await consumer.start()
                except BaseException:
                    await consumer.stop()
                    raise
                if self.closed:  # closed while it started: ``close`` found no consumer to stop
                    await consumer.stop()
                    raise InfrastructureError(
                        f"the reader of {self.topic} is closed (the process is stopping)"
                    )
                self._assign(consumer, count)
                self._consumer = consumer
                on_metadata(consumer, self._metadata_changed)  # stops with the consumer
            return self._consumer

    def _missing(self) -> TopicsMissing:
        return TopicsMissing(
            f"Kafka topic {self.topic} missing (deleted, or its broker came back without it): retry later"
        )

    def _metadata_changed(self) -> None:
        """After each metadata answer: a topic no longer there is dropped from the consumer at once."""
        consumer = self._consumer
        if consumer is None or self._vanished:
            return
        if assignment_presence(consumer).gone:  # its one topic
            self._vanished = True
            consumer.assign([])
            log.warning(
                "log tail %s: the topic is missing (deleted, or its broker came back without it): "
                "stopped reading it; the next read looks for it again",
                self.topic,
            )

    def _assigned(self, consumer: AIOKafkaConsumer) -> list[TopicPartition]:
        """Every partition, with any the topic gained since the last read."""
        known = consumer.partitions_for_topic(self.topic) or set()
        idle = self._task is None or self._task.done()  # assigning resets the positions of a read
        if len(known) > self.partitions() and idle:
            self._assign(consumer, len(known))
        return sorted(consumer.assignment())

    def _assign(self, consumer: AIOKafkaConsumer, count: int) -> None:
        tps = [TopicPartition(self.topic, p) for p in range(count)]
        consumer.assign(tps)
        consumer.pause(*tps)

    async def _read(self, consumer: AIOKafkaConsumer, ends: dict[TopicPartition, int]) -> None:
        for tp, end in sorted(ends.items()):
            if self._positions.get(tp.partition, 0) >= end:
                continue
            start = self._positions.get(tp.partition)
            if start is None:
                start = (await consumer.beginning_offsets([tp]))[tp]
            consumer.seek(tp, start)
            consumer.resume(tp)
            try:
                stalled = 0
                while (was := await consumer.position(tp)) < end:
                    got = await consumer.getmany(tp, timeout_ms=POLL_MS, max_records=self._batch)
                    batch = [_raw(tp, rec) for rec in got.get(tp, [])]
                    reached = await consumer.position(tp)  # past transaction markers too
                    stalled = 0 if batch or reached > was else stalled + 1
                    if stalled >= STALL_POLLS:
                        raise InfrastructureError(
                            f"the reader of {self.topic} made no progress in {STALL_POLLS} polls below "
                            "the log end (the topic deleted or its leader gone?)"
                        )
                    await asyncio.to_thread(self._apply, batch, tp.partition, reached)
                self._apply([], tp.partition, await consumer.position(tp))  # nothing left but markers
            finally:
                consumer.pause(tp)

    def _apply(self, batch: list[RawRecord], partition: int, position: int) -> None:
        if batch:
            self._fold(batch)
            self.records_read += len(batch)
        self._positions[partition] = position


def _raw(tp: TopicPartition, rec: Any) -> RawRecord:
    return RawRecord(
        tp.topic, tp.partition, rec.offset, rec.key, rec.value, tuple(rec.headers or ()), rec.timestamp
    )


def _retrieved(task: asyncio.Task[None]) -> None:
    """A read whose callers all gave up still has its failure logged, once."""
    if not task.cancelled() and task.exception() is not None:
        log.warning("log tail %s: a read failed: %r", task.get_name(), task.exception())
