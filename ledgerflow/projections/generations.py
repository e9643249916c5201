"""Generations of the read models: rebuild into a fresh key space, then switch atomically.

``ledgerflow projections rebuild`` runs these steps:
1. Pick a new generation and replay the logs into its key space (the live generation
   keeps serving and the projector keeps writing it meanwhile). The space is new and the
   rebuild its only writer, so the replay folds each batch in memory (``fresh.py``), in
   one process per core (``parallel.py``, ``LEDGERFLOW_REBUILD_PROCESSES``).
   Every write is guarded by a replay token key, so a Redis flush mid-way stops the
   replay (nothing is switched).
2. Check it: its checkpoint must cover every partition's end offset taken in step 1.
3. Switch, in one atomic step that first checks the token still exists: set the new
   space's sentinel (complete) and the active pointer. Readers resolve the pointer per
   request, so a read sees either the old space or the new one — never a half-built one.
4. The projector notices the new generation on its next batch and, before its first
   write there, replays the logs into it from the new space's checkpoint to the current
   end (fences make that exactly-once), then writes only the new space.
5. After a grace period (in-flight reads), delete the old space.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass

import redis.asyncio as aioredis

from ledgerflow.config import Settings
from ledgerflow.errors import InfrastructureError
from ledgerflow.kafka.logs import unapplied
from ledgerflow.projections.guards import guard_for, promote, set_guard
from ledgerflow.projections.keys import DEFAULT_GENERATION, Keys, active_pointer
from ledgerflow.projections.parallel import replay_parallel
from ledgerflow.projections.rebuild import TOKEN_TTL_S, ReplayStats, end_offsets
from ledgerflow.projections.writer import SpaceLost
from ledgerflow.redisclient import is_cluster_client
from ledgerflow.redisvalues import int_map, text

PROJECTION = "read-models"
GRACE_S = 3.0

# KEYS: the replay token, the new sentinel, the active pointer. ARGV: sentinel value, generation.
_SWITCH = """
if redis.call('EXISTS', KEYS[1]) == 0 then
  return 0
end
redis.call('SET', KEYS[2], ARGV[1])
redis.call('SET', KEYS[3], ARGV[2])
redis.call('DEL', KEYS[1])
return 1
"""


async def active_keys(redis: aioredis.Redis, topic_prefix: str) -> Keys:
    raw = await redis.get(active_pointer(topic_prefix))
    return Keys.for_prefix(topic_prefix, text(raw) if raw else DEFAULT_GENERATION)


async def drop_space(redis: aioredis.Redis, keys: Keys) -> int:
    """Delete every key of a space (UNLINK in batches); return how many."""
    removed = 0
    batch: list[bytes] = []
    async for key in redis.scan_iter(match=keys.namespace + "*", count=1000):
        batch.append(key)
        if len(batch) >= 500:
            removed += await redis.unlink(*batch)
            batch = []
    if batch:
        removed += await redis.unlink(*batch)
    return removed


@dataclass(frozen=True, slots=True)
class RebuildResult:
    old: str
    new: str
    replay: ReplayStats
    removed_keys: int


async def rebuild_and_switch(
    settings: Settings,
    redis: aioredis.Redis,
    progress: Callable[[int, int], None] | None = None,
    grace_s: float = GRACE_S,
) -> RebuildResult:
    old = await active_keys(redis, settings.topic_prefix)
    new = Keys.for_prefix(settings.topic_prefix, f"g{time.time_ns() // 1_000_000}")
    until = await end_offsets(settings)
    token = new.replay_guard(uuid.uuid4().hex)
    await set_guard(redis, token, str(time.time()), ex=TOKEN_TTL_S)
    try:
        stats = await replay_parallel(settings, redis, new, until, progress, guard=token)  # Step 1.
    except SpaceLost:
        await drop_space(redis, new)
        raise InfrastructureError(
            "Redis lost its data during the rebuild; the projector restores it"
        ) from None
    covered = await redis.hgetall(new.checkpoint(PROJECTION))  # Step 2.
    applied = int_map(covered)
    short = await unapplied(settings, applied, until)  # a transaction marker may end a partition
    if short:
        await drop_space(redis, new)
        raise InfrastructureError(f"rebuild incomplete for {', '.join(short)}; the live space is unchanged")
    pointer = active_pointer(settings.topic_prefix)
    # On a cluster: every other slot's sentinel copy first, then the pointer's slot atomically.
    cluster = is_cluster_client(redis)
    # (On one Redis the switch below does it all: the token and the sentinel are single keys.)
    promoted = not cluster or await promote(redis, token, new.sentinel(), str(time.time()), skip=pointer)
    here = [guard_for(token, pointer, cluster), guard_for(new.sentinel(), pointer, cluster), pointer]
    if not (promoted and await redis.eval(_SWITCH, 3, *here, str(time.time()), new.generation)):
        await drop_space(redis, new)  # Step 3.
        raise InfrastructureError("Redis lost its data during the rebuild; the projector restores it")
    await asyncio.sleep(grace_s)  # Step 5.
    removed = await drop_space(redis, old)
    return RebuildResult(old.generation, new.generation, stats, removed)
