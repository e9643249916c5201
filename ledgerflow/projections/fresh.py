"""Replaying the logs into a fresh key space: fold each batch in memory, write its net effect.

The rebuild's new generation and the auditor's scratch copy start empty and have one
writer, the replay. ``FreshReplay`` reads the same records as ``rebuild.replay``, decodes
and checks them the same way (``rebuild.projectable``), but instead of projecting them for
the fenced Lua writer it folds each batch (``fold.Fold.records``: the writes ``project``'s
op groups would make) and sends one pipeline of plain commands
with the batch's net effect per key (``freshwrite``). The resulting space is the one the
fenced replay writes (fences, dedupe ids, chain heads, quarantine and checkpoint included),
so the projector can take it over after a switch and fence against it as usual.

Redis runs one batch's pipeline while the next batch is decoded and folded. The write is a task,
and a task runs only when the replay yields to the event loop, which fetching records already
fetched does not do: the replay yields after starting the write (it is packed and sent) and after
each partition's records (the rest is flushed and the reply read), or the write would run whole,
in series, when the replay awaits it.

A ``FreshReplay`` that returned can be run again with a later horizon: it reads on from where
it stopped with the same in-memory state. One that raised cannot (its in-memory state may be
ahead of what Redis took): start over in an empty space. It must be the space's only writer,
and the space must be empty when it starts.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

import redis.asyncio as aioredis
from aiokafka import TopicPartition

from ledgerflow.config import Settings
from ledgerflow.contracts.events import Event
from ledgerflow.kafka.placement import pinned_placements_of
from ledgerflow.projections import freshwrite
from ledgerflow.projections.conversations import SOURCES
from ledgerflow.projections.fold import Fold, FoldStats, Writes
from ledgerflow.projections.keys import Keys
from ledgerflow.projections.ops import Position
from ledgerflow.projections.rebuild import (
    PLACED,
    PROJECTION,
    Progress,
    ReplayStats,
    end_offsets,
    projectable,
    replay_consumer,
    stop_consumer,
)

FETCH = 10_000  # records per batch: more records per key per write, fewer writes

Share = Callable[[TopicPartition], bool]  # which partitions this replay reads (parallel rebuilds)


class FreshReplay:
    def __init__(
        self,
        settings: Settings,
        redis: aioredis.Redis,
        keys: Keys,
        *,
        guard: str | None = None,
        share: Share | None = None,
        on_writes: Callable[[Writes], None] | None = None,
    ) -> None:
        self.settings, self.redis, self.keys, self.guard = settings, redis, keys, guard
        self.share, self.on_writes = share, on_writes
        self.fold = Fold()
        self.stats = ReplayStats()
        self.fold_stats = FoldStats()
        self.read_to: dict[TopicPartition, int] = {}  # first offset not read yet, per partition
        self.commands = 0
        self._refused = 0  # refusals of the fold already counted in ``stats.quarantined``

    async def run(
        self, until: dict[TopicPartition, int] | None = None, progress: Progress | None = None
    ) -> ReplayStats:
        """Read every partition on from where the last run stopped up to ``until`` (default: the
        end offsets now); fold and write it. Raises ``SpaceLost`` if the guard went."""
        began = time.perf_counter()
        until = until if until is not None else await end_offsets(self.settings)
        if self.share is not None:
            until = {tp: end for tp, end in until.items() if self.share(tp)}
        bases = {self.settings.topic(t): t for t in SOURCES}
        total = sum(until.values())
        placements = await pinned_placements_of(self.settings, PLACED)
        consumer = replay_consumer(self.settings)
        await consumer.start()
        pending: asyncio.Task[int] | None = None
        try:
            tps = [tp for tp, end in until.items() if end > self.read_to.get(tp, 0)]
            if tps:
                consumer.assign(tps)
                for tp in tps:
                    consumer.seek(tp, self.read_to.get(tp, 0))
            remaining = set(tps)
            while remaining:
                got = await consumer.getmany(*remaining, timeout_ms=1000, max_records=FETCH)
                decoded: list[tuple[Event, Position]] = []
                checkpoint: dict[str, int] = {}
                for tp, records in got.items():
                    decoded += projectable(
                        tp, records, until[tp], bases[tp.topic], self.stats, checkpoint, placements
                    )
                    await asyncio.sleep(0)  # the batch in flight goes on being sent and answered
                for tp in list(remaining):
                    position = await consumer.position(tp)
                    self.read_to[tp] = min(position, until[tp])
                    if position >= until[tp]:
                        remaining.discard(tp)
                writes = self.fold.records(decoded, self.keys, self.fold_stats)
                if self.on_writes is not None:
                    self.on_writes(writes)
                if pending is not None:  # one batch in flight while the next is decoded
                    self.commands += await pending
                pending = asyncio.create_task(
                    freshwrite.write(
                        self.redis, writes, (self.keys.checkpoint(PROJECTION), checkpoint), self.guard
                    )
                )
                await asyncio.sleep(0)  # let it pack and send before the next batch is decoded
                self.stats.round_trips += 1
                if progress is not None:
                    progress(self.stats.records, total)
            if pending is not None:
                self.commands += await pending
                pending = None
        finally:
            if pending is not None:
                pending.cancel()
            await stop_consumer(consumer)
        self.stats.applied = self.fold_stats.applied
        self.stats.skipped = self.fold_stats.skipped
        self.stats.deduped = self.fold_stats.deduped
        self.stats.quarantined += self.fold_stats.refused - self._refused
        self._refused = self.fold_stats.refused
        self.stats.seconds += time.perf_counter() - began
        return self.stats
