"""Releasing a claim after a failed publish is best effort: whatever Redis answers, the caller's
answer (503 with Retry-After) stands. A release that Redis refuses — here the key holds another
type, as a hostile or corrupted key would; OOM and BUSY answer the same way — is logged, not
raised: it used to escape as a ResponseError and turn the 503 into a 500."""

from __future__ import annotations

import asyncio
import logging
import uuid

import pytest

from ledgerflow.api.idempotency import Claim, release_after_failure
from ledgerflow.config import Settings
from ledgerflow.redisclient import async_client


def test_a_release_redis_refuses_is_logged_not_raised(
    stack: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    key = f"lf:t{uuid.uuid4().hex[:10]}:idem:{{acme}}:k"

    async def run() -> None:
        redis = async_client(stack.redis_url)
        try:
            await redis.rpush(key, "not a claim")
            await release_after_failure(redis, key, Claim("f" * 64, "evt-1", 1.0))
            assert await redis.lrange(key, 0, -1) == [b"not a claim"], "the release wrote over another key"
        finally:
            await redis.delete(key)
            await redis.aclose()

    with caplog.at_level(logging.WARNING, logger="ledgerflow.api.idempotency"):
        asyncio.run(run())
    assert "could not release the claim" in caplog.text
