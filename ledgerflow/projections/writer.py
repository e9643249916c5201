"""Applies fenced projection ops to Redis: at most once per record, pipelined per batch.

For each ``FencedOps`` one Lua call runs atomically on the entity's slot:
1. read the fence (last applied offset for the record's ``topic:partition``);
2. if the record's offset is not above it, do nothing (a redelivery) and return 0;
3. otherwise run the ops and move the fence to the record's offset, return 1.
A batch of records becomes one pipeline: one round trip for hundreds of records.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import redis.asyncio as aioredis
from redis.exceptions import NoScriptError

from ledgerflow.projections.ops import FencedOps

_APPLY = """
local applied = tonumber(redis.call('HGET', KEYS[1], ARGV[1]) or '-1')
local offset = tonumber(ARGV[2])
if offset <= applied then return 0 end
local i = 4
local n = tonumber(ARGV[3])
for _ = 1, n do
  local cmd = ARGV[i]
  local key = KEYS[tonumber(ARGV[i + 1])]
  local nargs = tonumber(ARGV[i + 2])
  redis.call(cmd, key, unpack(ARGV, i + 3, i + 2 + nargs))
  i = i + 3 + nargs
end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
return 1
"""


@dataclass(frozen=True, slots=True)
class WriteResult:
    applied: int
    skipped: int
    round_trips: int
    probe_found: bool | None = None  # whether the ``probe`` key existed (None: no probe)


class ProjectionWriter:
    """The one writer of a projection's key space."""

    def __init__(self, redis: aioredis.Redis) -> None:
        self._redis = redis
        self._sha: str | None = None
        self._checkpoint: tuple[str, dict[str, int]] | None = None
        self._probe: str | None = None

    @property
    def redis(self) -> aioredis.Redis:
        return self._redis

    async def apply(
        self,
        batch: Sequence[FencedOps],
        checkpoint: tuple[str, dict[str, int]] | None = None,
        probe: str | None = None,
    ) -> WriteResult:
        """Apply ``batch``; also record ``checkpoint`` = (key, {topic:partition: offset}).

        The checkpoint only reports progress (lag, read-your-writes); correctness rests on
        the per-entity fences, so it rides in the same pipeline without a transaction.
        ``probe`` is a key whose existence is checked in the same round trip (the
        projector's sentinel: if it is gone, Redis lost its data).
        """
        if checkpoint is not None and not checkpoint[1]:
            checkpoint = None  # nothing to record
        if not batch and checkpoint is None and probe is None:
            return WriteResult(0, 0, 0)
        self._checkpoint = checkpoint
        self._probe = probe
        encoded = [_encode(fenced) for fenced in batch]
        round_trips = 0
        if self._sha is None:
            self._sha = await self._redis.script_load(_APPLY)
            round_trips += 1
        try:
            results = await self._run(encoded)
        except NoScriptError:  # Redis restarted and lost its script cache: load and redo.
            self._sha = await self._redis.script_load(_APPLY)
            round_trips += 2  # the failed pipeline and the load
            results = await self._run(encoded)
        found = None
        if probe is not None:
            found = bool(results[-1])
            results = results[:-1]
        if checkpoint is not None:
            results = results[:-1]
        applied = sum(int(r) for r in results)
        return WriteResult(applied, len(results) - applied, round_trips + 1, found)

    async def _run(self, encoded: list[tuple[list[str], list[str | int | float]]]) -> list[int]:
        pipe = self._redis.pipeline(transaction=False)
        for keys, argv in encoded:
            pipe.evalsha(self._sha, len(keys), *keys, *argv)
        if self._checkpoint is not None:
            key, offsets = self._checkpoint
            pipe.hset(key, mapping=offsets)
        if self._probe is not None:
            pipe.exists(self._probe)
        return await pipe.execute()


def _encode(fenced: FencedOps) -> tuple[list[str], list[str | int | float]]:
    keys = [fenced.fence_key]
    index: dict[str, int] = {fenced.fence_key: 1}
    argv: list[str | int | float] = [fenced.position.cursor, fenced.position.offset, len(fenced.ops)]
    for op in fenced.ops:
        slot = index.get(op.key)
        if slot is None:
            keys.append(op.key)
            slot = index[op.key] = len(keys)
        argv.extend((op.command, slot, len(op.args), *op.args))
    return keys, argv
