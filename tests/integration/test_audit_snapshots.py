"""The read-model diff reads each key's snapshot with one script call per batch of keys: the
snapshots must be exactly those of reading every key with its own redis-py command (the
reference below), for every type a space can hold, awkward bytes included."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import redis.asyncio as aioredis

from ledgerflow.audit.digests import Snapshot, snapshot
from ledgerflow.audit.projections import _Space
from ledgerflow.config import Settings
from ledgerflow.projections.keys import Keys
from ledgerflow.redisclient import async_client


async def _reference(redis: aioredis.Redis, names: list[str]) -> list[Snapshot]:
    """A type and a read per key, each its own command (how the diff used to read)."""
    out = []
    for name in names:
        kind = (await redis.type(name)).decode()
        raw: Any
        if kind == "hash":
            raw = await redis.hgetall(name)
        elif kind == "list":
            raw = await redis.lrange(name, 0, -1)
        elif kind == "set":
            raw = await redis.smembers(name)
        elif kind == "zset":
            raw = await redis.zrange(name, 0, -1, withscores=True)
        elif kind == "string":
            raw = await redis.get(name)
        else:
            raw = await redis.exists(name)
        out.append(snapshot(kind, raw))
    return out


async def _check(settings: Settings) -> None:
    keys = Keys(f"lf:t{uuid.uuid4().hex[:10]}:")
    ns = keys.namespace
    redis = async_client(settings.redis_url)
    try:
        await redis.hset(ns + "h", mapping={"a": "1", "b\xff": b"\xff\xfe raw", "é": "ü"})
        await redis.rpush(ns + "l", "x", "x", b"\x00\xc3", '{"turn": 1}')
        await redis.sadd(ns + "s", "m", "n", b"\xfe")
        await redis.zadd(ns + "z", {"a": 1.5, "b": -2, "c": 1_700_000_000_000_000, "d": 0.1, "e": 1e-7})
        await redis.set(ns + "str", b"\xffvalue")
        await redis.xadd(ns + "stream", {"f": "v"})
        names = [ns + n for n in ("h", "l", "s", "z", "str", "stream", "gone")] * 3
        read = await _Space(redis, keys).snapshots(names)
        assert read == await _reference(redis, names)
        assert [s.kind for s in read[:7]] == ["hash", "list", "set", "zset", "string", "stream", "none"]
        assert [s.digest for s in read] == [s.digest for s in await _reference(redis, names)]
    finally:
        await redis.delete(*(ns + n for n in ("h", "l", "s", "z", "str", "stream")))
        await redis.aclose()


def test_one_script_call_reads_the_snapshots_the_commands_read(stack: Settings) -> None:
    asyncio.run(_check(stack))
