"""The fault kinds: each one picks its target from the run's own processes, injects the fault
with a real signal, holds it, undoes it and waits until the cluster is whole again.

A kind is a name and a blocking ``inject`` (the run calls it in a thread while the load goes
on); new kinds are added to ``KINDS`` without touching the run.
Holding times are drawn from the run's seeded generator. On a Redis Cluster (``ledgerflow chaos
--redis-cluster``) the Redis kinds are ``redis-failover`` and ``redis-pause`` of a master.

The "network partition" of a broker is a SIGSTOP of that one broker's process: on loopback,
a paused process is what a partitioned broker looks like from outside (connections open, no
answers; its controller and broker sessions expire and it is fenced), and it touches nothing
but the run's own process — no firewall rule, no namespace, nothing shared with the machine.
"""

from __future__ import annotations

import asyncio
import os
import random
import signal
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass

import redis as redis_sync
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import KafkaError

from ledgerflow.chaos.environment import Environment
from ledgerflow.chaos.services import Service, wait_until
from ledgerflow.errors import StackError
from ledgerflow.stack import cluster as kafka_cluster
from ledgerflow.stack import kafka as kafka_stack
from ledgerflow.stack import redis as redis_stack
from ledgerflow.stack import rediscluster
from ledgerflow.stack.kafka import KafkaNode
from ledgerflow.stack.redis import RedisNode
from ledgerflow.topics import all_topics

# Past the consumer groups' session timeout (10 s, agents/app.py and agents/batchloop.py) and the
# KRaft broker session (9 s by default): the group or the controller gives up on the paused one.
PAST_SESSION_S = (13.0, 18.0)
HEAL_TIMEOUT_S = 180.0


@dataclass
class FaultContext:
    env: Environment
    rng: random.Random
    say: Callable[[str], None]
    subscribers_on: Callable[[str], int]  # an edge's base URL → SSE subscribers connected there


@dataclass(frozen=True, slots=True)
class Outcome:
    target: str


class Kind:
    name = ""
    redis = "any"  # "single": only with one Redis; "cluster": only on a Redis Cluster

    def inject(self, ctx: FaultContext) -> Outcome:
        raise NotImplementedError


def _pid(node: KafkaNode) -> int:
    pid = node.process.pid()
    if pid is None:
        raise StackError(f"{node.process.name} is not running: no fault can target it")
    return pid


def leaders(ctx: FaultContext) -> Counter[int]:
    """How many partitions of our topics each broker leads."""

    async def count() -> Counter[int]:
        admin = AIOKafkaAdminClient(
            bootstrap_servers=ctx.env.settings.kafka_bootstrap, request_timeout_ms=10_000
        )
        await admin.start()
        try:
            described = await admin.describe_topics([ctx.env.settings.topic(s.base) for s in all_topics()])
        finally:
            await admin.close()
        return Counter(p["leader"] for d in described for p in d["partitions"] if p["leader"] >= 0)

    return asyncio.run(count())


def heal(ctx: FaultContext) -> None:
    """Until all three brokers are registered and no partition of ours is under-replicated (so
    the next fault hits a whole cluster); StackError after HEAL_TIMEOUT_S."""
    env = ctx.env
    names = [env.settings.topic(s.base) for s in all_topics()]

    def whole() -> bool:
        try:
            view = asyncio.run(kafka_cluster.describe(env.settings.kafka_bootstrap, names, None))
        except (StackError, KafkaError, OSError):
            return False
        return len(view.brokers) == len(env.nodes.brokers) and view.under_replicated_partitions == 0

    if not wait_until(whole, HEAL_TIMEOUT_S, step=1.0):
        raise StackError(f"the cluster did not return to full replication within {HEAL_TIMEOUT_S:.0f} s")


def kill_and_restart(ctx: FaultContext, node: KafkaNode) -> None:
    os.kill(_pid(node), signal.SIGKILL)
    time.sleep(ctx.rng.uniform(3.0, 10.0))
    kafka_stack.start(node)
    heal(ctx)


def pause(ctx: FaultContext, pid: int, hold: tuple[float, float]) -> float:
    """SIGSTOP ``pid`` for a drawn time within ``hold``, then SIGCONT; the seconds held."""
    held = ctx.rng.uniform(*hold)
    os.kill(pid, signal.SIGSTOP)
    try:
        time.sleep(held)
    finally:
        os.kill(pid, signal.SIGCONT)
    return held


