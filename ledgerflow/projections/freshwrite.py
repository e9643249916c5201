"""Sending a fold's ``Writes`` to Redis: a few script calls per batch, one pipeline.

A fresh key space has one writer (the replay filling it), so nothing needs to be checked
per record in Redis: each key gets at most one HSET, one HINCRBY per field, one RPUSH, one
ZADD and one ZREM per batch (argument lists cut at ``CHUNK``). Sent as separate commands,
redis-py's per-argument packing in Python would cost about as much as the fold saved, so
the commands travel as data: ``CALL`` commands per Lua call, as one JSON argument (orjson,
C) with their keys in KEYS, and the calls of a batch in one pipeline. Each call first
checks the ``guard`` (a rebuild's replay token), atomically with its writes: if Redis lost
its data the call writes nothing and the batch raises ``SpaceLost``. Calls stay small
(``CALL`` commands, about a millisecond of Redis time) so readers of other spaces are not
held up. On one Redis the keys of one call span many entities; on a Redis Cluster a call
takes the keys of one slot only (and checks the guard's copy in that slot, ``guards.py``), so
the calls are cut per slot.
"""

from __future__ import annotations

from collections.abc import Iterator

import orjson
import redis.asyncio as aioredis

from ledgerflow.projections.clusterpipe import run_calls
from ledgerflow.projections.fold import Writes
from ledgerflow.projections.guards import guard_for, slot_of
from ledgerflow.projections.writer import SpaceLost
from ledgerflow.redisclient import is_cluster_client

CHUNK = 500  # field/value pairs (or items) per command: Lua's unpack takes a few thousand at most
CALL = 1000  # commands per script call

# KEYS: the keys of the commands, then the guard. ARGV: JSON [[command, key index, arg, ...], ...],
# guarded? Returns 1 (written) or -1 (guard gone): never 0, since redis-py's cluster pipeline, when
# it retries after a connection error, sends again every command whose result is empty or false.
_WRITE = """
if ARGV[2] == '1' and redis.call('EXISTS', KEYS[#KEYS]) == 0 then
  return -1
end
for _, c in ipairs(cjson.decode(ARGV[1])) do
  redis.call(c[1], KEYS[c[2]], unpack(c, 3))
end
return 1
"""


def commands(writes: Writes, checkpoint: tuple[str, dict[str, int]] | None = None) -> Iterator[list[str]]:
    """The Redis commands of ``writes`` (and the checkpoint's offsets), as argument lists."""
    for key, values in writes.hset.items():
        pairs = [x for kv in values.items() for x in kv]
        for i in range(0, len(pairs), 2 * CHUNK):
            yield ["HSET", key, *pairs[i : i + 2 * CHUNK]]
    for key, counters in writes.hincrby.items():
        for name, by in counters.items():
            yield ["HINCRBY", key, name, str(by)]  # by 0 too: it creates the field, as the ops did
    for key, items in writes.rpush.items():
        for i in range(0, len(items), CHUNK):
            yield ["RPUSH", key, *items[i : i + CHUNK]]
    for key, members in writes.zadd.items():
        pairs = [x for member, score in members.items() for x in (score, member)]
        for i in range(0, len(pairs), 2 * CHUNK):
            yield ["ZADD", key, *pairs[i : i + 2 * CHUNK]]
    for key, gone in writes.zrem.items():
        names = sorted(gone)
        for i in range(0, len(names), CHUNK):
            yield ["ZREM", key, *names[i : i + CHUNK]]
    if checkpoint is not None and checkpoint[1]:
        key, offsets = checkpoint
        yield ["HSET", key, *(x for cursor, offset in offsets.items() for x in (cursor, str(offset)))]


async def write(
    redis: aioredis.Redis,
    writes: Writes,
    checkpoint: tuple[str, dict[str, int]] | None = None,
    guard: str | None = None,
) -> int:
    """Send one batch's writes in one pipeline; return the commands sent. Raises ``SpaceLost``
    (nothing of the batch's refused calls written) if ``guard`` is gone."""
    calls = list(_calls(commands(writes, checkpoint), guard, is_cluster_client(redis)))
    sent = sum(n for n, _, _ in calls)
    if not calls:
        return 0
    results = await _run(redis, calls)
    if any(int(r) == -1 for r in results):
        raise SpaceLost(f"{guard} is gone: Redis lost the space during the replay")
    return sent


async def _run(redis: aioredis.Redis, calls: list[_Call]) -> list[int]:
    """EVAL with the script's text, not EVALSHA: a master that lost its script cache (restarted,
    or a replica promoted on a cluster) runs the call anyway. With EVALSHA its calls failed with
    NOSCRIPT while other masters' calls of the batch succeeded, and sending the batch again
    applied those twice (their HINCRBY and RPUSH are not fenced). The text is a few hundred bytes
    beside a call's thousand commands."""
    if is_cluster_client(redis):  # replicas waited for (clusterpipe.py)
        return await run_calls(
            redis, [(_WRITE, keys, argv) for _, keys, argv in calls], False, command="EVAL"
        )
    pipe = redis.pipeline(transaction=False)
    for _, keys, argv in calls:
        pipe.eval(_WRITE, len(keys), *keys, *argv)
    return list(await pipe.execute())


_Call = tuple[int, list[str], list[str | bytes]]  # commands in it, KEYS, ARGV


def _calls(cmds: Iterator[list[str]], guard: str | None, cluster: bool = False) -> Iterator[_Call]:
    """Script calls of at most ``CALL`` commands (on a cluster: of one slot each)."""
    open_calls: dict[int, tuple[list[str], dict[str, int], list[list[object]]]] = {}
    for name, key, *args in cmds:
        group = slot_of(key) if cluster else 0
        keys, index, batch = open_calls.setdefault(group, ([], {}, []))
        at = index.get(key)
        if at is None:
            keys.append(key)
            at = index[key] = len(keys)
        batch.append([name, at, *args])
        if len(batch) >= CALL:
            yield _call(keys, batch, guard, cluster)
            del open_calls[group]
    for keys, _, batch in open_calls.values():
        yield _call(keys, batch, guard, cluster)


def _call(keys: list[str], batch: list[list[object]], guard: str | None, cluster: bool) -> _Call:
    checked = guard_for(guard, keys[0], cluster) if guard else keys[0]
    return len(batch), [*keys, checked], [orjson.dumps(batch), "1" if guard else "0"]
