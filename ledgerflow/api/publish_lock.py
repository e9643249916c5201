"""One rule pack publication per tenant at a time, across every edge sharing the read-model Redis.

``PUT /v1/policy/rules`` picks a version (the tenant's latest on ``policy.rules`` + 1) and then
writes the record. Two publications of one tenant overlapping there both picked the same version:
each admin got a 201 naming it, and the agents kept only the later record, so the other pack was
acknowledged but never in force and its version named another constitution. The edge therefore
holds a Redis lock of the tenant (``SET NX PX``, released only by its holder) from picking the
version to the broker's ack; a publication that finds it held waits for it, up to ``WAIT_S``, then
is a 409 with ``Retry-After``. ``ledgerflow policy publish`` (the CLI) writes without it.

A lock request or release Redis did not answer in time is settled by ``api/redis_lock.py``.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator

import redis.asyncio as aioredis

from ledgerflow.api import redis_lock
from ledgerflow.errors import DomainError

WAIT_S = 10.0
"""How long a publication waits for another one of its tenant to finish."""
POLL_S = 0.05
TTL_MS = 60_000
"""The lock's lifetime if its holder dies: longer than picking a version and Kafka's ack take."""
RETRY_AFTER_S = 2


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
    while not await redis_lock.take(redis, key, token, TTL_MS):
        if loop.time() >= deadline:
            raise PublicationBusy(
                f"another publication of tenant {tenant!r}'s rule pack has been under way for over "
                f"{wait_s:g} s; retry when it has finished"
            )
        await asyncio.sleep(POLL_S)
    try:
        yield
    finally:
        await redis_lock.release(redis, key, token, TTL_MS)
