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
5. After a grace period (in-flight reads), delete the space the switch replaced: the one the
   pointer named at the switch (read in the same atomic step), not the one it named when the
   rebuild began — two rebuilds run at once must not leave the first one's generation behind.

Nothing half-built stays: a rebuild that fails or is interrupted (Ctrl-C, SIGTERM: the CLI turns
both into a cancellation) before its switch deletes its new space and its replay token. A SIGKILL
runs no clean-up: its replay token, kept alive by a heartbeat, expires within
``LEDGERFLOW_REBUILD_LEASE_S`` and the next rebuild, before its replay, deletes every generation
that no pointer names and no live token owns (``abandoned.py``). A Redis that fails or refuses
writes (OOM) is one ``InfrastructureError`` line.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass

import redis.asyncio as aioredis
from aiokafka import TopicPartition
from redis.exceptions import RedisError

from ledgerflow.config import Settings
from ledgerflow.errors import InfrastructureError
from ledgerflow.kafka.logs import unapplied
from ledgerflow.projections.abandoned import drop_space, keep_alive, lease_from_env, sweep
from ledgerflow.projections.guards import guard_for, promote, set_guard
from ledgerflow.projections.keys import DEFAULT_GENERATION, Keys, active_pointer
from ledgerflow.projections.parallel import replay_parallel
from ledgerflow.projections.rebuild import ReplayStats, end_offsets
from ledgerflow.projections.writer import SpaceLost
from ledgerflow.redisclient import error_code, is_cluster_client, refusing
from ledgerflow.redisvalues import int_map, text

PROJECTION = "read-models"
GRACE_S = 3.0
LOST = "Redis lost its data during the rebuild; the projector restores it"

# KEYS: the replay token, the new sentinel, the active pointer. ARGV: sentinel value, generation.
# Returns the generation it replaced ('' for none: the default), or nil if the token is gone.
_SWITCH = """
if redis.call('EXISTS', KEYS[1]) == 0 then
  return false
end
local replaced = redis.call('GET', KEYS[3]) or ''
redis.call('SET', KEYS[2], ARGV[1])
redis.call('SET', KEYS[3], ARGV[2])
redis.call('DEL', KEYS[1])
return replaced
"""


async def active_keys(redis: aioredis.Redis, topic_prefix: str) -> Keys:
    raw = await redis.get(active_pointer(topic_prefix))
    return Keys.for_prefix(topic_prefix, text(raw) if raw else DEFAULT_GENERATION)


@dataclass(frozen=True, slots=True)
class RebuildResult:
    old: str
    new: str
    replay: ReplayStats
    removed_keys: int
    abandoned: tuple[str, ...] = ()  # generations SIGKILLed rebuilds left, removed first (abandoned.py)


async def rebuild_and_switch(
    settings: Settings,
    redis: aioredis.Redis,
    progress: Callable[[int, int], None] | None = None,
    grace_s: float = GRACE_S,
) -> RebuildResult:
    new = Keys.for_prefix(settings.topic_prefix, new_generation())
    token = new.replay_guard(uuid.uuid4().hex)
    lease = lease_from_env()
    beat: asyncio.Task[None] | None = None
    try:
        until = await end_offsets(settings)
        await set_guard(redis, token, str(time.time()), ex=lease)  # before the space's first key
        beat = asyncio.create_task(keep_alive(redis, token, lease))
        swept = await sweep(redis, settings.topic_prefix, new.generation, grace_s)
        stats, replaced = await _build_and_switch(settings, redis, new, token, until, progress)
    except BaseException as exc:  # failed or interrupted before the switch: nothing half-built stays
        outcome = await _discard(redis, settings.topic_prefix, new)
        if isinstance(exc, RedisError):
            raise InfrastructureError(redis_failed(settings.redis_url, exc, outcome)) from None
        raise
    finally:
        if beat is not None:
            beat.cancel()
    old = Keys.for_prefix(settings.topic_prefix, replaced or DEFAULT_GENERATION)
    removed = await _retire(redis, old, grace_s)  # Step 5.
    return RebuildResult(old.generation, new.generation, stats, removed, tuple(swept))


