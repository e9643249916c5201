"""Read models survive a Redis that lost everything: they come back complete, unaided."""

from __future__ import annotations

import asyncio
import random
import time

import redis

from ledgerflow.config import Settings
from ledgerflow.projections.keys import Keys
from ledgerflow.redisclient import sync_client
from ledgerflow.traffic import interleaved, publish
from tests.support.processes import Process


def _snapshot(client: redis.Redis, keys: Keys) -> dict[bytes, object]:
    """Every read-model key of the space with its content (fences and checkpoints excluded)."""
    out: dict[bytes, object] = {}
    for key in client.scan_iter(match=keys.namespace + "*", count=1000):
        if key.endswith((b":applied", b"complete")) or b"checkpoint" in key:
            continue
        kind = client.type(key)
        if kind == b"hash":
            out[key] = client.hgetall(key)
        elif kind == b"list":
            out[key] = client.lrange(key, 0, -1)
        elif kind == b"zset":
            out[key] = client.zrange(key, 0, -1, withscores=True)
    return out


def _wait_stable(client: redis.Redis, keys: Keys, timeout: float = 90.0) -> dict[bytes, object]:
    deadline = time.monotonic() + timeout
    last: dict[bytes, object] | None = None
    while time.monotonic() < deadline:
        now = _snapshot(client, keys)
        if now and now == last:
            return now
        last = now
        time.sleep(1.5)
    raise AssertionError("read models did not settle")


def test_read_models_come_back_complete_after_redis_loses_everything(
    settings: Settings, worker: Process
) -> None:
    keys = Keys.for_prefix(settings.topic_prefix)
    client = sync_client(settings.redis_url)
    rng = random.Random(11)
    first = list(interleaved(rng, ["acme", "globex"], 60, time.time_ns() // 1000, run_id="a"))
    asyncio.run(publish(settings, iter(first), progress_every_s=0))
    before = _wait_stable(client, keys)
    assert len([k for k in before if b":turns" in k]) > 0

    for key in client.scan_iter(match=keys.namespace + "*", count=1000):  # Redis "lost everything"
        client.delete(key)
    # New traffic for another tenant: every key from before must come back exactly as it was.
    second = list(interleaved(rng, ["initech"], 20, time.time_ns() // 1000, run_id="b"))
    asyncio.run(publish(settings, iter(second), progress_every_s=0))
    after = _wait_stable(client, keys)
    # Everything from before the loss is back, byte for byte, plus the new conversations.
    assert {k: v for k, v in after.items() if k in before} == before
    assert set(before) < set(after)
    assert any(b"conv-b-" in k for k in after) and any(b"{initech}" in k for k in after)
