"""The projector agent: conversation events and decisions → Redis read models.

For each batch taken from the stream:
1. decode every record with the shared input decoder (``contracts.inputs``: a record over
   ``MAX_INPUT_RECORD_BYTES`` is not decoded at all); undecodable ones become dead letters
   (shaped by ``contracts.deadletters``, so they always fit); a decision whose hash does
   not match its content (or that has no chain fields) is quarantined: dead-lettered,
   counted, never projected (``projections.verify``); so is a training outcome, and one read
   from another partition than its tenant's (``verify.placement_problem``: its agent writes
   none there);
2. send the dead letters;
3. ``project`` the rest into fenced op groups (pure) and apply them and the batch's
   checkpoint in one pipelined round trip. Every write is guarded by the space's sentinel,
   checked atomically before it writes: if Redis lost its data (the sentinel with it) the
   whole batch is refused, the logs are replayed into the space first
   (``rebuild.restore``), and only then is the batch applied. A decision (a training
   outcome) that does not link to its chain's last projected record — its conversation's
   (its tenant's) — is refused in the same atomic step and dead-lettered after it;
4. return: faust acks the batch, and commits its offsets on its next commit tick.
A crash anywhere before 4 redelivers the batch; the fences skip what was applied.
Every Redis step retries with capped exponential backoff while Redis is unreachable
(``projections.backoff``); a timer checks the sentinel every ``CATCH_UP_S`` so a Redis
that lost its data is restored even when no traffic arrives.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any, TypeVar

import faust
from aiokafka import TopicPartition

from ledgerflow.agents.app import handle_until_done
from ledgerflow.agents.batching import Route
from ledgerflow.agents.batchloop import BatchLoop, loop_group
from ledgerflow.agents.deadletters import DeadLetterSink, dead_letter_of
from ledgerflow.agents.shared import SharedDecodes
from ledgerflow.config import Settings
from ledgerflow.contracts.events import Event
from ledgerflow.errors import DecodeError
from ledgerflow.kafka.admin import committed_offsets
from ledgerflow.kafka.placement import Placements
from ledgerflow.metrics import PROJECTION_OPS, RECORDS_PROCESSED, REDIS_ROUND_TRIPS
from ledgerflow.projections.backoff import Backoff
from ledgerflow.projections.conversations import SOURCES, project
from ledgerflow.projections.generations import active_keys
from ledgerflow.projections.guards import guard_complete
from ledgerflow.projections.keys import Keys
from ledgerflow.projections.metrics import DEDUPED, MISROUTED_TURNS, QUARANTINED, RESTORES
from ledgerflow.projections.ops import FencedOps, Position
from ledgerflow.projections.rebuild import replay, restore
from ledgerflow.projections.verify import integrity_problem, placement_problem, reason_of
from ledgerflow.projections.writer import ProjectionWriter, SpaceLost, WriteResult
from ledgerflow.redisclient import async_client
from ledgerflow.redisvalues import int_map
from ledgerflow.topics import CONVERSATION_EVENTS, POLICY_DECISIONS, TRAINING_AUDIT
from ledgerflow.tracing import spans

log = logging.getLogger(__name__)

NAME = "read-models"
CATCH_UP_S = 2.0


T = TypeVar("T")


class Projector:
    def __init__(
        self,
        app: faust.App,
        settings: Settings,
        keys: Keys | None = None,
        owns_dlq: frozenset[str] = frozenset(SOURCES),
        shared: SharedDecodes | None = None,
        placements: Mapping[str, Placements] | None = None,
    ) -> None:
        self._settings = settings
        self._shared = shared or SharedDecodes()  # decode once with the worker's policy agent
        self._fixed_keys = keys  # tests may pin a space; otherwise follow the active generation
        self._keys: Keys | None = keys
        self._checked: set[tuple[str, int]] = set()
        self.assigned: set[tuple[str, int]] = set()
        self._lock = asyncio.Lock()
        self._bases = {settings.topic(b): b for b in SOURCES}
        self._sink = DeadLetterSink(app, NAME)
        self._owns_dlq = owns_dlq  # topics whose poison records this agent dead-letters
        # Per topic base (``rebuild.PLACED``): turns not in their conversation's partition, training
        # outcomes not in their tenant's, are not projected (kafka/placement.py); None: all are.
        self._placements = placements
        self._turns_placed = placements[CONVERSATION_EVENTS] if placements is not None else None
        self._turns_topic = settings.topic(CONVERSATION_EVENTS)
        self._writer: ProjectionWriter | None = None
        self._backoff = Backoff("projector")
        # Per topic:partition, the highest checkpoint this process wrote to ``_keys``' space: the
        # space's checkpoint only rises, so one found below it means Redis lost acknowledged writes.
        self._written: dict[str, int] = {}

    @property
    def topics(self) -> list[str]:
        return list(self._bases)

    def writer(self) -> ProjectionWriter:
        if self._writer is None:  # created on the worker's event loop
            redis = async_client(self._settings.redis_url, socket_timeout=10, socket_connect_timeout=5)
            self._writer = ProjectionWriter(redis)
        return self._writer

    async def _redis_step(self, step: Callable[[], Awaitable[T]]) -> T:
        """Run ``step`` until it succeeds: back off while Redis is unreachable, restore the
        space (then run ``step`` again) when a guarded write finds it lost."""

        async def guarded() -> T:
            while True:
                if self._fixed_keys is None:
                    await self._follow_generation()
                try:
                    return await step()
                except SpaceLost:
                    assert self._keys is not None
                    await self._restore(self._keys)

        return await self._backoff.run(guarded)

    async def _restore(self, keys: Keys) -> None:
        """The space is incomplete (first start, or Redis lost its data): replay the logs."""
        redis = self.writer().redis
        if await guard_complete(redis, keys.sentinel()):
            return
        log.info(
            "projector: read models in %s are incomplete (new or flushed Redis); replaying the logs before "
            "applying anything",
            keys.namespace,
        )
        RESTORES.inc()
        stats = await restore(self._settings, redis, keys)
        if stats is not None:
            log.info(
                "projector: replayed %d records (%d op groups applied, %d quarantined) in %.1f s; resuming",
                stats.records,
                stats.applied,
                stats.quarantined,
                stats.seconds,
            )

    async def _follow_generation(self) -> None:
        """Write to the generation readers use; catch a new one up before the first write."""
        redis = self.writer().redis
        active = await active_keys(redis, self._settings.topic_prefix)
        if self._keys is not None and active.namespace == self._keys.namespace:
            return
        if self._keys is not None:
            covered = await redis.hgetall(active.checkpoint(NAME))
            start = {k: v + 1 for k, v in int_map(covered).items()}
            try:
                stats = await replay(self._settings, redis, active, start=start, guard=active.sentinel())
            except SpaceLost:  # no sentinel: a flushed Redis (the pointer fell back to the default)
                await self._restore(active)
            else:
                log.warning(
                    "projector: switched to generation %s (caught up %d records)",
                    active.generation,
                    stats.records,
                )
        self._keys = active  # only once caught up: a retry after a failure catches up again
        self._written = {}

    async def watch(self) -> None:
        """Restore the space if it lost its data, even with no batch to trigger it."""
        async with self._lock:
            await self._redis_step(self._check_complete)

    async def _check_complete(self) -> None:
        assert self._keys is not None
        if not self._written:
            if not await guard_complete(self.writer().redis, self._keys.sentinel(), full=False):
                raise SpaceLost(self._keys.sentinel())
            return
        result = await self.writer().apply([], guard=self._keys.sentinel(), expect=self._expect())
        self._check(result)

    def _expect(self) -> tuple[str, dict[str, int]]:
        assert self._keys is not None
        return self._keys.checkpoint(NAME), dict(self._written)

    def _check(self, result: WriteResult) -> None:
        assert self._keys is not None
        if result.rolled_back:
            log.warning(
                "projector: the checkpoint of %s is behind what this projector wrote: Redis lost "
                "acknowledged writes (an older snapshot, a failover); restoring",
                self._keys.namespace,
            )
        if result.lost:
            raise SpaceLost(self._keys.sentinel())

    @property
    def checked(self) -> set[tuple[str, int]]:
        return set(self._checked)

    def forget_positions(self) -> None:
        """After a rebalance, check each partition's first batch for a gap again."""
        self._checked.clear()

    async def catch_up(self, committed: dict[tuple[str, int], int]) -> None:
        """Close gaps of assigned partitions no batch has reached yet (no new traffic)."""
        async with self._lock:
            firsts = {k: committed.get(k, 0) for k in self.assigned - self._checked}
            await self._redis_step(lambda: self._close_gaps_to(firsts))

    async def _close_gaps_to(self, firsts: dict[tuple[str, int], int]) -> None:
        """Apply what lies between the checkpoint and the first offset faust delivers.

        The group's committed offset can be past records this projector never applied: a
        projector joining a group whose other agents already consumed these topics starts
        there. The checkpoint says what was applied; replay the difference (fences make it
        exactly-once). A partition counts as checked only once its gap is closed.
        """
        assert self._keys is not None
        firsts = {k: v for k, v in firsts.items() if k not in self._checked}
        if not firsts:
            return
        applied = await self.writer().redis.hgetall(self._keys.checkpoint(NAME))
        done = int_map(applied)
        start: dict[str, int] = {}
        until: dict[TopicPartition, int] = {}
        for (topic, partition), first in firsts.items():
            after = done.get(f"{topic}:{partition}", -1) + 1
            if after < first:
                start[f"{topic}:{partition}"] = after
                until[TopicPartition(topic, partition)] = first
        if until:
            stats = await replay(
                self._settings,
                self.writer().redis,
                self._keys,
                until=until,
                start=start,
                guard=self._keys.sentinel(),
            )
            log.warning("projector: applied %d records the consumer group had already passed", stats.applied)
        self._checked.update(firsts)

    async def handle(self, messages: Sequence[Any]) -> None:
        async with self._lock:
            await self._handle(messages)

    def _placed(self, turn: Any) -> bool:
        """Whether ``turn`` is in its conversation's partition (else it is not projected, by the
        rebuild either: two partitions would feed one conversation in no defined order)."""
        if self._turns_placed is None or self._turns_placed.belongs(turn.key, turn.partition):
            return True
        MISROUTED_TURNS.inc()
        return False

    async def _handle(self, messages: Sequence[Any]) -> None:
        started_ns = time.time_ns()  # trace hook: one span per record once the batch is written
        decoded: list[tuple[Event, Position]] = []
        letters = []
        checkpoint: dict[str, int] = {}
        firsts: dict[tuple[str, int], int] = {}
        by_position: dict[tuple[str, int, int], Any] = {}
        processed: Counter[str] = Counter()
        for msg in messages:  # Step 1.
            base = self._bases[msg.topic]
            cursor = f"{msg.topic}:{msg.partition}"
            checkpoint[cursor] = max(checkpoint.get(cursor, -1), msg.offset)  # progress, poison included
            part = (msg.topic, msg.partition)
            firsts[part] = min(firsts.get(part, msg.offset), msg.offset)
            processed[base] += 1
            if msg.topic == self._turns_topic and not self._placed(msg):
                continue  # the policy agent dead-letters it: it can tell a misroute from added partitions
            # A decision this worker's policy agent just wrote is taken as built (its hash is its
            # own); anything else is decoded (once per batch) and verified.
            event = self._shared.take_written(msg) if base == POLICY_DECISIONS else None
            if event is None:
                try:
                    event = self._shared.decode(msg, base)
                except DecodeError as exc:
                    if base in self._owns_dlq:
                        letters.append(dead_letter_of(msg, exc.reason, NAME, base))
                    continue
                problem = integrity_problem(event)
                if problem is None and self._placements is not None and base == TRAINING_AUDIT:
                    problem = placement_problem(event, msg.partition, self._placements.get(base))
            else:
                problem = None
            if problem is not None:
                QUARANTINED.labels(reason_of(problem)).inc()
                letters.append(dead_letter_of(msg, f"chain-{problem}", NAME, base))
                continue
            decoded.append((event, Position(msg.topic, msg.partition, msg.offset)))
            by_position[(msg.topic, msg.partition, msg.offset)] = msg

        for base, count in processed.items():  # once per batch: labels() costs
            RECORDS_PROCESSED.labels(NAME, base).inc(count)
        await self._sink.send_all(letters)  # Step 2.

        async def apply() -> WriteResult:  # Step 3.
            await self._close_gaps_to(firsts)
            assert self._keys is not None
            groups: list[FencedOps] = [g for event, at in decoded for g in project(event, at, self._keys)]
            result = await self.writer().apply(
                groups,
                (self._keys.checkpoint(NAME), checkpoint),
                guard=self._keys.sentinel(),
                expect=self._expect(),
            )
            self._check(result)
            for cursor, offset in checkpoint.items():
                self._written[cursor] = max(self._written.get(cursor, -1), offset)
            return result

        result = await self._redis_step(apply)
        PROJECTION_OPS.labels(NAME, "applied").inc(result.applied)
        PROJECTION_OPS.labels(NAME, "skipped").inc(result.skipped)
        REDIS_ROUND_TRIPS.labels(NAME).inc(result.round_trips)
        DEDUPED.inc(result.deduped)
        refused = []
        for refusal in {(r.cursor, r.offset): r for r in result.refused}.values():
            QUARANTINED.labels(refusal.reason).inc()
            topic, _, partition = refusal.cursor.rpartition(":")
            msg = by_position.get((topic, int(partition), refusal.offset))
            if msg is not None and refusal.reason != "duplicate":
                why = f"chain-{refusal.reason}: the record does not link to its chain's last projected one"
                refused.append(dead_letter_of(msg, why, NAME, self._bases[msg.topic]))
        await self._sink.send_all(refused)
        spans.processed(messages, "project", started_ns)


