"""Generations a SIGKILLed rebuild left behind: kept alive by a heartbeat, removed by the next rebuild.

A rebuild stopped by Ctrl-C, SIGTERM or a failure deletes its half-built generation itself
(``generations.py``); a SIGKILL runs no clean-up code, so its generation (tens of thousands of keys)
and its replay token stay — or, killed during the grace after its switch, the generation it
replaced. Nothing needs a human for that:

1. A rebuild's replay token lives ``LEDGERFLOW_REBUILD_LEASE_S`` seconds (default 60) and the rebuild
   refreshes it (EXPIRE, every copy on a cluster) every fifth of that while it works (``keep_alive``).
   EXPIRE never creates a key, so a token Redis lost (a flush) stays lost and the replay still stops
   (``SpaceLost``). A killed rebuild's token expires within the lease.
2. Every rebuild, as it starts, sweeps (``sweep``): one SCAN lists the generations that have keys
   under ``lf:<prefix>rm:``; a second SCAN, begun after the first ended, lists the generations
   that have a replay token; then the active pointer is read. A generation is abandoned if it is
   not this rebuild's, has no token and the pointer (read last) does not name it (``abandoned``).
3. The abandoned ones are deleted after the switch's grace (``GRACE_S``), as a switch deletes the
   generation it replaced.

Why that never deletes a generation in use:
- a rebuild still running holds its token: it creates it before its first write (so a generation
  seen in step 2's first SCAN had its token before that SCAN began, and the second SCAN returns
  it unless it went meanwhile), and its heartbeat keeps it;
- a token goes only by the switch (then the pointer, read after, names the generation or one
  that replaced it since), by expiry (the rebuild is dead or stalled past its lease — its writes
  and its switch check the token, so it fails and switches nothing), by a flush, or by the
  rebuild's own clean-up;
- a generation replaced by a switch may still serve reads in flight for ``GRACE_S``; the switch
  happened before the pointer was read, and the deletion waits ``GRACE_S`` after that;
- a generation without a token never gets one again (a name is never reused), so the decision
  does not go stale during the wait.

The projector's restore of a flushed space uses its own token (24 h) in the space the pointer
names, which the sweep never touches. On a Redis Cluster a generation's keys spread over every
slot (hash tags are per entity); SCAN visits every master and the token's per-slot copies are
all named ``<namespace>replaying:<token>:{<tag>}`` (``guards.py``).

The audit's scratch spaces (``lf:audit:<id>:``, ``audit/projections.py``) are kept and swept the
same way (``sweep_spaces``), with two differences: nothing ever reads a scratch space but its
audit, so there is no pointer and no grace; and a space counts only if it holds the ``leased``
mark (``LEASED``, set right after the token, before the first write), so a scratch space of an
audit of an older version, which has no token, is never taken for an abandoned one while it runs.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Awaitable, Callable, Iterable, Mapping

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from ledgerflow.envnumbers import env_whole
from ledgerflow.projections.guards import refresh_guard
from ledgerflow.projections.keys import DEFAULT_GENERATION, Keys, active_pointer, generations_base
from ledgerflow.redisvalues import text

log = logging.getLogger(__name__)

LEASE_ENV = "LEDGERFLOW_REBUILD_LEASE_S"
LEASE_S = 60
BEATS_PER_LEASE = 5
TOKEN_MARK = "replaying:"
LEASED = "leased"
"""A space's key (``<namespace>leased``) saying it is swept only by lease: see the module doc."""


def lease_from_env() -> int:
    """Seconds a rebuild's replay token lives without a heartbeat: ``LEDGERFLOW_REBUILD_LEASE_S``."""
    return lease_from(os.environ)


def lease_from(environ: Mapping[str, str]) -> int:
    """Pure: ``LEDGERFLOW_REBUILD_LEASE_S``, whole seconds from 2 to 3600 (default 60)."""
    return env_whole(environ, LEASE_ENV, LEASE_S, 2, 3600, unit="whole seconds")


async def keep_alive(redis: aioredis.Redis, token: str, lease_s: int) -> None:
    """Refresh ``token``'s lease every fifth of it until cancelled. A Redis failing meanwhile is
    the replay's to report (its writes fail too); the next beat tries again."""
    while True:
        await asyncio.sleep(lease_s / BEATS_PER_LEASE)
        try:
            await refresh_guard(redis, token, lease_s)
        except (RedisError, OSError) as exc:
            log.info("rebuild: refreshing the replay token failed (%s); trying again", type(exc).__name__)


def generation_of(key: str, base: str) -> tuple[str, bool] | None:
    """Pure: the generation a key under ``base`` (``lf:<prefix>rm:``) belongs to and whether it is a
    replay token; None for a key that is no generation's (the active pointer)."""
    found = space_of(key, base)
    return None if found is None else (found[0], found[1].startswith(TOKEN_MARK))


