"""A private Redis Cluster for tests (three masters, one replica each, on free ports of its own
state directory, started by the same code as ``ledgerflow stack up --redis-cluster``) and the
fault a chaos run injects on it: SIGKILL the master that owns a key, wait for its replica to
take over. The shared dev stack is never touched."""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import redis as redis_sync
from redis.cluster import RedisCluster

from ledgerflow.projections.guards import copies
from ledgerflow.redisclient import cluster_url, is_cluster_client, sync_client
from ledgerflow.stack import redis as redis_stack
from ledgerflow.stack import rediscluster
from ledgerflow.stack.processes import stop_all
from tests.support.privatestack import free_port_run


@dataclass(frozen=True, slots=True)
class PrivateCluster:
    nodes: tuple[redis_stack.RedisNode, ...]
    node_timeout_ms: int = rediscluster.NODE_TIMEOUT_MS

    @property
    def url(self) -> str:
        """``LEDGERFLOW_REDIS_URL`` for it: the cluster scheme and every node's address (a client
        made after a node died still finds the others)."""
        return cluster_url("redis://" + ",".join(f"{n.host}:{n.port}" for n in self.nodes) + "/0")

    def live(self) -> list[redis_stack.RedisNode]:
        return [n for n in self.nodes if n.process.pid() is not None]

    def master_of(self, key: str) -> redis_stack.RedisNode:
        """The node that serves ``key``'s slot now."""
        client = sync_client(self.url, socket_timeout=5)
        try:
            assert isinstance(client, RedisCluster)
            owner = client.get_node_from_key(key)  # type: ignore[no-untyped-call]
        finally:
            client.close()
        return next(n for n in self.nodes if n.port == owner.port)

    def replica_of(self, master: redis_stack.RedisNode) -> redis_stack.RedisNode:
        """The node that replicates ``master`` now."""
        members = rediscluster.cluster_nodes(master)
        me = next(m for m in members if m.address == f"{master.host}:{master.port}")
        replica = next(m for m in members if m.master_id == me.node_id)
        return next(n for n in self.nodes if f"{n.host}:{n.port}" == replica.address)

    def kill_master_of(self, key: str) -> redis_stack.RedisNode:
        """SIGKILL the master serving ``key`` (no shutdown, no last write flushed); return it."""
        node = self.master_of(key)
        pid = node.process.pid()
        assert pid is not None, f"{node.name} is not running"
        os.kill(pid, signal.SIGKILL)
        deadline = time.monotonic() + 10
        while node.process.pid() is not None and time.monotonic() < deadline:
            time.sleep(0.05)
        return node

    def wait_for_failover(self, killed: redis_stack.RedisNode, timeout: float = 60.0) -> None:
        """Until the survivors agree: cluster ok, three connected masters own every slot, none of
        them ``killed`` (its replica was promoted)."""
        deadline = time.monotonic() + timeout
        seen = "no answer"
        while time.monotonic() < deadline:
            try:
                if all(_promoted(n, killed) for n in self.live()):
                    return
            except OSError as exc:
                seen = repr(exc)
            time.sleep(0.2)
        raise AssertionError(f"no failover of {killed.name} within {timeout:.0f} s ({seen})")

    def restart(self, node: redis_stack.RedisNode) -> None:
        """Start a killed node again: it rejoins from its nodes.conf, as a replica of its successor."""
        redis_stack.start(node, rediscluster.cluster_options(self.node_timeout_ms))
        rediscluster.wait_until_ok(self.nodes)


def _promoted(node: redis_stack.RedisNode, killed: redis_stack.RedisNode) -> bool:
    if rediscluster.cluster_info(node).get("cluster_state") != "ok":
        return False
    members = rediscluster.cluster_nodes(node)
    masters = [m for m in members if m.role == "master" and m.slots > 0 and m.connected]
    gone = f"{killed.host}:{killed.port}"
    return (
        len(masters) == rediscluster.MASTERS
        and sum(m.slots for m in masters) == 16384
        and all(m.address != gone for m in masters)
    )


@contextmanager
def private_cluster(
    state_dir: Path, node_timeout_ms: int = rediscluster.NODE_TIMEOUT_MS
) -> Iterator[PrivateCluster]:
    """Start a Redis Cluster in ``state_dir`` on free ports (at most ``rediscluster.MAX_PORT``, bus
    ports free too); every node is stopped at the end, paused ones resumed first."""
    port = free_port_run(rediscluster.NODE_COUNT, highest=rediscluster.MAX_PORT, also=rediscluster.BUS_OFFSET)
    nodes = rediscluster.nodes(state_dir, "127.0.0.1", port)
    try:
        rediscluster.start(nodes, node_timeout_ms)
        yield PrivateCluster(nodes, node_timeout_ms)
    finally:
        for node in nodes:
            pid = node.process.pid()
            if pid is not None:
                os.kill(pid, signal.SIGCONT)
        stop_all([n.process for n in nodes], timeout=10)


def set_guard_now(client: redis_sync.Redis, guard: str, value: str) -> None:
    """Blocking ``guards.set_guard``."""
    pipe = client.pipeline(transaction=False)
    for key in copies(guard, is_cluster_client(client)):
        pipe.set(key, value)
    pipe.execute()
