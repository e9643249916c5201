"""Guard keys (a space's sentinel, a replay's token) on one Redis and on a Redis Cluster.

Every fenced Lua call checks a guard before its first write, atomically with its writes: a
space whose guard is gone lost its data and takes nothing until it is restored. A Lua call may
only touch keys of one Redis Cluster slot, and an entity's keys live in the slot of its hash
tag, so on a cluster a guard is kept as **one copy per slot** (``<guard>:{<tag>}``, the tag
chosen to hash to that slot) and each call checks the copy in its own slot. On one Redis the
guard is its own single key, as always.

That is also what a cluster needs to notice a loss: a master that restarts empty loses the
copies of its slots only, and only writes to those slots are refused, while a lone guard key
would sit on one master and say nothing about the others.

- ``set_guard`` creates every copy; ``guard_complete`` checks them (all, or a sample of a few
  per master for a cheap periodic look);
- ``promote`` turns a replay token into a sentinel slot by slot, each step atomic in its slot
  (set the sentinel's copy only if the token's copy survived): a master flushed during the
  replay leaves its slots without a sentinel, and the replay runs again.
"""

from __future__ import annotations

import asyncio
import functools
from binascii import crc_hqx
from typing import Any, cast

import redis as redis_sync
import redis.asyncio as aioredis
from redis.asyncio.cluster import ClusterNode, RedisCluster
from redis.crc import REDIS_CLUSTER_HASH_SLOTS, key_slot
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError
from redis.exceptions import TryAgainError

from ledgerflow.redisclient import is_cluster_client

SAMPLE_EVERY = 128
"""``guard_complete(..., full=False)`` checks every 128th slot's copy: 128 keys, so every master
that owns a run of 128 slots or more (each of three owns about 5,461) is looked at."""

# KEYS: the token (copy), the sentinel (copy). ARGV: the sentinel's value.
PROMOTE = """
if redis.call('EXISTS', KEYS[1]) == 0 then
  return 0
end
redis.call('SET', KEYS[2], ARGV[1])
redis.call('DEL', KEYS[1])
return 1
"""


@functools.cache
def _tags() -> tuple[str, ...]:
    """For each slot, the first hex number that hashes to it (at most 5 characters): Redis
    Cluster's slot of a tag is CRC16 (XMODEM, ``crc_hqx``) modulo 16,384."""
    tags: dict[int, str] = {}
    i = 0
    while len(tags) < REDIS_CLUSTER_HASH_SLOTS:
        tag = b"%x" % i
        tags.setdefault(crc_hqx(tag, 0) % REDIS_CLUSTER_HASH_SLOTS, tag.decode())
        i += 1
    return tuple(tags[s] for s in range(REDIS_CLUSTER_HASH_SLOTS))


def slot_of(key: str) -> int:
    return int(key_slot(key.encode()))


def copy_in_slot(guard: str, slot: int) -> str:
    """``guard``'s copy that lives in ``slot``."""
    return f"{guard}:{{{_tags()[slot]}}}"


def is_guard_key(key: str, guard: str) -> bool:
    """Whether ``key`` is ``guard`` or one of its per-slot copies."""
    return key == guard or (key.startswith(guard + ":{") and key.endswith("}"))


def guard_for(guard: str, key: str, cluster: bool) -> str:
    """The key a Lua call on ``key``'s slot checks for ``guard``: the guard itself on one Redis,
    its copy in that slot on a cluster."""
    return copy_in_slot(guard, slot_of(key)) if cluster else guard


def copies(guard: str, cluster: bool, every: int = 1) -> list[str]:
    return [copy_in_slot(guard, s) for s in range(0, REDIS_CLUSTER_HASH_SLOTS, every)] if cluster else [guard]


def guard_sampled_blocking(client: redis_sync.Redis, guard: str) -> bool:
    """Blocking ``guard_complete(..., full=False)`` (polls of tests and the chaos run)."""
    wanted = copies(guard, is_cluster_client(client), SAMPLE_EVERY)
    pipe = client.pipeline(transaction=False)
    for key in wanted:
        pipe.exists(key)
    return sum(int(n) for n in pipe.execute()) == len(wanted)


async def set_guard(redis: aioredis.Redis, guard: str, value: str, ex: int | None = None) -> None:
    """Create ``guard`` (every copy on a cluster)."""
    extra: tuple[str | int, ...] = ("EX", ex) if ex is not None else ()
    await _run(redis, [(key, ("SET", key, value, *extra)) for key in copies(guard, is_cluster_client(redis))])


