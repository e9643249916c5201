"""``ledgerflow stack up | down | status``: the local Kafka + Redis, started and stopped as one.

``up`` sequence:
1. Start Redis (unless ``LEDGERFLOW_REDIS_URL`` points at one that runs) and PING it.
2. Start Kafka (unless ``LEDGERFLOW_KAFKA_BOOTSTRAP`` points at one that runs): one node, or
   ``--brokers N`` nodes, then wait until the cluster reports all N brokers. (Before step 1:
   the stopped state of another layout is removed, a running one refused: ``kafka.clear_foreign``
   and ``rediscluster.clear_foreign``.)
3. Create the topics (replicated as the broker count allows), then prove a real
   produce/consume round trip.
4. Create the dev signing key and JWKS (when the edge uses the local JWKS file), and the dev
   rule-pack publisher key (when the policy trust store is the dev one); a key created is
   recorded on ``identity.audit``.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import urlparse

import redis as redis_sync

from ledgerflow.config import Settings
from ledgerflow.digits import ascii_digits
from ledgerflow.errors import InfrastructureError, StackError, ValidationError
from ledgerflow.kafka.admin import HEALTH_TOPIC, ensure_topics, round_trip
from ledgerflow.redisclient import is_cluster, server_url, sync_client
from ledgerflow.stack import cluster as kafka_cluster
from ledgerflow.stack import kafka as kafka_stack
from ledgerflow.stack import redis as redis_stack
from ledgerflow.stack import rediscluster
from ledgerflow.stack.processes import Managed, stop_all
from ledgerflow.topics import all_topics


@dataclass(frozen=True, slots=True)
class StackNodes:
    """The local nodes: ``kafka`` is the first (or only) broker, ``brokers`` all of them;
    ``redis`` the single Redis or the Redis Cluster's first node, ``redis_cluster`` all of
    that cluster's nodes (empty for a single Redis)."""

    kafka: kafka_stack.KafkaNode
    redis: redis_stack.RedisNode
    brokers: tuple[kafka_stack.KafkaNode, ...]
    redis_cluster: tuple[redis_stack.RedisNode, ...] = ()


def nodes(settings: Settings, brokers: int | None = None, redis_cluster: bool | None = None) -> StackNodes:
    """The nodes of this state directory; None = as last started there (the ``kafka-N`` and
    ``redis-N`` directories a cluster left), else one broker and a single Redis."""
    first = settings.kafka_bootstrap.split(",")[0]
    host, _, port = first.rpartition(":")
    if not ascii_digits(port) or not 0 < int(port) < 65536:
        raise ValidationError(
            f"Kafka address {first!r} (LEDGERFLOW_KAFKA_BOOTSTRAP or --kafka) is not HOST:PORT, "
            "e.g. 127.0.0.1:19092"
        )
    url = urlparse(server_url(settings.redis_url))  # a cluster URL may name several nodes: the first
    count = brokers if brokers is not None else cluster_size(settings)
    if not settings.kafka_external:  # the ports `stack up` would start nodes on
        kafka_stack.check_port_range(int(port), count)
    cluster = kafka_stack.cluster(settings.state_dir, host or "127.0.0.1", int(port), count)
    try:
        redis_host, redis_port = url.hostname or "127.0.0.1", url.port or 6379
    except ValueError as exc:  # a port out of range or not a number
        raise ValidationError(
            f"Redis URL {settings.redis_url!r} (LEDGERFLOW_REDIS_URL or --redis): {exc}; e.g. redis://127.0.0.1:16379/0"
        ) from None
    if redis_cluster is None:
        redis_cluster = redis_cluster_here(settings, redis_host, redis_port)
    shards = rediscluster.nodes(settings.state_dir, redis_host, redis_port) if redis_cluster else ()
    return StackNodes(
        kafka=cluster[0],
        redis=shards[0] if shards else redis_stack.RedisNode(settings.state_dir, redis_host, redis_port),
        brokers=cluster,
        redis_cluster=shards,
    )


