"""The edge's Redis locks (``SET NX PX`` with a token, deleted only by their holder) that a paused
or slow Redis cannot leave without a holder.

A ``SET`` or release that Redis did not answer within the deadline may still be applied when it
wakes, after the edge gave up on it: such a lock had no holder left to delete it, so every request
needing it was refused (409) until its TTL ran out — a minute for a rule pack publication, 80 s
for an audit. This process remembers those tokens (``_UNSETTLED``, each until its lock would have
expired anyway) and deletes a lock still holding one before it asks for the lock again. A lock
another edge process left that way still lasts its TTL.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Awaitable
from typing import TypeVar

import redis.asyncio as aioredis

from ledgerflow.api.health import within_deadline
from ledgerflow.errors import InfrastructureError

__all__ = ["release", "take"]

T = TypeVar("T")

_RELEASE = (
    "local held = redis.call('GET', KEYS[1]) "
    "for _, token in ipairs(ARGV) do if held == token then return redis.call('DEL', KEYS[1]) end end "
    "return 0"
)
"""Delete the lock if it holds one of ``ARGV``'s tokens."""

_UNSETTLED: dict[str, dict[str, float]] = {}
"""Per lock key, the tokens of this process whose ``SET`` or release Redis never answered, with
when (``time.monotonic``) the lock they may hold expires."""


async def take(redis: aioredis.Redis, key: str, token: str, ttl_ms: int) -> bool:
    """``SET key token NX PX ttl_ms`` within the deadline: whether this request holds the lock now.
    First deletes a lock this process's unanswered requests may have left. InfrastructureError
    (503) if Redis does not answer."""
    await _settle(redis, key)
    return bool(await _tracked(redis.set(key, token, nx=True, px=ttl_ms), key, token, ttl_ms))


async def release(redis: aioredis.Redis, key: str, token: str, ttl_ms: int) -> None:
    """Delete the lock if it is still ``token``'s; if Redis does not answer, the token is kept
    to be settled before the next ``take`` of ``key`` (never raises for that)."""
    with contextlib.suppress(InfrastructureError):
        await _tracked(redis.eval(_RELEASE, 1, key, token), key, token, ttl_ms)


async def _tracked(call: Awaitable[T], key: str, token: str, ttl_ms: int) -> T:
    """``call`` (a ``SET`` or release of ``key`` with ``token``) within the deadline; if it fails,
    ``token`` is remembered as unsettled: Redis may still apply it."""
    try:
        return await within_deadline(call, "redis")
    except InfrastructureError:
        _UNSETTLED.setdefault(key, {})[token] = time.monotonic() + ttl_ms / 1000
        raise


async def _settle(redis: aioredis.Redis, key: str) -> None:
    """Delete ``key``'s lock if one of this process's unsettled tokens holds it; forget tokens
    whose lock has expired anyway."""
    held = _UNSETTLED.get(key)
    if not held:
        return
    now = time.monotonic()
    seen = dict(held)
    live = [token for token, until in seen.items() if until > now]
    if live:
        await within_deadline(redis.eval(_RELEASE, 1, key, *live), "redis")
    for token in seen:  # settled or expired; a token added meanwhile stays
        held.pop(token, None)
    if not held:
        _UNSETTLED.pop(key, None)