async def watched(watch: Callable[[], Awaitable[None]]) -> bool:
    """``watch()`` for the catch-up timer: True once done; False, in one warning line, if it failed.
    Nothing may escape a faust timer: an exception there stops the worker (a BUSY reply did, before
    ``Backoff`` knew Redis refusals). Redis faults and refusals are backed off inside ``watch``
    (``_redis_step``); anything else (Kafka down while a lost space is replayed) waits for the
    next tick, as the timer's other steps do."""
    try:
        await watch()
    except Exception as exc:
        log.warning(
            "projector: checking the read models failed (%s: %s); next try in %.0f s",
            type(exc).__name__,
            str(exc)[:200],
            CATCH_UP_S,
        )
        return False
    return True


def register(
    app: faust.App,
    loop: BatchLoop,
    settings: Settings,
    owns_dlq: frozenset[str],
    placements: Mapping[str, Placements],
) -> Projector:
    """The projector on the hot path's batch loop (``agents/batchloop.py``), plus its catch-up timer."""
    projector = Projector(app, settings, owns_dlq=owns_dlq, shared=loop.shared, placements=placements)

    async def until_done(messages: list[Any]) -> None:
        # Redis faults are retried inside (``_redis_step``); this retries the rest — a dead letter
        # or a gap's replay failing while Kafka is down — instead of crashing the worker. The writes
        # are fenced, so the batch is simply handled again.
        await handle_until_done(
            messages,
            name=NAME,
            lock=None,
            owned=list,
            handle=projector.handle,
            forget=lambda _partitions: projector.forget_positions(),
        )

    loop.add(Route(NAME, frozenset(projector.topics), until_done))

    async def on_assigned(assigned: set[tuple[str, int]]) -> None:
        projector.forget_positions()
        projector.assigned = {(t, p) for t, p in assigned if t in projector.topics}

    loop.on_assigned.append(on_assigned)

    @app.timer(interval=CATCH_UP_S)  # type: ignore[untyped-decorator]  # faust's timer decorator is untyped
    async def catch_up() -> None:
        if not await watched(projector.watch):
            return
        if not projector.assigned - projector.checked:
            return
        committed: dict[tuple[str, int], int] = {}
        try:
            for topic in {t for t, _ in projector.assigned}:
                offsets = await committed_offsets(settings, loop_group(settings), topic)
                committed.update({(topic, p): o for p, o in offsets.items()})
        except Exception as exc:  # Kafka unavailable: the next tick tries again
            log.warning(
                "projector: reading committed offsets failed (%r); next try in %.0f s", exc, CATCH_UP_S
            )
            return
        try:
            await projector.catch_up(committed)
        except Exception as exc:  # Kafka down while replaying a gap: the next tick tries again
            log.warning("projector: catching up failed (%r); next try in %.0f s", exc, CATCH_UP_S)

    return projector