async def refresh_guard(redis: aioredis.Redis, guard: str, ex: int) -> None:
    """Let ``guard`` live ``ex`` seconds from now (every copy on a cluster); EXPIRE creates no
    key, so a guard Redis lost stays lost."""
    await _run(redis, [(key, ("EXPIRE", key, ex)) for key in copies(guard, is_cluster_client(redis))])


async def guard_complete(redis: aioredis.Redis, guard: str, full: bool = True) -> bool:
    """Whether ``guard`` exists (on a cluster: every copy, or with ``full=False`` the sample).
    The sample is looked at first: a new or flushed space fails there at once."""
    cluster = is_cluster_client(redis)
    for every in (SAMPLE_EVERY, 1) if full and cluster else (SAMPLE_EVERY,):
        wanted = copies(guard, cluster, every)
        found = await _run(redis, [(key, ("EXISTS", key)) for key in wanted])
        if sum(int(n) for n in found) != len(wanted):
            return False
    return True


async def promote(
    redis: aioredis.Redis, token: str, sentinel: str, value: str, skip: str | None = None
) -> bool:
    """Replace the replay ``token`` by ``sentinel`` wherever the token survived; True if it survived
    everywhere (the space is complete). ``skip``: leave the copies in this key's slot (a caller
    that switches there in its own atomic step)."""
    cluster = is_cluster_client(redis)
    pairs = list(zip(copies(token, cluster), copies(sentinel, cluster), strict=True))
    if skip is not None and cluster:
        pairs.pop(slot_of(skip))
    commands: list[Command] = [(to, ("EVAL", PROMOTE, 2, token_copy, to, value)) for token_copy, to in pairs]
    return all(int(r) == 1 for r in await _run(redis, commands))


Command = tuple[str, tuple[str | int, ...]]  # a key, the command (on that key's slot only)


async def _run(redis: aioredis.Redis, commands: list[Command]) -> list[Any]:
    """Replies of ``commands`` in order. On a cluster each master gets its slots' commands as one
    plain pipeline: redis-py's cluster pipeline routes each command on its own, seconds for the
    16,384 copies of a guard. A reply that is an error (a slot moved meanwhile) raises
    ``TryAgainError``: transient, the caller's backoff tries again with a fresh slot map."""
    if not is_cluster_client(redis):
        pipe = redis.pipeline(transaction=False)
        for _, command in commands:
            pipe.execute_command(*command)
        return list(await pipe.execute())
    cluster = cast(RedisCluster, redis)
    await cluster.initialize()  # the slot map (once per client; refreshed below after a failure)
    by_master: dict[str, tuple[ClusterNode, list[int]]] = {}
    for i, (key, _) in enumerate(commands):
        node = cluster.nodes_manager.get_node_from_slot(slot_of(key))
        by_master.setdefault(node.name, (node, []))[1].append(i)
    replies: list[Any] = [None] * len(commands)

    async def send(node: ClusterNode, indexes: list[int]) -> None:
        plain = node_client(node)
        try:
            pipe = plain.pipeline(transaction=False)
            for i in indexes:
                pipe.execute_command(*commands[i][1])
            for i, reply in zip(indexes, await pipe.execute(raise_on_error=False), strict=True):
                replies[i] = reply
        finally:
            await plain.aclose()

    try:
        await asyncio.gather(*(send(node, indexes) for node, indexes in by_master.values()))
    except (RedisConnectionError, RedisTimeoutError):  # a master died: the next try uses a fresh map
        await cluster.nodes_manager.initialize()
        raise
    failed = [r for r in replies if isinstance(r, Exception)]
    if failed:
        await cluster.nodes_manager.initialize()  # a slot moved or a master failed over: a fresh map
        raise TryAgainError(f"{len(failed)} guard commands failed on the cluster, first: {failed[0]!r}")
    return replies


def node_client(node: ClusterNode) -> aioredis.Redis:
    """A plain client of one cluster node, connected as the cluster client connects to it: its
    connection class (TLS for ``rediss+cluster://``) and options (credentials, timeouts,
    certificates). Built, not connected."""
    pool = aioredis.ConnectionPool(
        connection_class=node.connection_class, max_connections=4, **node.connection_kwargs
    )
    return aioredis.Redis(connection_pool=pool)