def port_clash(n: StackNodes, *, kafka: bool, redis: bool) -> str | None:
    """One sentence naming two services `stack up` would start on one port (pure), or None.
    Each Kafka node takes its port and the next (its controller); a Redis Cluster node also its
    port + ``BUS_OFFSET`` (its cluster bus)."""
    wanted: list[tuple[int, str]] = []
    if kafka:
        for b in n.brokers:
            wanted += [
                (b.port, f"Kafka node {b.node_id}"),
                (b.controller_port, f"Kafka node {b.node_id}'s controller"),
            ]
    if redis and n.redis_cluster:
        for r in n.redis_cluster:
            wanted += [(r.port, r.name), (r.port + rediscluster.BUS_OFFSET, f"{r.name}'s cluster bus")]
    elif redis:
        wanted.append((n.redis.port, "Redis"))
    seen: dict[int, str] = {}
    for port, what in wanted:
        if port in seen:
            return (
                f"{seen[port]} and {what} would both listen on port {port}: choose LEDGERFLOW_KAFKA_PORT "
                "(--kafka-port; it and the next port per node) and LEDGERFLOW_REDIS_PORT (--redis-port) apart"
            )
        seen[port] = what
    return None


def cluster_size(settings: Settings) -> int:
    """How many brokers this state directory's Kafka has: the cluster whose ``kafka-N``
    directories are there (as last started), unless the single node runs and none of them
    does (they are then a stopped cluster's leftovers), else 1."""
    state = settings.state_dir
    size = kafka_stack.cluster_size(p.name for p in state.iterdir()) if state.is_dir() else 1
    if size > 1 and kafka_stack.node_process(state / "kafka").pid() is not None:
        cluster_runs = any(kafka_stack.node_process(state / f"kafka-{i}").pid() for i in range(1, size + 1))
        return size if cluster_runs else 1
    return size


def redis_cluster_here(settings: Settings, host: str, port: int) -> bool:
    """Whether this state directory's Redis is a cluster: as last started (its ``redis-N``
    directories are there), unless the single Redis runs and none of them does (they are then
    a stopped cluster's leftovers)."""
    state = settings.state_dir
    found = rediscluster.cluster_dirs(p.name for p in state.iterdir()) if state.is_dir() else []
    if "redis-1" not in found:
        return False
    if redis_stack.RedisNode(state, host, port).process.pid() is None:
        return True
    return any(rediscluster.dir_process(state / name).pid() is not None for name in found)


def bootstrap(settings: Settings, n: StackNodes) -> str:
    """Every local broker's address (a client then survives any one broker being down)."""
    if settings.kafka_external:
        return settings.kafka_bootstrap
    return ",".join(f"{b.host}:{b.port}" for b in n.brokers)


def up(
    settings: Settings,
    say: Callable[[str], None] = print,
    brokers: int | None = None,
    partitions: int | None = None,
    redis_cluster: bool | None = None,
) -> dict[str, object]:
    """Bring the stack up (idempotent); return when Kafka and Redis really answer."""
    n = nodes(settings, brokers, redis_cluster)
    clash = port_clash(n, kafka=not settings.kafka_external, redis=not settings.redis_external)
    if clash:  # before anything starts (the second service would fail, half a stack up)
        raise ValidationError(clash)
    began = time.monotonic()
    if not settings.kafka_external:  # before anything starts: it may refuse
        kafka_stack.clear_foreign(n.brokers, say)
    if not settings.redis_external:
        rediscluster.clear_foreign(settings.state_dir, bool(n.redis_cluster), say)
        if not n.redis_cluster and is_cluster(settings.redis_url):  # defaulted from the leftovers
            settings = settings.with_overrides(redis_url=server_url(settings.redis_url))
    if not settings.redis_external and n.redis_cluster:  # Step 1.
        first, last = n.redis_cluster[0], n.redis_cluster[-1]
        say(f"redis: starting a cluster of {len(n.redis_cluster)} on {first.host}:{first.port}-{last.port} …")
        rediscluster.start(n.redis_cluster)
    elif not settings.redis_external:
        say(f"redis: starting on {n.redis.host}:{n.redis.port} …")
        redis_stack.start(n.redis)
    ping_redis(settings.redis_url)
    say(f"redis: PONG from {settings.redis_url}")
    if not settings.kafka_external:  # Step 2.
        addresses = bootstrap(settings, n)
        say(f"kafka {kafka_stack.KAFKA_VERSION}: starting {len(n.brokers)} KRaft node(s) on {addresses} …")
        kafka_stack.start_cluster(n.brokers)
        settings = settings.with_overrides(kafka_bootstrap=addresses)
        asyncio.run(kafka_cluster.wait_for_brokers(addresses, len(n.brokers)))
    created = asyncio.run(ensure_topics(settings, partitions=partitions))  # Step 3.
    if created:
        say(f"kafka: created {len(created)} topics")
    rtt = asyncio.run(round_trip(settings))
    say(f"kafka: produce/consume round trip ok in {rtt * 1000:.0f} ms")
    from ledgerflow.identity.cli import ensure_recorded  # Step 4 (recorded on identity.audit)

    ensure_recorded(settings)
    say(f"stack up in {time.monotonic() - began:.1f} s")
    return status(settings)


