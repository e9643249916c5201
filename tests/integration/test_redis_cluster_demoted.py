"""A write acknowledged on a Redis Cluster only once a replica has it (``SET`` then ``WAIT 1``,
``redisclient.set_replicated``) while the client's slot map is older than a failover: its ``SET``
is redirected to the new master by ``MOVED``, its ``WAIT`` still goes to the old one, now a
replica, which refuses it. That refusal must be the transient ``MasterDemoted`` (the edge's 503,
the projector's back-off), not a ResponseError: in ``ledgerflow chaos --redis-cluster``, when a
paused master was failed over, the edge answered 500 and the projector's batch loop stopped every
worker.

The failover is a real one, ``CLUSTER FAILOVER`` on the replica of the key's master, in this
module's own private cluster (the session's Redis is not touched)."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import redis.asyncio as aioredis

from ledgerflow.api.faults import bounded
from ledgerflow.errors import InfrastructureError
from ledgerflow.projections.backoff import Backoff
from ledgerflow.projections.clusterpipe import run_calls
from ledgerflow.redisclient import MasterDemoted, ReplicaNotConfirmed, async_client, set_replicated
from ledgerflow.stack import rediscluster
from ledgerflow.stack.redis import RedisNode
from tests.support.rediscluster import PrivateCluster, private_cluster

KEY = "demoted:{conversation-7}"
SET_SCRIPT = "return redis.call('SET', KEYS[1], ARGV[1])"


def _fail_over_to(cluster: PrivateCluster, replica: RedisNode, master: RedisNode) -> None:
    """``CLUSTER FAILOVER`` on ``replica``; until every node sees it as the master and ``master``
    as its replica, in sync with it."""
    assert rediscluster._command(replica, "CLUSTER", "FAILOVER") == "OK"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        views = [{m.address: m.role for m in rediscluster.cluster_nodes(n)} for n in cluster.nodes]
        if all(
            v.get(f"{replica.host}:{replica.port}") == "master"
            and v.get(f"{master.host}:{master.port}") == "replica"
            for v in views
        ) and rediscluster.synced(master):  # and the demoted node replicates: WAIT 1 can answer
            return
        time.sleep(0.1)
    raise AssertionError(f"{replica.name} did not take over from {master.name} within 30 s")


async def _write(client: aioredis.Redis, value: str) -> object:
    return await set_replicated(client, KEY, value, ex=600)


async def _write_confirmed(client: aioredis.Redis, value: str) -> object:
    """``_write`` where it is the scenario's set-up, not what it tests: a replica that took longer
    than ``CLAIM_WAIT_MS`` to confirm (a loaded CI machine: it failed a run once) is asked again,
    up to 60 s, as the edge's client would after its 503."""
    for _ in range(120):
        try:
            return await _write(client, value)
        except ReplicaNotConfirmed:
            await asyncio.sleep(0.5)
    raise AssertionError(f"no replica confirmed {value!r} on {KEY} in 60 s")


@contextlib.asynccontextmanager
async def _stale_client(cluster: PrivateCluster) -> AsyncIterator[aioredis.Redis]:
    """A cluster client whose slot map names the key's master from before a failover to its replica."""
    master = cluster.master_of(KEY)
    replica = cluster.replica_of(master)
    client = async_client(cluster.url, socket_timeout=5, socket_connect_timeout=2)
    try:
        assert await _write_confirmed(client, "before") is True  # the slot map now names the old master
        await asyncio.to_thread(_fail_over_to, cluster, replica, master)
        yield client
    finally:
        await client.aclose()


def test_a_wait_on_a_demoted_master_is_transient_and_the_next_write_finds_the_new_one(tmp_path: Path) -> None:
    async def scenario(cluster: PrivateCluster) -> None:
        async with _stale_client(cluster) as client:
            with pytest.raises(MasterDemoted):
                await _write(client, "during")
            assert await _write_confirmed(client, "after") is True  # MOVED refreshed the slot map
            assert await client.get(KEY) == b"after"

    with private_cluster(tmp_path / "cluster") as cluster:
        before = cluster.master_of(KEY)
        asyncio.run(scenario(cluster))
        assert cluster.master_of(KEY).port != before.port


def test_a_projector_batch_on_a_demoted_master_is_retried_not_a_crash(tmp_path: Path) -> None:
    """The projector's batch (Lua calls, then ``WAIT`` on each master written): the refusal went
    through its back-off as a ResponseError and stopped every worker of the chaos run."""

    async def scenario(cluster: PrivateCluster) -> None:
        async with _stale_client(cluster) as client:
            for (
                node
            ) in cluster.nodes:  # the old master is a replica now: loaded everywhere, as before a failover
                sha = rediscluster._command(node, "SCRIPT", "LOAD", SET_SCRIPT)
            batch = [(sha, [KEY], ["projected"])]
            results = await Backoff("test projector", first=0.05).run(lambda: run_calls(client, batch, False))
            assert [bytes(r) for r in results] == [b"OK"]
            assert await client.get(KEY) == b"projected"

    with private_cluster(tmp_path / "cluster") as cluster:
        asyncio.run(scenario(cluster))


def test_at_the_edge_a_demoted_master_is_a_503_not_a_500(tmp_path: Path) -> None:
    async def scenario(cluster: PrivateCluster) -> None:
        async with _stale_client(cluster) as client:
            with pytest.raises(InfrastructureError, match=r"Redis idempotency claim failed: .*MasterDemoted"):
                await bounded(
                    _write(client, "during"), "Redis idempotency claim", timeout=30
                )  # the answer, not its speed

    with private_cluster(tmp_path / "cluster") as cluster:
        asyncio.run(scenario(cluster))
