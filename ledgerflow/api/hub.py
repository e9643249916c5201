"""One Kafka reader per edge process, fanning records out to every SSE subscriber.

A subscriber joins with the positions it has already been served (from its cursor, or
"now"). Joining happens in three steps:
1. ``subscribe``: snapshot the hub's read position per partition and register the
   subscriber, with no ``await`` in between: from here on the hub queues every matching
   record at or past the snapshot.
2. ``catch_up``: read each partition from the subscriber's next offset up to the
   snapshot with a short-lived consumer (no consumer group), in offset order, holding
   one of ``CATCH_UP_SLOTS``. A broker that stops answering makes the reads come back
   empty rather than fail: the stream bounds that (``catchup_watch``, ``CATCH_UP_STALL_S``).
3. Drain the mailbox: live frames, in order, with nothing missed or repeated.

Every live frame carries the hub's read positions at the moment it was fanned out (its
``mark``): a stream that delivers it has been served up to there on every partition (see
``cursors.served``). A subscriber whose mailbox is full is marked overflowed and removed
at once; its stream delivers what it already holds, ends with ``event: overflow``, and
the client resumes from its cursor.

A log deleted and re-created under a running edge (or truncated) shows up as a record below the
hub's read position on its partition, or as a log end below it (``kafka_status``'s probe asks every
partition): the hub's positions there named records that no longer exist, so a stream registered with
them would skip the new log's records, silently, until its offsets passed the old ones. The hub takes
the new log's position and ends every stream reading that partition (``Subscriber.log_moved``: its
stream ends with ``unavailable``); each reconnects with its last id, which the new log does not reach,
so it restarts with ``event: reset`` (``cursor beyond the log end``), never silently. A re-created log
that is already longer than what the hub read cannot be told apart (Kafka's clients do not expose
topic ids here).

Topics that vanish (deleted, or a broker came back without them) are dropped from the reader at the
first metadata answer that lacks them (``kafka/vanished.py``): a partition without a leader left
assigned made aiokafka ask for metadata in a loop without backoff, logging thousands of lines a
second. Every stream reading them ends with ``unavailable`` (``retry:``), and streams and steps that
need them answer 503 + Retry-After naming them (``require_topics``) while the hub looks for them again,
waiting ``REATTACH_FIRST_S`` doubling to ``REATTACH_CAP_S`` in between. Once they exist the hub reads
them again from its old position, or from the new log's end when that is below it (as ``log_moved``).

Kafka's health is not inferred from the reader alone (a paused broker leaves ``getmany``
returning nothing, without an error): ``kafka_status`` asks the broker for the log end
offsets with a deadline of ``PROBE_TIMEOUT_S``; concurrent callers share one probe, and
its answer is reused for ``PROBE_CACHE_S``. Every other broker call a request waits for
(log starts and ends for a cursor) has the same deadline and fails with
``InfrastructureError`` (503 + Retry-After) instead of hanging.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
from collections import deque
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Iterable
from dataclasses import dataclass, field

import orjson
from aiokafka import AIOKafkaConsumer, ConsumerRecord, TopicPartition
from aiokafka.errors import KafkaError

from ledgerflow.api import cursors
from ledgerflow.api.faults import DEADLINE_S
from ledgerflow.config import Settings
from ledgerflow.contracts.events import Event
from ledgerflow.contracts.inputs import decode_input
from ledgerflow.contracts.payloads import PolicyDecision
from ledgerflow.errors import DecodeError, InfrastructureError, TopicsMissing
from ledgerflow.kafka.admin import partition_counts
from ledgerflow.kafka.logs import stop_reader
from ledgerflow.kafka.placement import Placements, placement
from ledgerflow.kafka.vanished import Presence, assignment_presence, on_metadata
from ledgerflow.metrics import SSE_CATCH_UPS
from ledgerflow.retry import delays
from ledgerflow.topics import CONVERSATION_EVENTS, POLICY_DECISIONS
from ledgerflow.tracing import spans

log = logging.getLogger(__name__)

CODES = {CONVERSATION_EVENTS: "e", POLICY_DECISIONS: "d"}
BASES = {code: base for base, code in CODES.items()}
DEFAULT_QUEUE = 1000
CATCH_UP_SLOTS = 32  # short-lived catch-up consumers open at once (reconnect storms)
TENANT_SHARE = 4
"""One tenant's catch-ups hold at most a quarter of the slots (``tenant_catch_up_slots``)."""
CATCH_UP_STALL_S = 3 * DEADLINE_S
"""How long a catch-up may scan nothing before its stream ends with ``unavailable`` and frees its
slot (``catchup_watch``): three times the bound of one dependency call, so a broker that is only
slow (a leader election, a long pause of its JVM) is waited out, and a paused or unreachable one
frees the slot long before the client's token expires."""
_CATCH_UP_BATCH = 500
_NOT_READ = 1 << 63  # a partition the stream does not read: never delivered
PROBE_TIMEOUT_S = 2.0
PROBE_CACHE_S = 1.0
REATTACH_FIRST_S, REATTACH_CAP_S = 1.0, 30.0
"""Waits between looks for vanished topics: 1 s doubling to 30 s (one admin request each)."""
LOOKUP_TIMEOUT_S = 10.0


