"""Applies fenced projection ops to Redis: at most once per record, pipelined per batch.

The groups of a batch that share an entity (a fence key, so one Redis Cluster slot) go
into one Lua call, which runs atomically and, for each record in order:
1. reads the fence (last applied offset for the record's ``topic:partition``);
2. skips the record if its offset is not above it (a redelivery);
3. otherwise runs its ops and moves the fence to the record's offset.
It returns how many records it applied. A batch is one pipeline: one round trip for
hundreds of records. Records travel as one JSON argument
(``[[cursor, offset, [[command, key index, arg, ...], ...]], ...]``, arguments as strings):
packing one string per entity instead of dozens of arguments per record is what keeps the
client's cost per record low (see docs/benchmarks.md).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import orjson
import redis.asyncio as aioredis
from redis.exceptions import NoScriptError

from ledgerflow.projections.ops import FencedOps

_APPLY = """
local applied = 0
for _, rec in ipairs(cjson.decode(ARGV[1])) do
  local fenced = tonumber(redis.call('HGET', KEYS[1], rec[1]) or '-1')
  if tonumber(rec[2]) > fenced then
    for _, op in ipairs(rec[3]) do
      redis.call(op[1], KEYS[op[2]], unpack(op, 3))
    end
    redis.call('HSET', KEYS[1], rec[1], rec[2])
    applied = applied + 1
  end
end
return applied
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
        encoded = _encode_batch(batch)
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
        return WriteResult(applied, len(batch) - applied, round_trips + 1, found)

    async def _run(self, encoded: list[tuple[list[str], list[str | int | bytes]]]) -> list[int]:
        pipe = self._redis.pipeline(transaction=False)
        for keys, argv in encoded:
            pipe.evalsha(self._sha, len(keys), *keys, *argv)
        if self._checkpoint is not None:
            key, offsets = self._checkpoint
            pipe.hset(key, mapping=offsets)
        if self._probe is not None:
            pipe.exists(self._probe)
        return await pipe.execute()


def _encode_batch(batch: Sequence[FencedOps]) -> list[tuple[list[str], list[bytes]]]:
    """One Lua call per fence key (entity), its records in batch order."""
    calls: dict[str, tuple[list[str], dict[str, int], list[list[object]]]] = {}
    for fenced in batch:
        call = calls.get(fenced.fence_key)
        if call is None:
            call = calls[fenced.fence_key] = ([fenced.fence_key], {fenced.fence_key: 1}, [])
        keys, index, records = call
        ops: list[list[object]] = []
        for op in fenced.ops:
            slot = index.get(op.key)
            if slot is None:
                keys.append(op.key)
                slot = index[op.key] = len(keys)
            ops.append([op.command, slot, *[a if isinstance(a, str) else str(a) for a in op.args]])
        records.append([fenced.position.cursor, str(fenced.position.offset), ops])
    return [(keys, [orjson.dumps(records)]) for keys, _, records in calls.values()]
