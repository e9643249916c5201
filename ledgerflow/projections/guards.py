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

import functools

import redis.asyncio as aioredis
from redis.crc import REDIS_CLUSTER_HASH_SLOTS, key_slot

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
    """For each slot, the shortest hex string that hashes to it (at most 5 characters)."""
    tags: dict[int, str] = {}
    i = 0
    while len(tags) < REDIS_CLUSTER_HASH_SLOTS:
        tag = format(i, "x")
        tags.setdefault(key_slot(tag.encode()), tag)
        i += 1
    return tuple(tags[s] for s in range(REDIS_CLUSTER_HASH_SLOTS))


def slot_of(key: str) -> int:
    return int(key_slot(key.encode()))


def copy_in_slot(guard: str, slot: int) -> str:
    """``guard``'s copy that lives in ``slot``."""
    return f"{guard}:{{{_tags()[slot]}}}"


def guard_for(guard: str, key: str, cluster: bool) -> str:
    """The key a Lua call on ``key``'s slot checks for ``guard``: the guard itself on one Redis,
    its copy in that slot on a cluster."""
    return copy_in_slot(guard, slot_of(key)) if cluster else guard


def copies(guard: str, cluster: bool, every: int = 1) -> list[str]:
    return [copy_in_slot(guard, s) for s in range(0, REDIS_CLUSTER_HASH_SLOTS, every)] if cluster else [guard]


async def set_guard(redis: aioredis.Redis, guard: str, value: str, ex: int | None = None) -> None:
    """Create ``guard`` (every copy on a cluster: one pipeline, one round trip per master)."""
    pipe = redis.pipeline(transaction=False)
    for key in copies(guard, is_cluster_client(redis)):
        pipe.set(key, value, ex=ex)
    await pipe.execute()


async def guard_complete(redis: aioredis.Redis, guard: str, full: bool = True) -> bool:
    """Whether ``guard`` exists (on a cluster: every copy, or with ``full=False`` the sample)."""
    wanted = copies(guard, is_cluster_client(redis), 1 if full else SAMPLE_EVERY)
    pipe = redis.pipeline(transaction=False)
    for key in wanted:
        pipe.exists(key)
    return sum(int(n) for n in await pipe.execute()) == len(wanted)


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
    pipe = redis.pipeline(transaction=False)
    for from_key, to_key in pairs:
        pipe.execute_command("EVAL", PROMOTE, 2, from_key, to_key, value)
    return all(int(r) == 1 for r in await pipe.execute())