class BrokerLeaderKill(Kind):
    name = "broker-kill-leader"

    def inject(self, ctx: FaultContext) -> Outcome:
        led = leaders(ctx)
        node_id = max(sorted(led), key=lambda n: led[n])
        node = ctx.env.nodes.brokers[node_id - 1]
        kill_and_restart(ctx, node)
        return Outcome(f"node {node_id} (leading {led[node_id]} partitions)")


class ControllerKill(Kind):
    name = "controller-kill"

    def inject(self, ctx: FaultContext) -> Outcome:
        node_id = kafka_stack.quorum_leader(ctx.env.nodes.brokers)
        if node_id is None:
            raise StackError("no node has recorded an active controller")
        kill_and_restart(ctx, ctx.env.nodes.brokers[node_id - 1])
        return Outcome(f"node {node_id} (active controller)")


class BrokerPause(Kind):
    name = "broker-pause"

    def inject(self, ctx: FaultContext) -> Outcome:
        node = ctx.rng.choice(ctx.env.nodes.brokers)
        pause(ctx, _pid(node), PAST_SESSION_S)
        heal(ctx)
        return Outcome(f"node {node.node_id}")


class BrokerPartition(Kind):
    """One broker cut off: SIGSTOP of its process (the loopback-safe stand-in, module docstring)."""

    name = "broker-partition"

    def inject(self, ctx: FaultContext) -> Outcome:
        node = ctx.rng.choice(ctx.env.nodes.brokers)
        pause(ctx, _pid(node), (20.0, 30.0))
        heal(ctx)
        return Outcome(f"node {node.node_id}")


def _running_worker(ctx: FaultContext) -> Service:
    return ctx.rng.choice([w for w in ctx.env.workers if w.alive()])


class WorkerPause(Kind):
    """A zombie: paused past the group's session timeout, its partitions move, then it wakes."""

    name = "worker-pause"

    def inject(self, ctx: FaultContext) -> Outcome:
        worker = _running_worker(ctx)
        worker.paused = True
        try:
            pause(ctx, worker.pid, PAST_SESSION_S)
        finally:
            worker.paused = False
        return Outcome(f"{worker.name} (pid {worker.pid})")


class WorkerKill(Kind):
    name = "worker-kill"

    def inject(self, ctx: FaultContext) -> Outcome:
        worker = _running_worker(ctx)
        pid = worker.pid
        worker.kill()
        time.sleep(ctx.rng.uniform(0.5, 3.0))
        worker.start()
        return Outcome(f"{worker.name} (pid {pid} → {worker.pid})")


class EdgeKill(Kind):
    """SIGKILL of the edge serving the most SSE subscribers; they resume on the other edge."""

    name = "edge-kill"

    def inject(self, ctx: FaultContext) -> Outcome:
        edges = [e for e in ctx.env.edges if e.alive()]
        edge = max(edges, key=lambda e: ctx.subscribers_on(e.http or ""))
        served, pid = ctx.subscribers_on(edge.http or ""), edge.pid
        edge.kill()
        time.sleep(ctx.rng.uniform(2.0, 6.0))
        edge.start()
        return Outcome(f"{edge.name} (pid {pid}, {served} SSE subscribers)")


def _redis_pid(ctx: FaultContext) -> int:
    pid = ctx.env.nodes.redis.process.pid()
    if pid is None:
        raise StackError("Redis is not running: no fault can target it")
    return pid


class RedisKill(Kind):
    """Killed and started again empty (no persistence): the read models are restored from the log."""

    name = "redis-kill"
    redis = "single"  # on a Redis Cluster a killed master is redis-failover

    def inject(self, ctx: FaultContext) -> Outcome:
        pid = _redis_pid(ctx)
        os.kill(pid, signal.SIGKILL)
        time.sleep(ctx.rng.uniform(1.0, 4.0))
        redis_stack.start(ctx.env.nodes.redis)
        return Outcome(f"redis (pid {pid} → {_redis_pid(ctx)}, empty)")