def down(settings: Settings, say: Callable[[str], None] = print) -> list[str]:
    """Stop exactly the processes this state directory started."""
    n = nodes(settings)
    single = nodes(settings, 1).kafka  # a single node left beside a cluster's directories
    kafka = {b.process.pid_file: b.process for b in (*n.brokers, single)}
    stopped = []
    redis = {r.process.pid_file: r.process for r in (*n.redis_cluster, nodes(settings, 1, False).redis)}
    for group in (service_processes(settings), tuple(kafka.values()), tuple(redis.values())):
        for proc in stop_all(group):
            stopped.append(proc.name)
            say(f"{proc.name}: stopped")
        for proc in group:
            if (pid := proc.unverified_pid()) is not None:
                say(
                    f"{proc.name}: {proc.pid_file} names pid {pid} without a start time (an older ledgerflow "
                    f"wrote it), so it is not signalled: if it is ours, stop it by hand (kill {pid})"
                )
    return stopped


def service_processes(settings: Settings) -> tuple[Managed, ...]:
    """Worker and edge processes started by ``demo`` (stopped before the stack)."""
    run = settings.state_dir / "run"
    return (
        Managed("edge", run / "edge.pid", ("ledgerflow",)),
        Managed("worker", run / "worker.pid", ("ledgerflow",)),
    )


def status(settings: Settings) -> dict[str, object]:
    n = nodes(settings)
    return {
        "kafka": {
            "bootstrap": bootstrap(settings, n),
            "managed": not settings.kafka_external,
            "pid": n.kafka.process.pid(),
            "version": kafka_stack.KAFKA_VERSION,
            "log": str(n.kafka.log_file),
            "nodes": [
                {
                    "node_id": b.node_id,
                    "address": f"{b.host}:{b.port}",
                    "pid": b.process.pid(),
                    "log": str(b.log_file),
                }
                for b in n.brokers
            ],
            "cluster": cluster_view(settings, n),
        },
        "redis": {
            "url": settings.redis_url,
            "managed": not settings.redis_external,
            "pid": n.redis.process.pid(),
            "log": str(n.redis.log_file),
            "nodes": [
                {"name": r.name, "address": f"{r.host}:{r.port}", "pid": r.process.pid()}
                for r in n.redis_cluster
            ],
            "cluster": redis_cluster_view(n),
        },
        "http": f"http://{settings.http}",
        "state_dir": str(settings.state_dir),
        "jwks": settings.jwks_location,
        "processes": {p.name: p.pid() for p in service_processes(settings)},
    }


def cluster_view(settings: Settings, n: StackNodes) -> dict[str, object] | None:
    """Brokers, controller and replication of our topics; None when no broker of ours runs."""
    if not settings.kafka_external and all(b.process.pid() is None for b in n.brokers):
        return None
    names = [settings.topic(s.base) for s in all_topics()] + [settings.topic(HEALTH_TOPIC)]
    controller = None if settings.kafka_external else kafka_stack.quorum_leader(n.brokers)
    try:
        view = asyncio.run(kafka_cluster.describe(bootstrap(settings, n), names, controller))
    except StackError as exc:
        return {"error": str(exc)}
    return view.to_json()


def redis_cluster_view(n: StackNodes) -> dict[str, object] | None:
    """The Redis Cluster's state, masters, replicas; None without one of ours running."""
    if not n.redis_cluster or all(r.process.pid() is None for r in n.redis_cluster):
        return None
    return rediscluster.describe(n.redis_cluster)


def ping_redis(url: str, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:  # a cluster client reads the slot map when made: that can fail too
            client = sync_client(url, socket_timeout=2, socket_connect_timeout=2)
            try:
                if client.ping():
                    return
            finally:
                client.close()
        except redis_sync.RedisError as exc:
            if time.monotonic() > deadline:
                raise InfrastructureError(f"Redis at {url} does not answer PING: {exc}") from None
            time.sleep(0.2)