async def _retire(redis: aioredis.Redis, old: Keys, grace_s: float) -> int:
    """Delete the replaced space after ``grace_s``; interrupted meanwhile, still after the grace
    (reads in flight), then the interruption goes on: the space is not left behind."""
    loop = asyncio.get_running_loop()
    until = loop.time() + grace_s
    try:
        await asyncio.sleep(grace_s)
    except asyncio.CancelledError:
        await asyncio.sleep(max(until - loop.time(), 0.0))
        await drop_space(redis, old)
        raise
    return await drop_space(redis, old)


def new_generation() -> str:
    """A generation name no other rebuild picks: the time (ms) and a random part, so two rebuilds
    started in the same millisecond do not fold into one space."""
    return f"g{time.time_ns() // 1_000_000}{uuid.uuid4().hex[:6]}"


async def _build_and_switch(
    settings: Settings,
    redis: aioredis.Redis,
    new: Keys,
    token: str,
    until: dict[TopicPartition, int],
    progress: Callable[[int, int], None] | None,
) -> tuple[ReplayStats, str]:
    """Steps 1–3; returns the replay's stats and the generation the switch replaced ('' = the
    default). Raises InfrastructureError if Redis lost the space or the replay fell short."""
    try:
        stats = await replay_parallel(settings, redis, new, until, progress, guard=token)  # Step 1.
    except SpaceLost:
        raise InfrastructureError(LOST) from None
    covered = await redis.hgetall(new.checkpoint(PROJECTION))  # Step 2.
    applied = int_map(covered)
    short = await unapplied(settings, applied, until)  # a transaction marker may end a partition
    if short:
        raise InfrastructureError(f"rebuild incomplete for {', '.join(short)}; the live space is unchanged")
    pointer = active_pointer(settings.topic_prefix)
    # On a cluster: every other slot's sentinel copy first, then the pointer's slot atomically.
    cluster = is_cluster_client(redis)
    # (On one Redis the switch below does it all: the token and the sentinel are single keys.)
    promoted = not cluster or await promote(redis, token, new.sentinel(), str(time.time()), skip=pointer)
    here = [guard_for(token, pointer, cluster), guard_for(new.sentinel(), pointer, cluster), pointer]
    replaced = await redis.eval(_SWITCH, 3, *here, str(time.time()), new.generation) if promoted else None
    if replaced is None:  # Step 3.
        raise InfrastructureError(LOST)
    return stats, text(replaced)


async def _discard(redis: aioredis.Redis, topic_prefix: str, new: Keys) -> str:
    """Delete the unswitched space and its token, unless the switch did happen (interrupted while
    its reply was on the way: the pointer names it, readers use it). Says what became of it;
    a Redis that fails now is not reported over the error that ended the rebuild."""
    try:
        if (await active_keys(redis, topic_prefix)).generation == new.generation:
            return f"the new generation {new.generation} is active"
        await drop_space(redis, new)
    except (RedisError, OSError):
        return f"nothing was switched; delete the keys {new.namespace}* left behind"
    return f"nothing was switched; the new generation {new.generation} was deleted"


def redis_failed(redis_url: str, exc: RedisError, outcome: str) -> str:
    """Pure: one line for a Redis that failed the rebuild; a refusal named by its code (OOM, BUSY…)."""
    what = (
        f"refuses commands ({error_code(exc) or type(exc).__name__})"
        if refusing(exc)
        else f"failed ({type(exc).__name__}: {exc})"
    )
    return (
        f"Redis at {redis_url} {what} during the rebuild ({outcome}): fix Redis (`ledgerflow stack "
        "status`, its memory) and rebuild again"
    )