@dataclass(frozen=True, slots=True)
class Frame:
    """A data frame: a decoded record, where it came from, and the hub's mark (live only)."""

    key: cursors.TopicPartitionKey
    offset: int
    tenant: str
    conversation_id: str
    event_type: str
    data: bytes
    mark: dict[cursors.TopicPartitionKey, int] | None = None


@dataclass(frozen=True, slots=True)
class CatchUpBatch:
    """Frames of one partition read by a catch-up, and the offset it has scanned up to."""

    key: cursors.TopicPartitionKey
    frames: list[Frame]
    scanned_to: int


class Mailbox:
    """A subscriber's bounded FIFO of live frames, which its stream can also be woken from."""

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self._frames: deque[Frame] = deque()
        self._ready = asyncio.Event()

    def offer(self, frame: Frame) -> bool:
        """Queue ``frame``; False (and nothing queued) when full."""
        if len(self._frames) >= self.capacity:
            return False
        self._frames.append(frame)
        self._ready.set()
        return True

    def take(self, limit: int, max_bytes: int | None = None) -> list[Frame]:
        """Up to ``limit`` queued frames, oldest first, and (with ``max_bytes``) no more data than
        that beyond the first frame: one write's worth. The frames are shared by every subscriber
        of a record, but the write a stream builds of them is its own."""
        if max_bytes is None:
            count = min(limit, len(self._frames))
            return [self._frames.popleft() for _ in range(count)]
        taken: list[Frame] = []
        size = 0
        while self._frames and len(taken) < limit:
            size += len(self._frames[0].data)
            if taken and size > max_bytes:
                break
            taken.append(self._frames.popleft())
        return taken

    async def wait(self, timeout: float) -> None:
        """Return when a frame is queued, ``wake`` is called, or ``timeout`` passes."""
        if self._frames:
            return
        self._ready.clear()
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(max(timeout, 0.0)):
                await self._ready.wait()

    def wake(self) -> None:
        self._ready.set()

    async def get(self) -> Frame:
        """The next frame, waiting as long as it takes (``asyncio.Queue.get`` compatible)."""
        while not self._frames:
            self._ready.clear()
            await self._ready.wait()
        return self._frames.popleft()

    def qsize(self) -> int:
        return len(self._frames)


@dataclass(eq=False)
class Subscriber:
    tenant: str
    conversation_id: str | None
    start: dict[cursors.TopicPartitionKey, int]  # first offset the hub delivers live
    queue: Mailbox = field(default_factory=lambda: Mailbox(DEFAULT_QUEUE))
    overflowed: bool = False
    log_moved: str | None = None  # why the stream must end: a log it reads was re-created under the hub

    def matches(self, frame: Frame) -> bool:
        """The frame belongs to this stream (tenant, and conversation if any)."""
        return frame.tenant == self.tenant and (
            self.conversation_id is None or frame.conversation_id == self.conversation_id
        )