def space_of(key: str, base: str) -> tuple[str, str] | None:
    """Pure: the space (``<base><space>:``) a key belongs to and the rest of its name; None for a
    key under ``base`` that is no space's."""
    if not key.startswith(base):
        return None
    space, sep, rest = key[len(base) :].partition(":")
    if not sep or not space:
        return None
    return space, rest


def abandoned(spaces: Iterable[str], tokened: Iterable[str], active: str, own: str) -> list[str]:
    """Pure: the generations of ``spaces`` that are not ``own``, have no replay token and that
    the pointer (``active``, read after the tokens were listed) does not name."""
    return sorted(set(spaces) - set(tokened) - {active, own})


async def drop_space(redis: aioredis.Redis, keys: Keys) -> int:
    """Delete every key of a space (UNLINK in batches), its ``LEASED`` mark last (a sweeper killed
    half-way leaves a space the next sweep still takes); return how many."""
    removed = 0
    mark = (keys.namespace + LEASED).encode("utf-8", "surrogateescape")
    batch: list[bytes] = []
    async for key in redis.scan_iter(match=keys.namespace + "*", count=1000):
        if key == mark:
            continue
        batch.append(key)
        if len(batch) >= 500:
            removed += await redis.unlink(*batch)
            batch = []
    if batch:
        removed += await redis.unlink(*batch)
    return removed + int(await redis.unlink(mark))


def cancelled_meanwhile() -> None:
    """Raise ``CancelledError`` if the current task was cancelled and the cancellation got lost:
    on Python 3.11, ``asyncio.wait_for`` (redis-py wraps every send in it when a socket timeout is
    set) returns the inner result and drops a cancellation that lands as the send completes. The
    sweep's thousands of SCAN calls at a rebuild's start made a Ctrl-C then be ignored (the rebuild
    ran to its end), where the CLI promises exit 130 and nothing left behind."""
    task = asyncio.current_task()
    if task is not None and task.cancelling():
        raise asyncio.CancelledError


async def _scan(redis: aioredis.Redis, base: str, wanted: Callable[[str], bool]) -> set[str]:
    """The spaces under ``base`` that have a key whose rest of name is ``wanted``."""
    found: set[str] = set()
    async for raw in redis.scan_iter(match=base + "*", count=1000):
        seen = space_of(raw.decode("utf-8", "surrogateescape"), base)
        if seen is not None and wanted(seen[1]):
            found.add(seen[0])
    cancelled_meanwhile()
    return found


def _any_key(rest: str) -> bool:
    return True


def _leased(rest: str) -> bool:
    return rest == LEASED


def _token(rest: str) -> bool:
    return rest.startswith(TOKEN_MARK)


async def sweep(redis: aioredis.Redis, topic_prefix: str, own: str, grace_s: float) -> list[str]:
    """Delete the abandoned generations of ``topic_prefix`` (the module doc); return their names."""
    return await sweep_spaces(
        redis,
        generations_base(topic_prefix),
        own,
        active=lambda: _active(redis, topic_prefix),
        grace_s=grace_s,
        what="rebuild: removed the abandoned generation",
    )


async def sweep_spaces(
    redis: aioredis.Redis,
    base: str,
    own: str,
    *,
    active: Callable[[], Awaitable[str]] | None = None,
    grace_s: float = 0.0,
    marked: bool = False,
    what: str,
) -> list[str]:
    """Delete the spaces under ``base`` (``<base><space>:``) that are not ``own``, have no replay token
    and that ``active`` (the pointer, read after the tokens were listed) does not name; return their
    names. ``marked``: only spaces holding the ``LEASED`` mark count. ``what`` starts the log line
    of each space removed."""

    async def pointer() -> str:
        return "" if active is None else await active()

    spaces = await _scan(redis, base, _leased if marked else _any_key)
    if not abandoned(spaces, (), await pointer(), own):
        cancelled_meanwhile()
        return []  # only the live space (and running ones): no second SCAN
    tokened = await _scan(redis, base, _token)
    dead = abandoned(spaces, tokened, await pointer(), own)
    if dead:
        await asyncio.sleep(grace_s)  # a generation just replaced may still serve reads in flight
        for space in dead:
            removed = await drop_space(redis, Keys(f"{base}{space}:"))
            log.info("%s %s (%d keys)", what, space, removed)
    cancelled_meanwhile()
    return dead


async def _active(redis: aioredis.Redis, topic_prefix: str) -> str:
    raw = await redis.get(active_pointer(topic_prefix))
    return text(raw) if raw else DEFAULT_GENERATION
