"""The projector agent: conversation events and decisions → Redis read models.

For each batch taken from the stream:
1. decode every record; undecodable ones become dead letters;
2. ``project`` the good ones into fenced op groups (pure);
3. send the dead letters, then apply the groups and the batch's checkpoint in one
   pipelined round trip that also checks the sentinel key; if the sentinel is gone (a
   new or flushed Redis), replay the logs into the space first (``rebuild.replay``);
4. return: faust acks the batch, and commits its offsets on its next commit tick.
A crash anywhere before 4 redelivers the batch; the fences skip what was applied.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Sequence
from typing import Any

import faust
import redis.asyncio as aioredis
from aiokafka import TopicPartition
from redis.exceptions import BusyLoadingError
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from ledgerflow.agents.app import raw_topic, run_batches
from ledgerflow.agents.deadletters import DeadLetterSink, dead_letter_of
from ledgerflow.config import Settings
from ledgerflow.contracts import codec
from ledgerflow.contracts.codec import TOPIC_TYPES
from ledgerflow.contracts.events import check_key
from ledgerflow.errors import DecodeError
from ledgerflow.kafka_admin import committed_offsets
from ledgerflow.metrics import PROJECTION_OPS, RECORDS_PROCESSED, REDIS_ROUND_TRIPS
from ledgerflow.projections.conversations import SOURCES, project
from ledgerflow.projections.generations import active_keys
from ledgerflow.projections.keys import Keys
from ledgerflow.projections.ops import FencedOps, Position
from ledgerflow.projections.rebuild import replay
from ledgerflow.projections.writer import ProjectionWriter
from ledgerflow.topics import CONVERSATION_EVENTS, POLICY_DECISIONS

log = logging.getLogger(__name__)

NAME = "read-models"
BATCH = 500
CATCH_UP_S = 2.0
WITHIN_S = 0.05


class Projector:
    def __init__(
        self,
        app: faust.App,
        settings: Settings,
        keys: Keys | None = None,
        owns_dlq: frozenset[str] = frozenset({CONVERSATION_EVENTS, POLICY_DECISIONS}),
    ) -> None:
        self._settings = settings
        self._fixed_keys = keys  # tests may pin a space; otherwise follow the active generation
        self._keys: Keys | None = keys
        self._checked: set[tuple[str, int]] = set()
        self.assigned: set[tuple[str, int]] = set()
        self._lock = asyncio.Lock()
        self._bases = {settings.topic(b): b for b in SOURCES}
        self._sink = DeadLetterSink(app, NAME)
        self._owns_dlq = owns_dlq  # topics whose poison records this agent dead-letters
        self._writer: ProjectionWriter | None = None

    @property
    def topics(self) -> list[str]:
        return list(self._bases)

    async def _rebuild(self) -> None:
        """The space is incomplete (first start, or Redis lost its data): replay the logs.

        Fences make the replay apply each missing record once; the sentinel is set only
        when the replay finished, so a crash mid-way replays again on restart.
        """
        writer = self.writer()
        redis = writer.redis
        log.warning(
            "projector: read models in %s are incomplete (new or flushed Redis); replaying the logs",
            self._keys.namespace,
        )
        stats = await replay(self._settings, redis, self._keys)
        await redis.set(self._keys.sentinel(), str(time.time()))
        log.warning(
            "projector: replayed %d records (%d applied) in %.1f s",
            stats.records,
            stats.applied,
            stats.seconds,
        )

    def writer(self) -> ProjectionWriter:
        if self._writer is None:  # created on the worker's event loop
            redis = aioredis.Redis.from_url(
                self._settings.redis_url, socket_timeout=10, socket_connect_timeout=5
            )
            self._writer = ProjectionWriter(redis)
        return self._writer

    async def _follow_generation(self) -> None:
        """Write to the generation readers use; catch a new one up before the first write."""
        redis = self.writer().redis
        active = await active_keys(redis, self._settings.topic_prefix)
        if self._keys is not None and active.namespace == self._keys.namespace:
            return
        if self._keys is not None:
            covered = await redis.hgetall(active.checkpoint(NAME))
            start = {k.decode(): int(v) + 1 for k, v in covered.items()}
            stats = await replay(self._settings, redis, active, start=start)
            log.warning(
                "projector: switched to generation %s (caught up %d records)",
                active.generation,
                stats.records,
            )
        self._keys = active

    @property
    def checked(self) -> set[tuple[str, int]]:
        return set(self._checked)

    def forget_positions(self) -> None:
        """After a rebalance, check each partition's first batch for a gap again."""
        self._checked.clear()

    async def _close_gaps(self, messages: Sequence[Any]) -> None:
        """Apply what lies between the checkpoint and the first offset faust delivers.

        The group's committed offset can be past records this projector never applied: a
        projector joining a group whose other agents already consumed these topics starts
        there. The checkpoint says what was applied; replay the difference (fences make it
        exactly-once).
        """
        firsts: dict[tuple[str, int], int] = {}
        for msg in messages:
            key = (msg.topic, msg.partition)
            if key not in self._checked:
                firsts[key] = min(firsts.get(key, msg.offset), msg.offset)
        await self._close_gaps_to(firsts)

    async def catch_up(self, committed: dict[tuple[str, int], int]) -> None:
        """Close gaps of assigned partitions no batch has reached yet (no new traffic)."""
        async with self._lock:
            if self._fixed_keys is None:
                await self._follow_generation()
            await self._close_gaps_to({k: committed.get(k, 0) for k in self.assigned - self._checked})

    async def _close_gaps_to(self, firsts: dict[tuple[str, int], int]) -> None:
        assert self._keys is not None
        if not firsts:
            return
        applied = await self.writer().redis.hgetall(self._keys.checkpoint(NAME))
        done = {k.decode(): int(v) for k, v in applied.items()}
        start: dict[str, int] = {}
        until: dict[TopicPartition, int] = {}
        for (topic, partition), first in firsts.items():
            self._checked.add((topic, partition))
            after = done.get(f"{topic}:{partition}", -1) + 1
            if after < first:
                start[f"{topic}:{partition}"] = after
                until[TopicPartition(topic, partition)] = first
        if until:
            stats = await replay(self._settings, self.writer().redis, self._keys, until=until, start=start)
            log.warning("projector: applied %d records the consumer group had already passed", stats.applied)

    async def handle(self, messages: Sequence[Any]) -> None:
        async with self._lock:
            await self._handle(messages)

    async def _handle(self, messages: Sequence[Any]) -> None:
        if self._fixed_keys is None:
            await self._follow_generation()
        assert self._keys is not None
        await self._close_gaps(messages)
        groups: list[FencedOps] = []
        letters = []
        checkpoint: dict[str, int] = {}
        for msg in messages:  # Steps 1 and 2.
            base = self._bases[msg.topic]
            cursor = f"{msg.topic}:{msg.partition}"
            checkpoint[cursor] = max(checkpoint.get(cursor, -1), msg.offset)  # progress, poison included
            RECORDS_PROCESSED.labels(NAME, base).inc()
            try:
                event = codec.decode(msg.value or b"", allowed_types=TOPIC_TYPES[base])
                check_key(event, msg.key)
            except DecodeError as exc:
                if base in self._owns_dlq:
                    letters.append(dead_letter_of(msg, exc.reason, NAME, base))
                continue
            position = Position(msg.topic, msg.partition, msg.offset)
            groups += project(event, position, self._keys)

        await self._sink.send_all(letters)  # Step 3.
        await self._apply(groups, checkpoint)

    async def _apply(self, groups: list[FencedOps], checkpoint: dict[str, int]) -> None:
        delay = 0.2
        while True:
            try:
                result = await self.writer().apply(
                    groups,
                    (self._keys.checkpoint(NAME), checkpoint) if checkpoint else None,
                    probe=self._keys.sentinel(),
                )
                if not result.probe_found:
                    await self._rebuild()
            except (RedisConnectionError, RedisTimeoutError, BusyLoadingError, OSError) as exc:
                log.warning("projector: Redis write failed (%r); retrying in %.1f s", exc, delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)
                continue
            PROJECTION_OPS.labels(NAME, "applied").inc(result.applied)
            PROJECTION_OPS.labels(NAME, "skipped").inc(result.skipped)
            REDIS_ROUND_TRIPS.labels(NAME).inc(result.round_trips)
            return


def register(app: faust.App, settings: Settings, owns_dlq: frozenset[str]) -> Projector:
    projector = Projector(app, settings, owns_dlq=owns_dlq)

    @app.agent(raw_topic(app, *projector.topics), name=f"{NAME}", concurrency=1)
    async def read_models(stream: faust.StreamT) -> None:
        await run_batches(stream, BATCH, WITHIN_S, projector.handle)

    @app.on_partitions_assigned.connect
    async def on_assigned(sender: Any, assigned: set[Any], **kwargs: Any) -> None:
        projector.forget_positions()
        projector.assigned = {(tp.topic, tp.partition) for tp in assigned if tp.topic in projector.topics}

    @app.timer(interval=CATCH_UP_S)
    async def catch_up() -> None:
        if not projector.assigned - projector.checked:
            return
        committed: dict[tuple[str, int], int] = {}
        for topic in {t for t, _ in projector.assigned}:
            offsets = await committed_offsets(settings, app.conf.id, topic)
            committed.update({(topic, p): o for p, o in offsets.items()})
        await projector.catch_up(committed)

    return projector
