"""The read-model diff reads each key with one script call per batch of keys: its snapshots
and digests must be exactly those of reading every key with its own redis-py command (the
reference below), for every type a space can hold, awkward bytes included."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import redis.asyncio as aioredis

from ledgerflow.audit import digests
from ledgerflow.audit.digests import FENCE_SUFFIX, Snapshot, reply_digest, snapshot
from ledgerflow.audit.projections import _Space
from ledgerflow.config import Settings
from ledgerflow.projections.keys import Keys
from ledgerflow.redisclient import async_client


async def _as_sent(redis: aioredis.Redis, *command: Any) -> Any:
    """A command's reply as RESP2 sends it (a zset's scores as Redis formats them, the way a
    script's reply carries them), before redis-py's response callback."""
    kwargs = redis.connection_pool.connection_kwargs
    connection = aioredis.Connection(
        host=kwargs["host"], port=kwargs["port"], db=kwargs.get("db", 0), protocol=2
    )
    try:
        await connection.connect()
        await connection.send_command(*command)
        return await connection.read_response()
    finally:
        await connection.disconnect()


async def _reference(redis: aioredis.Redis, names: list[str]) -> list[tuple[Snapshot, str]]:
    """A type and a read per key, each its own command (how the diff used to read): the snapshot,
    and the digest of the content flattened as Redis sends it."""
    out = []
    for name in names:
        kind = (await redis.type(name)).decode()
        raw: Any
        flat: Any = None
        if kind == "hash":
            raw = await redis.hgetall(name)
            flat = [x for pair in raw.items() for x in pair]
        elif kind == "list":
            raw = flat = await redis.lrange(name, 0, -1)
        elif kind == "set":
            raw = await redis.smembers(name)
            flat = list(raw)
        elif kind == "zset":
            raw = await redis.zrange(name, 0, -1, withscores=True)
            flat = await _as_sent(redis, "ZRANGE", name, 0, -1, "WITHSCORES")  # scores as Redis sent them
        elif kind == "string":
            raw = flat = await redis.get(name)
        else:
            raw = await redis.exists(name)
        out.append((snapshot(kind, raw), reply_digest(kind, flat)))
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
        space = _Space(redis, keys)
        read = await space.snapshots(names)
        reference = await _reference(redis, names)
        assert read == [snap for snap, _ in reference]
        assert [s.kind for s in read[:7]] == ["hash", "list", "set", "zset", "string", "stream", "none"]
        digested = [reply_digest(kind, flat) for kind, flat in await space._replies(names)]
        assert digested == [digest for _, digest in reference]
        assert len(set(digested[:7])) == 7, "two different keys share a digest"
    finally:
        await redis.delete(*(ns + n for n in ("h", "l", "s", "z", "str", "stream")))
        await redis.aclose()


def test_one_script_call_reads_the_snapshots_the_commands_read(stack: Settings) -> None:
    asyncio.run(_check(stack))


async def _check_entity_read_whole(settings: Settings, monkeypatch: Any) -> None:
    """The projector writes an entity's content and fence in one script call while the audit
    reads: the audit must see the entity before or after that write, never the fence of one
    and the content of the other (that was a false ``projection.diff`` on a usage window the
    wall clock closed during an audit)."""
    keys = Keys(f"lf:t{uuid.uuid4().hex[:10]}:")
    ns = keys.namespace
    entity = "tenant:{acme}"
    usage, fence = ns + entity + ":usage", ns + entity + FENCE_SUFFIX
    others = [ns + f"conv:{{acme/c-{i}}}:turns" for i in range(20)]
    redis = async_client(settings.redis_url)
    space = _Space(redis, keys)
    read = space._replies
    calls, written = 0, False

    async def read_then_write(names: list[str]) -> list[tuple[str, Any]]:
        nonlocal calls, written
        found = await read(names)
        calls += 1
        if not written and {usage, fence} & set(names):  # the projector applies the next record
            written = True
            async with redis.pipeline(transaction=True) as pipe:
                pipe.hset(usage, "w2", "7")
                pipe.hset(fence, "usage.windows:0", "6")
                await pipe.execute()
        return found

    monkeypatch.setattr(space, "_replies", read_then_write)
    monkeypatch.setattr("ledgerflow.audit.projections.READ_BATCH", 1)  # a call per key, as far as allowed
    try:
        await redis.hset(usage, "w1", "5")
        await redis.hset(fence, "usage.windows:0", "5")
        for name in others:
            await redis.rpush(name, "turn")
        await space.load()
        assert calls > 1, "the space was read in one call: the test shows nothing"
        applied = space.fences[entity]["usage.windows:0"]
        content = (
            reply_digest(*(await read([usage]))[0]) if applied == 6 else reply_digest("hash", [b"w1", b"5"])
        )
        assert space.digests[entity][entity + ":usage"] == content, (
            f"the fence says usage.windows:0 applied up to {applied} but the content read beside it "
            "is from another moment: an entity's keys and fence were read by separate calls"
        )
    finally:
        await redis.delete(usage, fence, *others)
        await redis.aclose()


def test_an_entity_and_its_fence_are_read_at_one_moment(stack: Settings, monkeypatch: Any) -> None:
    asyncio.run(_check_entity_read_whole(stack, monkeypatch))


async def _check_keys_that_vanish_or_are_not_utf8(settings: Settings, monkeypatch: Any) -> None:
    """A fence listed and then dropped before its read (a rebuild's switch dropped the old
    generation, a flush) and a key whose name is not UTF-8 under the namespace: the space is
    read, the first as an entity with an empty fence, the second digested and readable again."""
    keys = Keys(f"lf:t{uuid.uuid4().hex[:10]}:")
    ns = keys.namespace
    entity = "conv:{acme/c-1}"
    fence, content = ns + entity + FENCE_SUFFIX, ns + entity
    hostile = ns.encode() + b"conv:{acme/\xff}:turns"
    redis = async_client(settings.redis_url)
    space = _Space(redis, keys)
    read = space._replies

    async def drop_then_read(names: list[bytes | str]) -> list[tuple[str, Any]]:
        await redis.delete(fence)
        return await read(names)

    monkeypatch.setattr(space, "_replies", drop_then_read)
    try:
        await redis.hset(content, "turns", "1")
        await redis.hset(fence, "t.conversation.events:0", "4")
        await redis.rpush(hostile, b"\xfe turn")
        await space.load()
        assert space.fences[entity] == {}, "the vanished fence should read as nothing applied"
        assert entity in space.digests
        odd = digests.key_text(b"conv:{acme/\xff}")
        assert list(space.digests[odd]) == [digests.key_text(b"conv:{acme/\xff}:turns")]
        again = await space.one(digests.key_text(b"conv:{acme/\xff}:turns"))
        assert again is not None and again.kind == "list"
    finally:
        await redis.delete(content, fence, hostile)
        await redis.aclose()


def test_keys_that_vanish_or_are_not_utf8_are_read(stack: Settings, monkeypatch: Any) -> None:
    asyncio.run(_check_keys_that_vanish_or_are_not_utf8(stack, monkeypatch))


async def _check_a_fence_the_listing_missed(settings: Settings, monkeypatch: Any) -> None:
    """SCAN may leave out a key created while it runs. Under live traffic the projector created a
    conversation's chain head and its fence during the audit's listing, and the listing returned the
    head without the fence: read as "no fence", beside a rebuild that stopped before that decision,
    the head was reported as content no record wrote (``projection.diff``, audit exit 1, on a probe's
    stack at 60 turns/s; clean again once traffic stopped). The fence is read all the same, and the
    entity counts as moved on."""
    keys = Keys(f"lf:t{uuid.uuid4().hex[:10]}:")
    ns = keys.namespace
    entity = "chain:{acme/c-new}"
    head, fence = ns + entity, ns + entity + FENCE_SUFFIX
    redis = async_client(settings.redis_url)
    scan = redis.scan_iter

    async def listing_without_the_fence(*args: Any, **kwargs: Any) -> Any:
        async for name in scan(*args, **kwargs):
            if digests.key_text(name) != fence:
                yield name

    monkeypatch.setattr(redis, "scan_iter", listing_without_the_fence)
    try:
        await redis.hset(head, mapping={"sequence": "1", "hash": "ab"})
        await redis.hset(fence, "policy.decisions:0", "41")
        space = _Space(redis, keys)
        await space.load()
        assert space.fences.get(entity) == {"policy.decisions:0": 41}, (
            "the fence the listing missed was not read"
        )
        compared = digests.compare_entity(entity, space.digests[entity], {}, space.fences[entity], {})
        assert compared.moved_on and not compared.divergences
    finally:
        await redis.delete(head, fence)
        await redis.aclose()


def test_a_fence_the_listing_missed_is_read_all_the_same(stack: Settings, monkeypatch: Any) -> None:
    asyncio.run(_check_a_fence_the_listing_missed(stack, monkeypatch))
