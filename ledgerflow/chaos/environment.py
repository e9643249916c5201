"""The run's private world: a three-broker KRaft cluster and a Redis (or, with ``redis_cluster``, a
Redis Cluster of three masters with a replica each) on free ports in the run's own state
directory (started by the same code as ``ledgerflow stack up --brokers 3 [--redis-cluster]``),
N worker processes and two edges. Nothing outside it is ever touched."""

from __future__ import annotations

import contextlib
import os
import signal
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from ledgerflow.agents.supervisor import CHILD_ENV
from ledgerflow.auth.devkeys import ensure_dev_keys
from ledgerflow.auth.tokens import mint_token
from ledgerflow.chaos.services import Service
from ledgerflow.config import Settings, child_env
from ledgerflow.metrics import WORKER_METRICS_ENV
from ledgerflow.netutil import free_port, free_port_run
from ledgerflow.redisclient import cluster_url
from ledgerflow.stack import manage, rediscluster

BROKERS = 3
EDGES = 2
TOKEN_TTL_S = 6 * 3600.0


@dataclass
class Environment:
    settings: Settings  # bootstraps from every broker: clients survive any one being down
    nodes: manage.StackNodes
    workers: list[Service] = field(default_factory=list)
    edges: list[Service] = field(default_factory=list)

    def token(self, tenant: str, roles: str, sub: str = "chaos") -> str:
        keys = ensure_dev_keys(self.settings.state_dir)
        return mint_token(
            keys,
            sub=sub,
            tenant=tenant,
            roles=roles,
            ttl_seconds=TOKEN_TTL_S,
            issuer=self.settings.issuer,
            audience=self.settings.audience,
        )

    def live_edges(self) -> list[Service]:
        return [e for e in self.edges if e.alive() and not e.paused]

    def stop(self, say: Callable[[str], None]) -> None:
        """Stop everything this run started (a paused node is resumed first: it ignores SIGTERM)."""
        for service in [*self.edges, *self.workers]:
            service.stop()
        redis = self.nodes.redis_cluster or (self.nodes.redis,)
        for process in (*(b.process for b in self.nodes.brokers), *(r.process for r in redis)):
            pid = process.pid()
            if pid is not None:
                signal_quietly(pid, signal.SIGCONT)
        manage.down(self.settings, say=say)


def signal_quietly(pid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, sig)


def redis_url(redis_cluster: bool) -> str:
    """A free port for one Redis, or a run of free ports (bus ports too) for a Redis Cluster, whose
    URL names every node: a client made while one master is down starts from another."""
    if not redis_cluster:
        return f"redis://127.0.0.1:{free_port()}/0"
    port = free_port_run(rediscluster.NODE_COUNT, highest=rediscluster.MAX_PORT, also=rediscluster.BUS_OFFSET)
    hosts = ",".join(f"127.0.0.1:{port + i}" for i in range(rediscluster.NODE_COUNT))
    return cluster_url(f"redis://{hosts}/0")


def bring_up(
    state_dir: Path, workers: int, say: Callable[[str], None], redis_cluster: bool = False
) -> Environment:
    """Start the cluster, Redis (or a Redis Cluster), ``workers`` worker processes and two edges;
    return when all answer."""
    first = Settings(
        kafka_bootstrap=f"127.0.0.1:{free_port_run(2 * BROKERS)}",
        redis_url=redis_url(redis_cluster),
        state_dir=state_dir,
    )
    nodes = manage.nodes(first, brokers=BROKERS, redis_cluster=redis_cluster)
    env = Environment(first, nodes)
    try:
        manage.up(first, say=say, brokers=BROKERS, redis_cluster=redis_cluster)
        env.settings = first.with_overrides(kafka_bootstrap=manage.bootstrap(first, nodes))
        logs = state_dir / "logs"
        for i in range(workers):
            extra = {CHILD_ENV: str(i), WORKER_METRICS_ENV: "off"}
            env.workers.append(
                Service(
                    f"worker-{i + 1}",
                    ("worker",),
                    child_env(env.settings) | extra,
                    logs / f"worker-{i + 1}.log",
                )
            )
        for i in range(EDGES):
            http = f"127.0.0.1:{free_port()}"
            edge_env = child_env(env.settings.with_overrides(http=http))
            env.edges.append(
                Service(
                    f"edge-{i + 1}", ("serve",), edge_env, logs / f"edge-{i + 1}.log", http=f"http://{http}"
                )
            )
        for service in [*env.workers, *env.edges]:
            service.start()
            say(f"{service.name}: pid {service.pid}" + (f" at {service.http}" if service.http else ""))
    except BaseException:
        env.stop(say)
        raise
    return env