def tenant_catch_up_slots(slots: int) -> int:
    """How many of the edge's ``slots`` catch-ups one tenant may hold at once: a quarter (at least
    one). Its further catch-ups wait for its own, so one tenant resuming many streams from the log's
    start (each scanning every tenant's records) leaves the other tenants most of the slots."""
    return max(1, slots // TENANT_SHARE)


@dataclass(slots=True)
class TenantShare:
    """A tenant's share of the catch-up slots, kept while one of its catch-ups holds or waits for one."""

    slots: asyncio.Semaphore
    users: int = 0  # catch-ups holding or waiting for one of its slots


class Hub:
    """Reads ``conversation.events`` and ``policy.decisions`` and fans frames out."""

    def __init__(
        self, settings: Settings, queue_size: int = DEFAULT_QUEUE, catch_up_slots: int = CATCH_UP_SLOTS
    ) -> None:
        self._settings = settings
        self.queue_size = queue_size
        self._topics = {settings.topic(base): code for base, code in CODES.items()}
        self._codes = {code: name for name, code in self._topics.items()}
        self._consumer: AIOKafkaConsumer | None = None
        self._task: asyncio.Task[None] | None = None
        self._positions: dict[cursors.TopicPartitionKey, int] = {}
        # (tenant, conversation id or None for tenant streams) -> subscribers
        self._subs: dict[tuple[str, str | None], set[Subscriber]] = {}
        self._catch_up_slots = asyncio.Semaphore(catch_up_slots)
        self._catch_up_slots_count = catch_up_slots
        # tenant -> its share (tenant_catch_up_slots), while it has a catch-up: one entry per tenant
        # that ever resumed a stream was kept for good
        self._tenant_slots: dict[str, TenantShare] = {}
        self.partitions: dict[str, int] = {}
        self._turns_placed: Placements | None = None  # turns in their conversation's partition
        self.frames_sent = 0
        self.dropped = 0
        self.healthy = False
        self._probe: asyncio.Task[str] | None = None
        self._probed_at = 0.0
        self._missing: set[str] = set()  # topics whose partitions were dropped: they do not exist
        self._looking: asyncio.Task[None] | None = None  # looks for them until they exist again
        self._unwatch: Callable[[], None] | None = None
        self._epoch = 0  # bumped at each change of the assignment (a poll under way then is read again)
        self.reattach_backoff = (REATTACH_FIRST_S, REATTACH_CAP_S)

    @property
    def catch_up_slots(self) -> int:
        return self._catch_up_slots_count

    @catch_up_slots.setter
    def catch_up_slots(self, slots: int) -> None:
        """Set at start-up (``LEDGERFLOW_SSE_CATCH_UP_SLOTS``), before any stream takes a slot."""
        self._catch_up_slots = asyncio.Semaphore(slots)
        self._catch_up_slots_count = slots
        self._tenant_slots = {}

    # -- lifecycle -------------------------------------------------------------------
    async def start(self) -> None:
        consumer = AIOKafkaConsumer(
            bootstrap_servers=self._settings.kafka_bootstrap,
            enable_auto_commit=False,
            # Only used when the read position falls out of the log (retention deleted records the
            # hub had not read yet): go on from the oldest record kept, never jump to the end.
            auto_offset_reset="earliest",
            fetch_max_wait_ms=20,
            max_poll_records=2000,
        )
        self.partitions = await partition_counts(self._settings, list(self._topics))
        turns = self.partitions.get(self._settings.topic(CONVERSATION_EVENTS))
        self._turns_placed = Placements(turns) if turns else None
        await consumer.start()
        tps = [TopicPartition(t, p) for t, n in self.partitions.items() for p in range(n)]
        consumer.assign(tps)
        ends = await consumer.end_offsets(tps)
        for tp in tps:
            consumer.seek(tp, ends[tp])
            self._positions[(self._topics[tp.topic], tp.partition)] = ends[tp]
        self._consumer = consumer
        self._unwatch = on_metadata(consumer, self._metadata_changed)
        self._task = asyncio.create_task(self._run(), name="sse-hub")
        self._task.add_done_callback(self._reader_ended)
        self.healthy = True

    async def stop(self) -> None:
        """Stop reading and wake every stream (they see the edge closing and end)."""
        self.wake_all()
        if self._probe is not None and not self._probe.done():
            self._probe.cancel()
        if self._unwatch is not None:
            self._unwatch()
            self._unwatch = None
        if self._looking is not None:
            self._looking.cancel()
            await asyncio.gather(self._looking, return_exceptions=True)
        await stop_reader(self._task, self._consumer)

    def wake_all(self) -> None:
        """Wake every subscriber's stream, e.g. to notice that the edge is closing."""
        for subs in self._subs.values():
            for sub in subs:
                sub.queue.wake()

    def _reader_ended(self, task: asyncio.Task[None]) -> None:
        self.healthy = False
        if not task.cancelled() and task.exception() is not None:
            log.error("SSE hub reader died; /readyz now fails", exc_info=task.exception())

    async def _run(self) -> None:
        assert self._consumer is not None
        while True:
            epoch = self._epoch
            try:
                batches = await self._consumer.getmany(timeout_ms=500)
                self.healthy = True
            except KafkaError:
                self.healthy = False
                log.exception("SSE hub: Kafka read failed; retrying")
                await asyncio.sleep(1.0)
                continue
            if epoch != self._epoch:
                # The assignment changed while this poll waited: its records may be ones the new
                # assignment fetches again from the hub's positions (or ones it fetched past them).
                self._seek_assigned()
                continue
            for tp, records in batches.items():
                code = self._topics[tp.topic]
                key = (code, tp.partition)
                for record in records:
                    self.advance(key, record.offset)
                    if self._subs:  # nobody listening: no decoding
                        frame = self.frame_of(code, record)
                        if frame is not None:
                            with spans.consumed(record, "sse", []):  # trace hook: the fan-out
                                self._dispatch(frame)

    # -- topics that vanish ------------------------------------------------------------
    def _key(self, tp: TopicPartition) -> cursors.TopicPartitionKey:
        return (self._topics[tp.topic], tp.partition)

    def _seek_assigned(self) -> None:
        """Every assigned partition read on from the hub's position (an assignment resets them)."""
        assert self._consumer is not None
        for tp in self._consumer.assignment():
            self._consumer.seek(tp, self._positions[self._key(tp)])

    def _assign(self, tps: Iterable[TopicPartition]) -> None:
        assert self._consumer is not None
        self._consumer.assign(sorted(tps))
        self._seek_assigned()
        self._epoch += 1

    def _metadata_changed(self) -> None:
        """After each metadata answer (``vanished.on_metadata``): drop partitions that no longer exist."""
        consumer = self._consumer
        if consumer is None:
            return
        found = assignment_presence(consumer)
        if found.gone:
            self._drop(found)

    def _drop(self, found: Presence) -> None:
        """Stop reading ``found.gone``, end the streams that read them, and look for them again."""
        self._assign(found.kept)
        missing = found.missing_topics
        self._missing.update(missing)
        reason = f"{_topics_named(missing)} missing (deleted, or its broker came back without it)"
        log.warning(
            "SSE hub: %s: stopped reading it; looking for it again every %g s at most",
            reason,
            self.reattach_backoff[1],
        )
        gone = {self._key(tp) for tp in found.gone}
        for sub in [sub for subs in self._subs.values() for sub in subs if gone & sub.start.keys()]:
            sub.log_moved = f"{reason}: reconnect later with your last event id"
            self.unsubscribe(sub)
            sub.queue.wake()
        if self._looking is None or self._looking.done():
            self._looking = asyncio.create_task(self._look_for_topics(), name="sse-hub-topics")

    def require_topics(self) -> None:
        """TopicsMissing (503 naming them) while topics the hub reads do not exist."""
        if self._missing:
            raise TopicsMissing(
                f"{_topics_named(sorted(self._missing))} missing (deleted, or its broker came back "
                "without it): the edge reads it again once it exists; retry later"
            )

    async def _look_for_topics(self) -> None:
        """Until every missing topic exists again (one admin request per look, with backoff)."""
        first, cap = self.reattach_backoff
        for wait in delays(first, cap):
            await asyncio.sleep(wait)
            if not self._missing:
                return
            try:
                async with asyncio.timeout(LOOKUP_TIMEOUT_S):
                    counts = await partition_counts(self._settings, sorted(self._missing))
                    await self._reattach(counts)
            except Exception as exc:  # still missing, or the broker does not answer: look again later
                log.debug("SSE hub: %s still missing (%r)", sorted(self._missing), exc)
                continue
            if not self._missing:  # else one vanished during this look (``_drop`` saw this task running)
                return

    async def _reattach(self, counts: dict[str, int]) -> None:
        """Read the topics in ``counts`` (full name -> partitions) again: from the hub's old position,
        or from the log's end when it is below that (a new log: ``log_moved``'s rule)."""
        consumer = self._consumer
        assert consumer is not None
        back = [TopicPartition(t, p) for t, n in counts.items() for p in range(n)]
        ends = await consumer.end_offsets(back)  # also brings them into the consumer's metadata
        for topic, count in counts.items():
            code = self._topics[topic]
            for key in [k for k in self._positions if k[0] == code and k[1] >= count]:
                del self._positions[key]
            self.partitions[topic] = count
            if topic == self._settings.topic(CONVERSATION_EVENTS):
                self._turns_placed = Placements(count)
        for tp in back:
            key = self._key(tp)
            self._positions[key] = min(self._positions.get(key, 0), ends[tp])
        self._assign(set(consumer.assignment()) | set(back))
        self._missing -= set(counts)
        log.warning("SSE hub: %s exist again: reading them", _topics_named(sorted(counts)))

    def advance(self, key: cursors.TopicPartitionKey, offset: int) -> None:
        """The reader got the record at ``offset`` of ``key``. Offsets only grow on one log: one
        below the read position means the log was deleted and re-created (or truncated)."""
        if offset < self._positions[key]:
            self.log_moved(key, offset, f"at offset {offset}")
        self._positions[key] = offset + 1

    def log_moved(self, key: cursors.TopicPartitionKey, position: int, seen: str) -> None:
        """``key``'s log is behind what the hub read (``seen``): read on from ``position`` and end
        every stream reading ``key`` (their positions name records of the old log)."""
        code, partition = key
        reason = (
            f"the log of {code}{partition} restarted ({seen}, below offset {self._positions[key]} read "
            "before): it was deleted and re-created; reconnect with your last event id"
        )
        log.warning("SSE hub: %s", reason)
        self._positions[key] = position
        for sub in [sub for subs in self._subs.values() for sub in subs if key in sub.start]:
            sub.log_moved = reason
            self.unsubscribe(sub)
            sub.queue.wake()

    # -- fan-out ---------------------------------------------------------------------
    def _dispatch(self, frame: Frame) -> None:
        targets = [
            sub
            for bucket in ((frame.tenant, None), (frame.tenant, frame.conversation_id))
            for sub in self._subs.get(bucket, ())
            if frame.offset >= sub.start.get(frame.key, _NOT_READ)
        ]
        if not targets:
            return
        frame = dataclasses.replace(frame, mark=dict(self._positions))
        overflowed = [sub for sub in targets if not sub.queue.offer(frame)]
        for sub in overflowed:
            sub.overflowed = True  # its stream delivers what it holds, then `overflow`
            self.dropped += 1
            self.unsubscribe(sub)
            sub.queue.wake()

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
        """Step 1: register; return the subscriber and the ranges [first, end) to catch up on.

        ``seen`` maps topic-partitions to the last offset the client was served; None =
        start now. Synchronous on purpose: no record can slip between snapshot and
        registration.
        """
        keys = self.stream_keys(tenant, conversation_id)
        snapshot = {k: self._positions[k] for k in keys}
        # A cursor another edge served past this hub's read position: live starts after it.
        start = {k: max(off, (seen or {}).get(k, -1) + 1) for k, off in snapshot.items()}
        sub = Subscriber(tenant, conversation_id, start, Mailbox(self.queue_size))
        self._subs.setdefault((tenant, conversation_id), set()).add(sub)
        gaps = {}
        if seen is not None:
            for k in keys:
                first = seen.get(k, -1) + 1
                if first < snapshot[k]:
                    gaps[k] = (first, snapshot[k])
        return sub, gaps

    def unsubscribe(self, sub: Subscriber) -> None:
        """Forget ``sub`` (idempotent): the hub holds nothing of it afterwards."""
        bucket = (sub.tenant, sub.conversation_id)
        subs = self._subs.get(bucket)
        if subs is not None:
            subs.discard(sub)
            if not subs:
                del self._subs[bucket]

    @property
    def subscribers(self) -> int:
        return sum(len(s) for s in self._subs.values())

    def live_positions(self, keys: Iterable[cursors.TopicPartitionKey]) -> cursors.Positions:
        """Last offset per topic-partition the hub has read (-1 when none)."""
        return {k: self._positions[k] - 1 for k in keys}

    async def log_starts(self, keys: Iterable[cursors.TopicPartitionKey]) -> cursors.Positions:
        """First retained offset of each topic-partition; InfrastructureError if Kafka fails or is silent."""
        return await self._offsets(keys, "start")

    async def log_ends(self, keys: Iterable[cursors.TopicPartitionKey]) -> cursors.Positions:
        """Next offset to be written on each topic-partition (the log end), from the broker."""
        return await self._offsets(keys, "end")

    async def _offsets(self, keys: Iterable[cursors.TopicPartitionKey], which: str) -> cursors.Positions:
        assert self._consumer is not None
        tps = [TopicPartition(self._codes[c], p) for c, p in keys]
        ask = self._consumer.beginning_offsets if which == "start" else self._consumer.end_offsets
        try:
            async with asyncio.timeout(PROBE_TIMEOUT_S):
                found = await ask(tps)
        except TimeoutError:
            raise InfrastructureError(
                f"Kafka did not answer the log {which} offsets within {PROBE_TIMEOUT_S:g} s"
            ) from None
        except KafkaError as exc:
            raise InfrastructureError(f"Kafka did not answer the log {which} offsets: {exc!r}") from None
        return {(self._topics[tp.topic], tp.partition): off for tp, off in found.items()}

    async def kafka_status(self) -> str:
        """``ok`` when the reader runs and the broker answered a probe (at most ``PROBE_CACHE_S`` ago).

        Otherwise the reason, e.g. ``no answer within 2 s``, or ``topic <name> missing`` when the
        broker answers but one of the hub's topics was deleted. Never waits longer than
        ``PROBE_TIMEOUT_S``; concurrent callers share one probe.
        """
        if self._missing:
            return topics_missing(sorted(self._missing)) or "topics missing"
        if not self.healthy:
            return self._missing_topics() or "reader failing"
        now = asyncio.get_running_loop().time()
        if self._probe is None or (self._probe.done() and now - self._probed_at >= PROBE_CACHE_S):
            self._probe = asyncio.create_task(self._probe_once(), name="kafka-probe")
            self._probed_at = now
        return await asyncio.shield(self._probe)

    async def _probe_once(self) -> str:
        if self._consumer is None:
            return "not started"
        read = dict(self._positions)  # before asking: the answer's log ends are at least these
        tps = [TopicPartition(self._codes[code], partition) for code, partition in read]
        try:
            async with asyncio.timeout(PROBE_TIMEOUT_S):
                ends = await self._consumer.end_offsets(tps)
        except TimeoutError:
            return self._missing_topics() or f"no answer within {PROBE_TIMEOUT_S:g} s"
        except Exception as exc:  # a health probe reports every failure, it never raises
            return self._missing_topics() or f"unreachable: {type(exc).__name__}"
        found = {(self._topics[tp.topic], tp.partition): end for tp, end in ends.items()}
        for key, end in logs_moved_back(read, found).items():
            if self._positions[key] == read[key]:  # the reader has not met the new log (advance() would have)
                self.log_moved(key, end, f"its log end is {end}")
        return "ok"

    def _missing_topics(self) -> str | None:
        """``topic <name> missing`` when the broker's last metadata lacks one of the hub's topics.

        aiokafka waits for a deleted topic's leader until the probe's deadline, refreshing the
        metadata meanwhile (its own logger says ``Topic … not found in cluster metadata`` at each
        refresh): the broker answered, so the reason is the topic, not a timeout.
        """
        if self._consumer is None:
            return None
        return topics_missing([t for t in self._topics if self._consumer.partitions_for_topic(t) is None])

    # -- step 2: catch-up ------------------------------------------------------------
    async def catch_up(
        self, sub: Subscriber, gaps: dict[cursors.TopicPartitionKey, tuple[int, int]]
    ) -> AsyncGenerator[CatchUpBatch, None]:
        """Batches of the subscriber's frames in [first, end), partition by partition.

        The first batch is empty and comes as soon as the catch-up holds a slot, before it asks
        the broker anything (``scanned_to == first - 1``: nothing scanned yet). A batch may be
        empty (records of others, or a 1 s read timeout, which is all a silent broker gives):
        the stream uses it to check for shutdown, token expiry and a stall. The last batch of a
        partition has ``scanned_to == end - 1``. Raises InfrastructureError if the log moved
        under the cursor (records deleted while reading) or Kafka fails. Closing the iterator
        (or cancelling the read it waits in) frees the slot.
        """
        if not gaps:
            return
        ranges = sorted(gaps.items())
        async with self._tenant_slot(sub.tenant), self._catch_up_slots:
            SSE_CATCH_UPS.inc()
            consumer = AIOKafkaConsumer(
                bootstrap_servers=self._settings.kafka_bootstrap,
                enable_auto_commit=False,
                fetch_max_wait_ms=20,
                auto_offset_reset="none",
            )
            vanished: list[str] = []

            def dropped() -> None:  # a topic deleted mid-catch-up: drop it at once (no metadata loop)
                found = assignment_presence(consumer)
                if found.gone and not vanished:
                    vanished.extend(found.missing_topics)
                    consumer.assign([])

            try:
                key, (first, _) = ranges[0]
                yield CatchUpBatch(key, [], first - 1)
                await consumer.start()
                on_metadata(consumer, dropped)  # stops with the consumer
                for key, (first, end) in ranges:
                    async for batch in self._read_range(consumer, sub, key, first, end, vanished):
                        yield batch
            except KafkaError as exc:  # OffsetOutOfRangeError too: the log moved under us
                raise InfrastructureError(f"catch-up read of the log failed: {exc!r}") from None
            finally:
                try:
                    await consumer.stop()
                finally:
                    SSE_CATCH_UPS.dec()

    @contextlib.asynccontextmanager
    async def _tenant_slot(self, tenant: str) -> AsyncIterator[None]:
        """One of ``tenant``'s share of the slots, held for the block; the share is forgotten when
        none of its catch-ups holds or waits for a slot (a new one starts it afresh)."""
        share = self._tenant_slots.get(tenant)
        if share is None:
            share = self._tenant_slots[tenant] = TenantShare(
                asyncio.Semaphore(tenant_catch_up_slots(self._catch_up_slots_count))
            )
        share.users += 1
        try:
            async with share.slots:
                yield
        finally:
            share.users -= 1
            if share.users == 0 and self._tenant_slots.get(tenant) is share:
                del self._tenant_slots[tenant]

    async def _read_range(
        self,
        consumer: AIOKafkaConsumer,
        sub: Subscriber,
        key: cursors.TopicPartitionKey,
        first: int,
        end: int,
        vanished: list[str],
    ) -> AsyncIterator[CatchUpBatch]:
        tp = TopicPartition(self._codes[key[0]], key[1])
        if vanished:
            raise TopicsMissing(f"{_topics_named(vanished)} missing (deleted under the catch-up)")
        consumer.assign([tp])
        consumer.seek(tp, first)
        scanned = first - 1
        while scanned < end - 1:
            records = (await consumer.getmany(tp, timeout_ms=1000, max_records=_CATCH_UP_BATCH)).get(tp, [])
            if vanished:
                raise TopicsMissing(f"{_topics_named(vanished)} missing (deleted under the catch-up)")
            if not records and await consumer.position(tp) >= end:
                scanned = end - 1  # the range ends in transaction markers or compacted gaps
            frames = []
            for record in records:
                if record.offset >= end:
                    scanned = end - 1
                    break
                scanned = record.offset
                frame = self.frame_of(key[0], record)
                if frame is not None and sub.matches(frame):
                    frames.append(frame)
            yield CatchUpBatch(key, frames, scanned)

    # -- decoding --------------------------------------------------------------------
    def frame_of(self, code: str, record: ConsumerRecord) -> Frame | None:
        """The frame of ``record``, or None for a record the agents do not take: one the shared input
        decoder refuses for its topic (too large, another topic's type, invalid, a key that is not
        its subject: ``contracts/inputs.py``) or a turn outside its conversation's partition
        (``kafka/placement.py``). The worker dead-letters those and the read models leave them out;
        streamed, a decision written onto the turns' topic was a decision frame (one a ``step``
        took as its turn's) that nothing else holds."""
        if record.value is None:
            return None
        base = BASES[code]
        try:
            event = decode_input(record.value, record.key, base)
        except DecodeError:
            return None  # the worker dead-letters it; subscribers only see valid events
        placed = self._turns_placed
        if (
            base == CONVERSATION_EVENTS
            and placed is not None
            and not placed.belongs(record.key, record.partition)
        ):
            return None  # misrouted: neither decided nor projected (murmur2 memoised per key)
        return Frame(
            key=(code, record.partition),
            offset=record.offset,
            tenant=event.tenant,
            conversation_id=_conversation_of(event),
            event_type=event.type,
            data=orjson.dumps(event.to_json()),
        )


def _conversation_of(event: Event) -> str:
    payload = event.payload
    return payload.conversation_id if isinstance(payload, PolicyDecision) else event.subject


def logs_moved_back(
    read: cursors.Positions, log_ends: dict[cursors.TopicPartitionKey, int]
) -> dict[cursors.TopicPartitionKey, int]:
    """Partitions whose log end (asked after ``read`` was taken) is below the hub's read position
    then: the log ends no earlier than where it was read on one log, so that one was re-created."""
    return {key: end for key, end in sorted(log_ends.items()) if key in read and end < read[key]}


def _topics_named(names: list[str]) -> str:
    return f"Kafka topic{'s' if len(names) > 1 else ''} {', '.join(names)}"


def topics_missing(names: list[str]) -> str | None:
    """``/readyz``'s reason for topics the broker does not know (``topic a missing``), None if none."""
    if not names:
        return None
    return f"topic{'s' if len(names) > 1 else ''} {', '.join(sorted(names))} missing"


def partition_for(key: str, partitions: int) -> int:
    """The partition of conversation ``key`` among ``partitions``: the one placement rule
    (``kafka.placement.placement``, Kafka's default partitioner) applied to its UTF-8 bytes."""
    return placement(key.encode(), partitions)
