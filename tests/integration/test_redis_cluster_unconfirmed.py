"""An idempotency claim on a Redis Cluster that no replica confirmed (``SET`` then ``WAIT 1``
returned 0, ``redisclient.set_replicated``) must not be acknowledged: a failover could forget it,
and a client's retry would then publish the request again. The claim is undone and the request
refused as transient (the edge's 503 with Retry-After); once the replica answers, the retry claims.

The replica of the keys' master is really stopped (SIGSTOP, SIGCONT in a ``finally``) in this
module's own private cluster; the session's Redis is not touched."""

from __future__ import annotations

import asyncio
import os
import signal
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import redis.asyncio as aioredis

from ledgerflow.api import idempotency
from ledgerflow.api.faults import bounded
from ledgerflow.api.idempotency import STALE_S, Claim
from ledgerflow.errors import InfrastructureError
from ledgerflow.redisclient import ReplicaNotConfirmed, async_client
from ledgerflow.stack import rediscluster
from ledgerflow.stack.redis import RedisNode
from tests.support.rediscluster import private_cluster

FRESH = idempotency.step_key("unconfirmed.", "acme", "alice", "fresh")
ALONE = idempotency.step_key("unconfirmed.", "acme", "alice", "alone")
STALE = idempotency.step_key("unconfirmed.", "acme", "alice", "stale")
DONE = idempotency.event_key("unconfirmed.", "acme", "evt-done")  # same tenant: same slot, same master
PRINT = idempotency.fingerprint({"content": "hello"})
STALE_CLAIM = Claim(PRINT, "evt-stale", time.time() - STALE_S - 60)  # a request that died after claiming


@contextmanager
def stopped(node: RedisNode) -> Iterator[None]:
    pid = node.process.pid()
    assert pid is not None, f"{node.name} is not running"
    os.kill(pid, signal.SIGSTOP)
    try:
        yield
    finally:
        os.kill(pid, signal.SIGCONT)


def _until_replicated(master: RedisNode) -> None:
    """Until the master's replica acknowledges everything written so far (it was stopped)."""
    deadline = time.monotonic() + 30
    while int(rediscluster._command(master, "WAIT", "1", "1000")) != 1:
        assert time.monotonic() < deadline, f"the replica of {master.name} did not catch up within 30 s"


async def _stored(client: aioredis.Redis, key: str) -> Claim | None:
    raw = await client.get(key)
    return None if raw is None else Claim.decode(raw)


async def _while_the_replica_is_stopped(client: aioredis.Redis) -> None:
    mine = Claim(PRINT, "evt-mine", time.time())
    with pytest.raises(InfrastructureError, match="ReplicaNotConfirmed"):  # the edge's 503
        await bounded(idempotency.claim(client, FRESH, mine), "Redis idempotency claim", timeout=30)
    assert await client.get(FRESH) is None  # undone: nothing left for a retry to trip over

    with pytest.raises(ReplicaNotConfirmed):  # a takeover of a stale claim is refused too …
        await idempotency.claim(client, STALE, mine)
    assert await _stored(client, STALE) == STALE_CLAIM  # … and the earlier claim put back
    assert await client.ttl(STALE) > 0

    answered = await idempotency.claim(client, DONE, mine)  # nothing written: nothing to confirm
    assert (answered.publish, answered.event_id, answered.position) == (False, "evt-done", "0:41")


async def _after_it_is_back(client: aioredis.Redis) -> None:
    mine = Claim(PRINT, "evt-retry", time.time())
    first = await idempotency.claim(client, FRESH, mine)
    assert (first.publish, first.event_id) == (True, "evt-retry")
    assert await _stored(client, FRESH) == mine
    taken = await idempotency.claim(client, STALE, mine)
    assert (taken.publish, taken.event_id) == (True, "evt-stale")  # the stale claim's event id, not a new one


def _until_alone(master: RedisNode) -> None:
    """Until ``master`` reports no replica connected (its replica was killed)."""
    deadline = time.monotonic() + 30
    while (
        rediscluster.parse_cluster_info(rediscluster._command(master, "INFO", "replication")).get(
            "connected_slaves"
        )
        != "0"
    ):
        assert time.monotonic() < deadline, f"{master.name} still lists a replica 30 s after it was killed"
        time.sleep(0.1)


async def _with_no_replica_connected(client: aioredis.Redis) -> None:
    """No replica a failover could promote without the claim (a cluster without replicas, or a
    promoted master before the old node rejoins): acknowledged as on one Redis, not refused."""
    mine = Claim(PRINT, "evt-alone", time.time())
    first = await idempotency.claim(client, ALONE, mine)
    assert (first.publish, first.event_id) == (True, "evt-alone")
    assert await _stored(client, ALONE) == mine


def test_an_unconfirmed_claim_is_undone_and_refused_and_the_retry_claims(tmp_path: Path) -> None:
    async def scenario(phase: str, url: str) -> None:
        client = async_client(url, socket_timeout=5, socket_connect_timeout=2)
        try:
            if phase == "stopped":
                await _while_the_replica_is_stopped(client)
            elif phase == "back":
                await _after_it_is_back(client)
            else:
                await _with_no_replica_connected(client)
        finally:
            await client.aclose()

    async def prepare(url: str) -> None:
        client = async_client(url, socket_timeout=5, socket_connect_timeout=2)
        try:
            await client.set(STALE, STALE_CLAIM.encode(), ex=600)
            await client.set(DONE, Claim(PRINT, "evt-done", time.time(), "0:41").encode(), ex=600)
        finally:
            await client.aclose()

    with private_cluster(tmp_path / "cluster") as cluster:
        master = cluster.master_of(FRESH)
        assert cluster.master_of(DONE).port == master.port
        asyncio.run(prepare(cluster.url))
        _until_replicated(master)
        with stopped(cluster.replica_of(master)):
            asyncio.run(scenario("stopped", cluster.url))
        _until_replicated(master)
        asyncio.run(scenario("back", cluster.url))
        replica = cluster.replica_of(master)
        pid = replica.process.pid()
        assert pid is not None, f"{replica.name} is not running"
        os.kill(pid, signal.SIGKILL)
        _until_alone(master)
        asyncio.run(scenario("alone", cluster.url))
