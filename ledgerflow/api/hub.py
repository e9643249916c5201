"""One Kafka reader per edge process, fanning records out to every SSE subscriber.

A subscriber joins with the positions it has already seen (from its cursor, or "now").
Joining happens in three steps:
1. Snapshot the hub's read position per partition and register the subscriber, with no
   ``await`` in between: from here on the hub queues every matching record at or past
   the snapshot.
2. Catch up: read each partition from the subscriber's next offset up to the snapshot
   with a short-lived consumer (no consumer group), yielding frames in offset order.
3. Drain the queue: live frames, in order, with nothing missed or repeated.
A subscriber whose queue fills up is marked overflowed; its stream ends with
``event: overflow`` and the client resumes from its cursor.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass, field

import orjson
from aiokafka import AIOKafkaConsumer, ConsumerRecord, TopicPartition

from ledgerflow.api import cursors
from ledgerflow.config import Settings
from ledgerflow.contracts import codec
from ledgerflow.contracts.events import Event
from ledgerflow.contracts.payloads import PolicyDecision
from ledgerflow.errors import DecodeError
from ledgerflow.kafka_admin import partition_counts
from ledgerflow.topics import CONVERSATION_EVENTS, POLICY_DECISIONS

log = logging.getLogger(__name__)

CODES = {CONVERSATION_EVENTS: "e", POLICY_DECISIONS: "d"}


@dataclass(frozen=True, slots=True)
class Frame:
    """A data frame: a decoded record and where it came from."""

    key: cursors.TopicPartitionKey
    offset: int
    tenant: str
    conversation_id: str
    event_type: str
    data: bytes


@dataclass(eq=False)
class Subscriber:
    tenant: str
    conversation_id: str | None
    start: dict[cursors.TopicPartitionKey, int]  # first offset the hub delivers to us
    queue: asyncio.Queue[Frame] = field(default_factory=lambda: asyncio.Queue(maxsize=1000))
    overflowed: bool = False

    def wants(self, frame: Frame) -> bool:
        return (
            frame.tenant == self.tenant
            and (self.conversation_id is None or frame.conversation_id == self.conversation_id)
            and frame.offset >= self.start.get(frame.key, 0)
        )


class Hub:
    """Reads ``conversation.events`` and ``policy.decisions`` and fans frames out."""

    def __init__(self, settings: Settings, queue_size: int = 1000) -> None:
        self._settings = settings
        self._queue_size = queue_size
        self._topics = {settings.topic(base): code for base, code in CODES.items()}
        self._codes = {code: name for name, code in self._topics.items()}
        self._consumer: AIOKafkaConsumer | None = None
        self._task: asyncio.Task[None] | None = None
        self._positions: dict[cursors.TopicPartitionKey, int] = {}
        self._by_tenant: dict[str, set[Subscriber]] = {}
        self.partitions: dict[str, int] = {}
        self.frames_sent = 0
        self.dropped = 0
        self.healthy = False

    # -- lifecycle -------------------------------------------------------------------
    async def start(self) -> None:
        consumer = AIOKafkaConsumer(
            bootstrap_servers=self._settings.kafka_bootstrap, enable_auto_commit=False,
            auto_offset_reset="latest", fetch_max_wait_ms=20, max_poll_records=2000,
        )
        self.partitions = await partition_counts(self._settings, list(self._topics))
        await consumer.start()
        tps = [TopicPartition(t, p) for t, n in self.partitions.items() for p in range(n)]
        consumer.assign(tps)
        ends = await consumer.end_offsets(tps)
        for tp in tps:
            consumer.seek(tp, ends[tp])
            self._positions[(self._topics[tp.topic], tp.partition)] = ends[tp]
        self._consumer = consumer
        self._task = asyncio.create_task(self._run(), name="sse-hub")
        self.healthy = True

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        if self._consumer is not None:
            await self._consumer.stop()

    async def _run(self) -> None:
        assert self._consumer is not None
        while True:
            try:
                batches = await self._consumer.getmany(timeout_ms=500)
                self.healthy = True
            except Exception:  # noqa: BLE001 - the reader must outlive broker hiccups
                self.healthy = False
                log.exception("SSE hub: Kafka read failed; retrying")
                await asyncio.sleep(1.0)
                continue
            for tp, records in batches.items():
                code = self._topics[tp.topic]
                for record in records:
                    frame = self.frame_of(code, record)
                    self._positions[(code, tp.partition)] = record.offset + 1
                    if frame is not None:
                        self._dispatch(frame)

    # -- fan-out ---------------------------------------------------------------------
    def _dispatch(self, frame: Frame) -> None:
        for sub in self._by_tenant.get(frame.tenant, ()):
            if sub.overflowed or not sub.wants(frame):
                continue
            try:
                sub.queue.put_nowait(frame)
            except asyncio.QueueFull:
                sub.overflowed = True  # the stream ends with `overflow` before its next frame
                self.dropped += 1

    def stream_keys(self, tenant: str, conversation_id: str | None) -> list[cursors.TopicPartitionKey]:
        """The topic-partitions a stream reads: all of them, or the conversation's own."""
        keys = []
        for topic, code in self._topics.items():
            count = self.partitions[topic]
            parts = range(count) if conversation_id is None else [partition_for(conversation_id, count)]
            keys += [(code, p) for p in parts]
        return keys

    def subscribe(
        self, tenant: str, conversation_id: str | None, seen: dict[cursors.TopicPartitionKey, int] | None
    ) -> tuple[Subscriber, dict[cursors.TopicPartitionKey, tuple[int, int]]]:
        """Step 1: register; return the subscriber and the ranges it must catch up on.

        ``seen`` maps topic-partitions to the last offset the client has; None = start now.
        """
        keys = self.stream_keys(tenant, conversation_id)
        snapshot = {k: self._positions[k] for k in keys}
        sub = Subscriber(tenant, conversation_id, snapshot, asyncio.Queue(maxsize=self._queue_size))
        self._by_tenant.setdefault(tenant, set()).add(sub)
        gaps = {}
        if seen is not None:
            for k in keys:
                first = seen.get(k, -1) + 1
                if first < snapshot[k]:
                    gaps[k] = (first, snapshot[k])
        return sub, gaps

    def unsubscribe(self, sub: Subscriber) -> None:
        subs = self._by_tenant.get(sub.tenant)
        if subs is not None:
            subs.discard(sub)
            if not subs:
                del self._by_tenant[sub.tenant]

    @property
    def subscribers(self) -> int:
        return sum(len(s) for s in self._by_tenant.values())

    def live_positions(self, keys: Iterable[cursors.TopicPartitionKey]) -> dict[cursors.TopicPartitionKey, int]:
        """Last offset per topic-partition the hub has read (-1 when none)."""
        return {k: self._positions[k] - 1 for k in keys}

    async def log_starts(self, keys: Iterable[cursors.TopicPartitionKey]) -> dict[cursors.TopicPartitionKey, int]:
        assert self._consumer is not None
        tps = [TopicPartition(self._codes[c], p) for c, p in keys]
        begins = await self._consumer.beginning_offsets(tps)
        return {(self._topics[tp.topic], tp.partition): off for tp, off in begins.items()}

    # -- step 2: catch-up ------------------------------------------------------------
    async def catch_up(
        self, sub: Subscriber, gaps: dict[cursors.TopicPartitionKey, tuple[int, int]]
    ) -> AsyncIterator[Frame]:
        """Frames in [first, end) per partition that match the subscriber, in offset order."""
        if not gaps:
            return
        consumer = AIOKafkaConsumer(bootstrap_servers=self._settings.kafka_bootstrap,
                                    enable_auto_commit=False, fetch_max_wait_ms=20)
        await consumer.start()
        try:
            tps = {TopicPartition(self._codes[c], p): (c, rng) for (c, p), rng in gaps.items()}
            consumer.assign(list(tps))
            for tp, (_, (first, _end)) in tps.items():
                consumer.seek(tp, first)
            for tp, (code, (_, end)) in tps.items():
                # One partition at a time keeps per-partition order simple and exact.
                done = False
                while not done:
                    batch = await consumer.getmany(tp, timeout_ms=1000, max_records=500)
                    for record in batch.get(tp, []):
                        if record.offset >= end:
                            done = True
                            break
                        frame = self.frame_of(code, record)
                        if frame is not None and frame.tenant == sub.tenant and (
                            sub.conversation_id is None or frame.conversation_id == sub.conversation_id
                        ):
                            yield frame
                        if record.offset == end - 1:
                            done = True
                    if not batch and await consumer.position(tp) >= end:
                        done = True
        finally:
            await consumer.stop()

    # -- decoding --------------------------------------------------------------------
    def frame_of(self, code: str, record: ConsumerRecord) -> Frame | None:
        try:
            event = codec.decode(record.value)
        except DecodeError:
            return None  # the worker dead-letters it; subscribers only see valid events
        return Frame(
            key=(code, record.partition), offset=record.offset, tenant=event.tenant,
            conversation_id=_conversation_of(event), event_type=event.type,
            data=orjson.dumps(event.to_json()),
        )


def _conversation_of(event: Event) -> str:
    payload = event.payload
    return payload.conversation_id if isinstance(payload, PolicyDecision) else event.subject


def partition_for(key: str, partitions: int) -> int:
    """Kafka's default partitioner (murmur2 of the key bytes), as producers use it."""
    from aiokafka.partitioner import murmur2

    return (murmur2(key.encode()) & 0x7FFFFFFF) % partitions
