"""The hot path's consumer loop: batches straight from aiokafka's ``getmany``, no per-record stream.

faust's agents hand records over one at a time: its consumer wraps each record in a
``Message``, its conductor awaits a delivery per record, its stream builds an ``Event``
and acks each one. On the policy + projector path that machinery cost more CPU than the
work itself (docs/benchmarks.md, "where the time goes"). The policy agent and the
projector therefore read through this loop instead, while faust still runs the worker's
lifecycle, its timers and the other agents:

1. ``getmany`` up to ``max_records`` records of the partitions this member owns (one
   consumer, group ``<prefix>ledgerflow-worker``; the records' headers are read here, by
   the agents' decoders, as before); the broker holds each fetch up to ``linger_s`` for more
   records (``fetch_options``);
2. give every route (agent) its records (``batching.split``) and run the routes
   concurrently; each handles its batch until it succeeds (``app.handle_until_done``,
   the projector's Redis backoff) — a batch is never dropped;
3. only then fold the batch's offsets into the offsets to commit (``batching.advance``),
   and commit them at most every ``commit_every_s``: durable before advance, as with
   faust's acks. A commit that fails (a rebalance under way) is retried with the next one:
   a record redelivered is skipped by the agents' own fences and output log.
Before an agent claims an output partition (at its recovery) it calls ``prove``: one
synchronous commit the group coordinator refuses once this member was expelled
(``agents/fence.py``). A batch refused so is dropped, not advanced: its records go to the
partitions' owner.
On revocation the loop first waits for the batch in flight (``_busy``), tells the agents
(which forget the partitions' state), and commits what it handled of those partitions.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any, Protocol

import faust
from aiokafka import AIOKafkaConsumer, ConsumerRebalanceListener, TopicPartition
from aiokafka.coordinator.assignors.range import RangePartitionAssignor
from aiokafka.errors import CommitFailedError, IllegalStateError

from ledgerflow.agents.batching import Partition, Route, advance, next_offsets, split, without
from ledgerflow.agents.fence import NotCurrent, first_offsets, proof_offsets
from ledgerflow.agents.shared import SharedDecodes
from ledgerflow.config import Settings
from ledgerflow.envnumbers import env_number
from ledgerflow.topics import WORKER_GROUP

log = logging.getLogger(__name__)

GROUP = WORKER_GROUP  # after the topic prefix: the group the hot path's consumer joins
MAX_RECORDS = 1000
FETCH_WAIT_MS = 200
COMMIT_EVERY_S = 0.5
LINGER_S = 0.02
"""How long the broker holds a hot path fetch for more records (``fetch_options``)."""
LINGER_ENV = "LEDGERFLOW_BATCH_LINGER_MS"
LINGER_FILL_BYTES = 1024 * 1024  # a fetch this full is answered at once (a backlog)

Hook = Callable[[set[Partition]], Awaitable[None]]


class RecordSource(Protocol):
    """Where batches come from and where their progress is committed."""

    async def getmany(self, max_records: int, timeout_ms: int) -> Mapping[Any, Sequence[Any]]: ...

    async def commit(self, offsets: Mapping[Partition, int]) -> None: ...

    async def current(self, offsets: Mapping[Partition, int | None]) -> bool:
        """Commit ``offsets`` (None: the partition's position) synchronously; False when the group
        refuses it because this member is no longer current (expelled, or a rebalance under way)."""
        ...


class BatchLoop:
    """Steps 1 to 3 over a ``RecordSource``; ``revoked``/``assigned`` are the rebalance hooks."""

    def __init__(
        self,
        source: RecordSource,
        routes: Sequence[Route],
        *,
        max_records: int = MAX_RECORDS,
        timeout_ms: int = FETCH_WAIT_MS,
        commit_every_s: float = COMMIT_EVERY_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._source = source
        self._routes = list(routes)
        self._max_records = max_records
        self._timeout_ms = timeout_ms
        self._commit_every_s = commit_every_s
        self._clock = clock
        self._busy = asyncio.Lock()
        self._pending: dict[Partition, int] = {}
        self._in_flight: dict[Partition, int] = {}  # the batch being handled: its first offsets
        self._committed_at = clock()
        self.on_revoked: list[Hook] = []
        self.on_assigned: list[Hook] = []
        self.shared = SharedDecodes()  # what the routes decode once for each other

    def add(self, route: Route) -> None:
        """Register an agent before the loop starts."""
        self._routes.append(route)

    @property
    def topics(self) -> set[str]:
        return {t for route in self._routes for t in route.topics}

    @property
    def pending(self) -> dict[Partition, int]:
        """Offsets handled but not committed yet."""
        return dict(self._pending)

    async def step(self) -> int:
        """One batch: fetch, handle, fold its offsets; commit when due. The records fetched."""
        fetched = await self._source.getmany(self._max_records, self._timeout_ms)
        count = sum(len(records) for records in fetched.values())
        if count:
            async with self._busy:
                self._in_flight, refused = first_offsets(fetched), False
                try:
                    async with asyncio.TaskGroup() as group:  # a route that fails cancels the others
                        for route, records in split(fetched, self._routes):
                            group.create_task(route.handle(records))
                except* NotCurrent as group:
                    refused = True  # wrote nothing; the revocation follows and the owner gets the records
                    log.warning("%s; %d records left to their owner", group.exceptions[0], count)
                finally:
                    self.shared.batch_done()
                    self._in_flight = {}
                if not refused:
                    advance(self._pending, next_offsets(fetched))  # Step 3: only once handled.
        if self._clock() - self._committed_at >= self._commit_every_s:
            await self.commit()
        return count

    async def commit(self, only: set[Partition] | None = None) -> None:
        offsets = {k: v for k, v in self._pending.items() if only is None or k in only}
        if offsets:
            try:
                await self._source.commit(offsets)
            except Exception as exc:  # redelivery is harmless; the next commit carries these offsets
                log.warning("hot path: committing offsets failed (%r); retried with the next commit", exc)
                return
            for key, offset in offsets.items():
                if self._pending.get(key) == offset:
                    del self._pending[key]
        if only is None:
            self._committed_at = self._clock()

    async def prove(self, partitions: set[Partition]) -> None:
        """Raise ``NotCurrent`` unless the group still counts this member as the owner of
        ``partitions``: one commit of offsets already handled (``fence.proof_offsets``)."""
        if not await self._source.current(proof_offsets(partitions, self._in_flight, self._pending)):
            raise NotCurrent(
                f"hot path: the group refused this member's commit (expelled or rebalancing): "
                f"not writing {sorted(partitions)}"
            )

    async def revoked(self, partitions: set[Partition]) -> None:
        async with self._busy:  # the batch in flight finishes first
            for hook in self.on_revoked:
                await hook(partitions)
            self.shared.forget(partitions)
        await self.commit(only=partitions)
        self._pending = without(self._pending, partitions)

    async def assigned(self, partitions: set[Partition]) -> None:
        async with self._busy:
            for hook in self.on_assigned:
                await hook(partitions)


def fetch_options(linger_s: float) -> dict[str, int]:
    """The hot path consumer's fetch settings: with ``linger_s``, the broker holds each fetch
    until that much time passed (or a full batch of bytes waits), so a batch carries what arrived
    meanwhile.

    Without it the broker answered as soon as one record arrived, the loop fetched again the
    moment a batch was written, and under a steady moderate load every batch held a handful of
    records, each paying the whole batch's fixed costs (a fetch, the reference data's log ends,
    a produce and its acknowledgement, a Lua call, an offset commit): the worker's CPU per event
    at 500 events/s more than doubled. Waiting at the broker rather than sleeping in the loop
    keeps the next fetch in flight while the loop handles a batch (aiokafka fetches ahead), so a
    record waits at most ``linger_s`` there and joins the next batch; a sleep in the loop had
    it wait a second round. A backlog is not slowed: its fetches fill at once."""
    if linger_s <= 0:
        return {"fetch_max_wait_ms": FETCH_WAIT_MS, "fetch_min_bytes": 1}
    return {"fetch_max_wait_ms": max(1, round(linger_s * 1000)), "fetch_min_bytes": LINGER_FILL_BYTES}


def linger_from(environ: Mapping[str, str]) -> float:
    """``LEDGERFLOW_BATCH_LINGER_MS`` (default ``LINGER_S``) in seconds; 0 turns it off."""
    return env_number(environ, LINGER_ENV, LINGER_S * 1000, 0, 1000, unit="milliseconds") / 1000


class _Listener(ConsumerRebalanceListener):  # type: ignore[misc]  # aiokafka is untyped
    def __init__(self, loop: BatchLoop) -> None:
        self._loop = loop

    async def on_partitions_revoked(self, revoked: set[TopicPartition]) -> None:
        await self._loop.revoked({(tp.topic, tp.partition) for tp in revoked})

    async def on_partitions_assigned(self, assigned: set[TopicPartition]) -> None:
        await self._loop.assigned({(tp.topic, tp.partition) for tp in assigned})


class KafkaSource:
    """A ``RecordSource`` on one group member: the same session settings as the faust App."""

    def __init__(self, settings: Settings, linger_s: float = 0.0) -> None:
        self._settings = settings
        self._linger_s = linger_s
        self.group = loop_group(settings)
        self.metadata = ""  # committed with every offset: the pinned partition layout (agents/layout.py)
        self._consumer: AIOKafkaConsumer | None = None

    async def start(self, loop: BatchLoop) -> None:
        consumer = AIOKafkaConsumer(
            bootstrap_servers=self._settings.kafka_bootstrap,
            group_id=self.group,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            session_timeout_ms=10_000,
            heartbeat_interval_ms=2_000,
            rebalance_timeout_ms=10_000,
            max_poll_records=MAX_RECORDS,
            # Per topic, members get the same partition numbers: input p and output p of the policy
            # agent land on one member, so its projector reads back what its policy agent wrote.
            partition_assignment_strategy=(RangePartitionAssignor,),
            **fetch_options(self._linger_s),
        )
        await consumer.start()
        consumer.subscribe(topics=sorted(loop.topics), listener=_Listener(loop))
        self._consumer = consumer

    async def stop(self) -> None:
        from ledgerflow.projections.rebuild import stop_consumer

        if self._consumer is not None:
            await stop_consumer(self._consumer)

    def assigned(self) -> set[TopicPartition]:
        """This member's partitions (none before it joined): for the consumer-lag metric."""
        return set(self._consumer.assignment()) if self._consumer is not None else set()

    async def end_offsets(self, partitions: set[TopicPartition]) -> dict[TopicPartition, int]:
        assert self._consumer is not None
        ends: dict[TopicPartition, int] = await self._consumer.end_offsets(list(partitions))
        return ends

    async def getmany(self, max_records: int, timeout_ms: int) -> Mapping[Any, Sequence[Any]]:
        assert self._consumer is not None
        fetched: Mapping[Any, Sequence[Any]] = await self._consumer.getmany(
            timeout_ms=timeout_ms, max_records=max_records
        )
        return fetched

    async def commit(self, offsets: Mapping[Partition, int]) -> None:
        assert self._consumer is not None
        await self._consumer.commit(
            {TopicPartition(t, p): (o, self.metadata) for (t, p), o in offsets.items()}
        )

    async def current(self, offsets: Mapping[Partition, int | None]) -> bool:
        assert self._consumer is not None
        consumer = self._consumer
        try:
            proof = {
                tp: (await consumer.position(tp) if o is None else o, self.metadata)
                for tp, o in ((TopicPartition(t, p), o) for (t, p), o in offsets.items())
            }
            # CommitFailedError: the coordinator answered UNKNOWN_MEMBER_ID, ILLEGAL_GENERATION or
            # REBALANCE_IN_PROGRESS (aiokafka then rejoins); IllegalStateError: no longer assigned here.
            await consumer.commit(proof)
        except (CommitFailedError, IllegalStateError):
            return False
        return True


def loop_group(settings: Settings) -> str:
    """The consumer group of the hot path (its committed offsets: where a new owner starts)."""
    return settings.topic_prefix + GROUP


def as_tps(partitions: set[Partition]) -> list[TopicPartition]:
    return [TopicPartition(t, p) for t, p in partitions]


async def run_loop(loop: BatchLoop, source: KafkaSource, app: faust.App) -> None:
    """Run ``loop`` on ``source`` until cancelled (the worker stops); commit what was handled.
    Anything else that ends it (a bug: the agents retry their own failures) crashes the worker,
    which is restarted and recovers from the logs, rather than leaving it up without a hot path."""
    try:
        await source.start(loop)
        log.info("hot path: consuming %s as group %s", sorted(loop.topics), source.group)
        while True:
            await loop.step()
    except asyncio.CancelledError:
        raise
    except Exception as exc:
        log.exception("hot path: the batch loop failed; stopping the worker")
        await app.crash(exc)
    finally:
        try:
            await loop.commit()
        finally:
            await source.stop()
