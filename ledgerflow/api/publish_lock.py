"""One rule pack publication per tenant at a time, across every edge sharing the read-model Redis.

``PUT /v1/policy/rules`` picks a version (the tenant's latest on ``policy.rules`` + 1) and then
writes the record. Two publications of one tenant overlapping there both picked the same version:
each admin got a 201 naming it, and the agents kept only the later record, so the other pack was
acknowledged but never in force and its version named another constitution. The edge therefore
holds a Redis lock of the tenant (``SET NX PX``, released only by its holder) from picking the
version to the broker's ack; a publication that finds it held waits for it, up to ``WAIT_S``, then
is a 409 with ``Retry-After``. ``ledgerflow policy publish`` (the CLI) writes without it.

A ``SET`` or release that Redis did not answer in time (paused, slow) may still be applied when it
wakes, after the edge gave up: such a lock had no holder left to release it, and every publication of
the tenant was a 409 until its ``TTL_MS`` ran out. The edge remembers those tokens (``_UNSETTLED``,
each for ``TTL_MS``) and deletes a lock still holding one before it asks for the lock again; a lock
another edge left that way still lasts its ``TTL_MS``.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import AsyncIterator, Awaitable
from typing import TypeVar

import redis.asyncio as aioredis

from ledgerflow.api.health import within_deadline
from ledgerflow.errors import DomainError, InfrastructureError

WAIT_S = 10.0
"""How long a publication waits for another one of its tenant to finish."""
POLL_S = 0.05
TTL_MS = 60_000
"""The lock's lifetime if its holder dies: longer than picking a version and Kafka's ack take."""
RETRY_AFTER_S = 2
T = TypeVar("T")
_RELEASE = (
    "local held = redis.call('GET', KEYS[1]) "
    "for _, token in ipairs(ARGV) do if held == token then return redis.call('DEL', KEYS[1]) end end "
    "return 0"
)
"""Delete the lock if it holds one of ``ARGV``'s tokens."""

_UNSETTLED: dict[str, dict[str, float]] = {}
"""Per lock key, the tokens of this process whose ``SET`` or release Redis never answered, with
when (``time.monotonic``): each may hold the lock until ``TTL_MS`` after it."""


class PublicationBusy(DomainError):
    """Another publication of the tenant held the lock for longer than ``WAIT_S`` (409)."""


def lock_key(topic_prefix: str, tenant: str) -> str:
    return f"lf:{topic_prefix}policy:publishing:{{{tenant.replace('}', '%7D')}}}"


@contextlib.asynccontextmanager
async def publishing(
    redis: aioredis.Redis, topic_prefix: str, tenant: str, wait_s: float = WAIT_S
) -> AsyncIterator[None]:
    """Hold ``tenant``'s publication lock for the body; ``PublicationBusy`` past ``wait_s``."""
    key, token = lock_key(topic_prefix, tenant), uuid.uuid4().hex
    loop = asyncio.get_running_loop()
    deadline = loop.time() + wait_s
    await _settle(redis, key)
    while not await _unsettled_on_failure(redis.set(key, token, nx=True, px=TTL_MS), key, token):
        if loop.time() >= deadline:
            raise PublicationBusy(
                f"another publication of tenant {tenant!r}'s rule pack has been under way for over "
                f"{wait_s:g} s; retry when it has finished"
            )
        await asyncio.sleep(POLL_S)
    try:
        yield
    finally:
        with contextlib.suppress(InfrastructureError):
            await _unsettled_on_failure(redis.eval(_RELEASE, 1, key, token), key, token)


async def _unsettled_on_failure(call: Awaitable[T], key: str, token: str) -> T:
    """``call`` (a ``SET`` or release of ``key`` with ``token``) within the deadline; if it fails,
    ``token`` is remembered as unsettled: Redis may still apply it."""
    try:
        return await within_deadline(call, "redis")
    except InfrastructureError:
        _UNSETTLED.setdefault(key, {})[token] = time.monotonic()
        raise


async def _settle(redis: aioredis.Redis, key: str) -> None:
    """Delete ``key``'s lock if one of this process's unsettled tokens holds it; forget tokens
    whose lock has expired anyway. InfrastructureError (503) if Redis does not answer."""
    held = _UNSETTLED.get(key)
    if not held:
        return
    now = time.monotonic()
    live = [t for t, at in held.items() if now - at < TTL_MS / 1000]
    if live:
        await within_deadline(redis.eval(_RELEASE, 1, key, *live), "redis")
    for t in list(held):
        if t in live or now - held[t] >= TTL_MS / 1000:
            del held[t]
    if not held:
        del _UNSETTLED[key]