class RedisPause(Kind):
    """SIGSTOP of Redis, then SIGCONT. On a Redis Cluster one master, drawn from those serving
    slots now: a pause past ``cluster-node-timeout`` (5 s) also fails it over, and it wakes as a
    stale master that must learn it was demoted; the fault ends when the cluster is whole again."""

    name = "redis-pause"

    def inject(self, ctx: FaultContext) -> Outcome:
        shards = ctx.env.nodes.redis_cluster
        if not shards:
            pid = _redis_pid(ctx)
            held = pause(ctx, pid, (3.0, 9.0))
            return Outcome(f"redis (pid {pid}) for {held:.1f} s")
        node, address, pid = _master(ctx, shards)
        held = pause(ctx, pid, (3.0, 9.0))
        rediscluster.wait_until_ok(shards, HEAL_TIMEOUT_S)
        members = next((m for n in shards if (m := _members(n)) is not None), [])
        demoted = any(m.address == address and m.role == "replica" for m in members)
        after = "failed over while paused, a replica now" if demoted else "still the master"
        return Outcome(f"{node.name}, master at {address} (pid {pid}) for {held:.1f} s; {after}")


def _promoted(others: tuple[RedisNode, ...], gone: str) -> bool:
    """Whether the cluster, as the first answering node of ``others`` sees it, is ok again with
    three masters serving slots and ``gone`` not among them (its replica took over)."""
    for node in others:
        try:
            info, members = rediscluster.cluster_info(node), rediscluster.cluster_nodes(node)
        except redis_sync.RedisError:
            continue
        masters = {m.address for m in members if m.role == "master" and m.slots > 0 and m.connected}
        return (
            info.get("cluster_state") == "ok" and len(masters) == rediscluster.MASTERS and gone not in masters
        )
    return False


class RedisFailover(Kind):
    """On a Redis Cluster: SIGKILL of a master; its replica is promoted; the killed node is started
    again (empty) and rejoins as a replica."""

    name = "redis-failover"
    redis = "cluster"

    def inject(self, ctx: FaultContext) -> Outcome:
        shards = ctx.env.nodes.redis_cluster
        if not shards:
            raise StackError("redis-failover needs a Redis Cluster (ledgerflow chaos --redis-cluster)")
        node, address, pid = _master(ctx, shards)
        os.kill(pid, signal.SIGKILL)
        others = tuple(n for n in shards if n is not node)
        if not wait_until(lambda: _promoted(others, address), 90):
            raise StackError(f"no replica of {address} was promoted within 90 s")
        rediscluster.start(shards)  # the killed node again (empty); it rejoins as a replica
        return Outcome(f"{node.name}, master at {address} (pid {pid}); its replica promoted")


def _master(ctx: FaultContext, shards: tuple[RedisNode, ...]) -> tuple[RedisNode, str, int]:
    """A master serving slots now (drawn from the run's generator): its node, address and pid.
    After a failover that is not the node started as a master, so the cluster is asked."""
    members = next((m for n in shards if (m := _members(n)) is not None), [])
    masters = sorted(m.address for m in members if m.role == "master" and m.slots > 0)
    if not masters:
        raise StackError("no master of the Redis Cluster answers")
    address = ctx.rng.choice(masters)
    node = next(n for n in shards if f"{n.host}:{n.port}" == address)
    pid = node.process.pid()
    if pid is None:
        raise StackError(f"{node.name} is not running: no fault can target it")
    return node, address, pid


def _members(node: RedisNode) -> list[rediscluster.ClusterNode] | None:
    try:
        return rediscluster.cluster_nodes(node)
    except redis_sync.RedisError:
        return None


def kinds_for(redis_cluster: bool) -> tuple[str, ...]:
    """The kinds that apply to a run with one Redis, or with a Redis Cluster."""
    skip = "single" if redis_cluster else "cluster"
    return tuple(name for name, kind in KINDS.items() if kind.redis != skip)


KINDS: dict[str, Kind] = {
    k.name: k
    for k in (
        BrokerLeaderKill(),
        ControllerKill(),
        BrokerPause(),
        BrokerPartition(),
        WorkerPause(),
        WorkerKill(),
        EdgeKill(),
        RedisKill(),
        RedisPause(),
        RedisFailover(),
    )
}
