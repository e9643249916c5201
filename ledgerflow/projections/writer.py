"""Applies fenced projection ops to Redis: at most once per record, pipelined per batch.

A batch's groups go into one Lua call (on a Redis Cluster, one per hash slot of the
groups' fence keys: a script may only touch keys of one slot there; and at most
``RECORDS_PER_CALL`` groups a call, so one call never holds Redis for long), which runs
atomically and, for each group in batch order:
1. reads its fence (last applied offset for the record's ``topic:partition`` on its entity);
2. skips the group if its offset is not above it (a redelivery);
3. otherwise runs its ops and moves the fence to the record's offset.
It returns how many groups it applied. A batch is one pipeline: one round trip for
hundreds of records. Before its first write each call checks a *guard* key (the space's
sentinel, or a replay's token): if Redis lost its data the guard is gone and the call
writes nothing, so a flushed space never takes a record that would fence out the replay
that must come first. ``Once`` and ``ChainLink`` conditions are checked in the same step.
Groups travel as one JSON argument
(``[[fence key index, cursor, offset, [[command, key index, arg, ...], ...], once?, link?], ...]``,
arguments as strings; every key once in KEYS): packing one string per call instead of
dozens of arguments per record, and one call instead of one per entity, is what keeps the
client's cost per record low (see docs/benchmarks.md).

A record's ``Once`` identity is claimed only when the record is applied: one its chain link refuses
(a decision written from outside for a real turn, linked to nothing) leaves the turn's identity
free, so the genuine decision that follows it is projected, not taken for a duplicate.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import orjson
import redis.asyncio as aioredis
from redis.crc import key_slot
from redis.exceptions import NoScriptError

from ledgerflow.projections.clusterpipe import run_calls
from ledgerflow.projections.guards import guard_for
from ledgerflow.projections.keys import FENCE_SUFFIX
from ledgerflow.projections.ops import FencedOps
from ledgerflow.redisclient import is_cluster_client

_APPLY = """
local guard = KEYS[#KEYS]
if ARGV[2] == '1' and redis.call('EXISTS', guard) == 0 then
  return {-1}
end
local applied, deduped, refused = 0, 0, {}
for _, rec in ipairs(cjson.decode(ARGV[1])) do
  local fence, cursor, offset = KEYS[rec[1]], rec[2], rec[3]
  local fenced = tonumber(redis.call('HGET', fence, cursor) or '-1')
  if tonumber(offset) > fenced then
    local ok = true
    local once, link = rec[5], rec[6]
    local at = cursor .. '@' .. offset
    if type(once) == 'table' and redis.call('HEXISTS', KEYS[once[1]], once[2]) == 1 then
      ok = false
      deduped = deduped + 1
    end
    if ok and type(link) == 'table' then
      local head = redis.call('HGET', KEYS[link[1]], link[2])
      local seq = tonumber(link[3])
      local why = false
      if head then
        local hs, hh = string.match(head, '^(%d+) (%x+)$')
        if seq == tonumber(hs) + 1 and link[4] == hh then
          why = false
        elseif seq == tonumber(hs) and link[5] == hh then
          why = 'duplicate'
        else
          why = 'broken-link'
        end
      elseif not (seq == 1 and link[4] == string.rep('0', 64)) then
        why = 'bad-genesis'
      end
      if why then
        ok = false
        redis.call('HSET', KEYS[link[6]], at, why)
        refused[#refused + 1] = at .. '@' .. why
      else
        redis.call('HSET', KEYS[link[1]], link[2], link[3] .. ' ' .. link[5])
      end
      redis.call('HSET', KEYS[link[7]], cursor, offset)
    end
    if ok and type(once) == 'table' then
      redis.call('HSET', KEYS[once[1]], once[2], at)
    end
    if ok then
      for _, op in ipairs(rec[4]) do
        redis.call(op[1], KEYS[op[2]], unpack(op, 3))
      end
      applied = applied + 1
    end
    redis.call('HSET', fence, cursor, offset)
  end
end
return {applied, deduped, unpack(refused)}
"""

# KEYS: checkpoint, guard. ARGV: guarded?, then cursor offset pairs. Offsets only rise: a
# late write of an older batch (a partition that moved to another worker) cannot lower them.
_CHECKPOINT = """
if ARGV[1] == '1' and redis.call('EXISTS', KEYS[2]) == 0 then
  return -1
end
for i = 2, #ARGV, 2 do
  if tonumber(redis.call('HGET', KEYS[1], ARGV[i]) or '-1') < tonumber(ARGV[i + 1]) then
    redis.call('HSET', KEYS[1], ARGV[i], ARGV[i + 1])
  end
end
return 0
"""

# KEYS: checkpoint, guard. ARGV: cursor offset pairs this writer already wrote. A checkpoint
# behind them means Redis lost writes it had acknowledged (a restart from an older snapshot,
# a failover to a lagging replica) while the guard survived: drop the guard, so this batch
# and every other guarded write is refused until the space is restored.
_EXPECT = """
if redis.call('EXISTS', KEYS[2]) == 0 then
  return -1
end
for i = 1, #ARGV, 2 do
  if tonumber(redis.call('HGET', KEYS[1], ARGV[i]) or '-1') < tonumber(ARGV[i + 1]) then
    redis.call('DEL', KEYS[2])
    return -2
  end
end
return 0
"""


_SCRIPTS = (_APPLY, _CHECKPOINT, _EXPECT)

RECORDS_PER_CALL = 1000  # groups per Lua call: Redis serves no other client while a script runs


class SpaceLost(Exception):
    """The guard key of a guarded write is gone: Redis lost the space's data (flush,
    restart without persistence). Nothing of the refused calls was applied."""


@dataclass(frozen=True, slots=True)
class Refusal:
    """A record the chain condition refused (``ChainLink``)."""

    cursor: str
    offset: int
    reason: str  # "broken-link" | "duplicate" | "bad-genesis"


@dataclass(frozen=True, slots=True)
class WriteResult:
    applied: int
    skipped: int  # groups not applied: fenced (redelivered), deduplicated or refused
    round_trips: int
    lost: bool = False  # a guarded call found its guard gone (see ``SpaceLost``)
    rolled_back: bool = False  # the checkpoint was behind ``expect``: Redis lost acknowledged writes
    deduped: int = 0
    refused: tuple[Refusal, ...] = ()


class ProjectionWriter:
    """The one writer of a projection's key space."""

    def __init__(self, redis: aioredis.Redis, per_call: int = RECORDS_PER_CALL) -> None:
        self._redis = redis
        self._per_call = per_call
        self._shas: dict[str, str] = {}
        self._cluster = is_cluster_client(redis)  # guards are per slot there (projections/guards.py)

    @property
    def redis(self) -> aioredis.Redis:
        return self._redis

    async def apply(
        self,
        batch: Sequence[FencedOps],
        checkpoint: tuple[str, dict[str, int]] | None = None,
        guard: str | None = None,
        expect: tuple[str, dict[str, int]] | None = None,
    ) -> WriteResult:
        """Apply ``batch``; also record ``checkpoint`` = (key, {topic:partition: offset}).

        The checkpoint only reports progress (lag, read-your-writes); correctness rests on
        the per-entity fences, so it rides in the same pipeline without a transaction.
        ``guard`` is a key that must exist for anything to be written: every Lua call checks
        it before its first write, atomically, so a Redis that lost its data (the guard with
        it) refuses the whole batch instead of taking a part of it (``WriteResult.lost``).
        ``expect`` = (checkpoint key, {topic:partition: offset} this writer recorded before)
        is checked first, in the same round trip, when there is a guard: see ``_EXPECT``.
        """
        if checkpoint is not None and not checkpoint[1]:
            checkpoint = None  # nothing to record
        if expect is not None and (guard is None or not expect[1]):
            expect = None  # nothing to check
        if not batch and checkpoint is None and expect is None:
            return WriteResult(0, 0, 0)
        calls: list[tuple[str, list[str], list[str | bytes]]] = []
        if expect is not None and guard is not None:
            pairs: list[str | bytes] = [str(x) for kv in expect[1].items() for x in kv]
            calls.append((_EXPECT, [expect[0], guard_for(guard, expect[0], self._cluster)], pairs))
        calls += [
            (
                _APPLY,
                [*keys, guard_for(guard, keys[0], self._cluster) if guard else keys[0]],
                [*argv, "1" if guard else "0"],
            )
            for keys, argv in _encode_batch(batch, _slot_of(self._cluster), self._per_call)
        ]
        if checkpoint is not None:
            key, offsets = checkpoint
            pairs = [str(x) for kv in offsets.items() for x in kv]
            guard_key = guard_for(guard, key, self._cluster) if guard else key
            calls.append((_CHECKPOINT, [key, guard_key], ["1" if guard else "0", *pairs]))
        round_trips = 0
        if set(_SCRIPTS) - set(self._shas):
            await self._load()
            round_trips += 1
        try:
            results = await self._run(calls)
        except NoScriptError:  # Redis restarted and lost its script cache: load and redo.
            await self._load()
            round_trips += 2  # the failed pipeline and the load
            results = await self._run(calls)
        lost = rolled_back = False
        if expect is not None:
            rolled_back = results[0] == -2
            lost = results[0] != 0
            results = results[1:]
        if checkpoint is not None:
            lost = lost or results[-1] == -1
            results = results[:-1]
        applied = deduped = 0
        refused: list[Refusal] = []
        for result in results:
            if int(result[0]) == -1:
                lost = True
                continue
            applied += int(result[0])
            deduped += int(result[1])
            refused += [_refusal(r) for r in result[2:]]
        return WriteResult(
            applied, len(batch) - applied, round_trips + 1, lost, rolled_back, deduped, tuple(refused)
        )

    async def _load(self) -> None:
        """Load every script in one round trip (a cluster loads each on every master at once)."""
        if self._cluster:  # redis-py's cluster pipeline refuses SCRIPT LOAD
            self._shas = {script: str(await self._redis.script_load(script)) for script in _SCRIPTS}
            return
        pipe = self._redis.pipeline(transaction=False)
        for script in _SCRIPTS:
            pipe.script_load(script)
        self._shas = dict(zip(_SCRIPTS, await pipe.execute(), strict=True))

    async def _run(self, calls: list[tuple[str, list[str], list[str | bytes]]]) -> list[Any]:
        if self._cluster:  # slot by slot, the checkpoint check first, replicas waited for
            sent = [(self._shas[script], keys, argv) for script, keys, argv in calls]
            results = await run_calls(self._redis, sent, check_first=calls[0][0] is _EXPECT)
            # the check failed: nothing else was sent, and every other call counts as refused
            return results + [-1 if s is _CHECKPOINT else [-1] for s, _, _ in calls[len(results) :]]
        pipe = self._redis.pipeline(transaction=False)
        for script, keys, argv in calls:
            pipe.evalsha(self._shas[script], len(keys), *keys, *argv)
        return await pipe.execute()


def _refusal(raw: bytes | str) -> Refusal:
    text = raw.decode() if isinstance(raw, bytes) else raw
    cursor, offset, reason = text.rsplit("@", 2)
    return Refusal(cursor, int(offset), reason)


def _slot_of(cluster: bool) -> Callable[[str], int] | None:
    """How to group fence keys into calls: by hash slot on a Redis Cluster, else all in one."""
    if cluster:
        return lambda key: key_slot(key.encode())
    return None


def _encode_batch(
    batch: Sequence[FencedOps], slot_of: Callable[[str], int] | None = None, per_call: int = RECORDS_PER_CALL
) -> list[tuple[list[str], list[bytes]]]:
    """The Lua calls of a batch: its groups in batch order, split by ``slot_of`` their fence keys
    (when given) and into calls of at most ``per_call`` groups."""
    calls: dict[int, list[tuple[list[str], dict[str, int], list[list[object]]]]] = {}
    for fenced in batch:
        chunks = calls.setdefault(0 if slot_of is None else slot_of(fenced.fence_key), [])
        if not chunks or len(chunks[-1][2]) >= per_call:
            chunks.append(([], {}, []))
        keys, index, records = chunks[-1]
        # Numbers go as text (Lua would print a 16-digit timestamp in exponent form); ``str`` of
        # a str is the str itself, and ``map`` keeps the loop in C.
        ops = [[op.command, _slot(keys, index, op.key), *map(str, op.args)] for op in fenced.ops]
        record: list[object] = [
            _slot(keys, index, fenced.fence_key),
            fenced.position.cursor,
            str(fenced.position.offset),
            ops,
        ]
        if fenced.once is not None or fenced.link is not None:
            once = fenced.once
            record.append(0 if once is None else [_slot(keys, index, once.key), once.member])
        if fenced.link is not None:
            link = fenced.link
            head, quarantine = _slot(keys, index, link.head_key), _slot(keys, index, link.quarantine_key)
            fence = _slot(keys, index, link.head_key + FENCE_SUFFIX)
            record.append([head, link.copy, str(link.sequence), link.prev_hash, link.hash, quarantine, fence])
        records.append(record)
    return [(keys, [orjson.dumps(records)]) for chunks in calls.values() for keys, _, records in chunks]


def _slot(keys: list[str], index: dict[str, int], key: str) -> int:
    """The 1-based position of ``key`` in the call's KEYS, appending it on first use."""
    slot = index.get(key)
    if slot is None:
        keys.append(key)
        slot = index[key] = len(keys)
    return slot
