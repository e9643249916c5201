"""What ``stack status`` says about a Kafka cluster: its brokers, its active controller and
every ledgerflow topic's replication (replicas, in-sync replicas, under-replicated partitions)."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import KafkaError

from ledgerflow.errors import StackError

REQUEST_TIMEOUT_MS = 5000


@dataclass(frozen=True, slots=True)
class TopicReplication:
    """``isr``: the fewest in-sync replicas of any of the topic's partitions."""

    partitions: int
    replication_factor: int
    isr: int
    under_replicated: int


@dataclass(frozen=True, slots=True)
class ClusterView:
    brokers: list[dict[str, object]]
    controller: int | None
    topics: dict[str, TopicReplication]

    @property
    def under_replicated_partitions(self) -> int:
        return sum(t.under_replicated for t in self.topics.values())

    def to_json(self) -> dict[str, object]:
        return {
            "brokers": self.brokers,
            "controller": self.controller,
            "under_replicated_partitions": self.under_replicated_partitions,
            "topics": {name: asdict(t) for name, t in sorted(self.topics.items())},
        }


def replication_of(partitions: Sequence[Mapping[str, Any]]) -> TopicReplication:
    """One topic's replication from its described partitions (a partition whose in-sync set
    is smaller than its replica set is under-replicated)."""
    replicas = [len(p["replicas"]) for p in partitions]
    isr = [len(p["isr"]) for p in partitions]
    return TopicReplication(
        partitions=len(partitions),
        replication_factor=min(replicas, default=0),
        isr=min(isr, default=0),
        under_replicated=sum(i < r for i, r in zip(isr, replicas, strict=True)),
    )


async def describe(bootstrap: str, topics: list[str], controller: int | None) -> ClusterView:
    """Brokers and replication of ``topics`` (those that exist); ``controller`` as known locally."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=REQUEST_TIMEOUT_MS)
    try:
        await admin.start()
        cluster = await admin.describe_cluster()
        described = await admin.describe_topics(topics)
    except KafkaError as exc:
        raise StackError(f"Kafka at {bootstrap} did not describe itself: {exc!r}") from None
    finally:
        await admin.close()
    brokers = sorted(
        ({"node_id": b["node_id"], "address": f"{b['host']}:{b['port']}"} for b in cluster["brokers"]),
        key=lambda b: str(b["node_id"]),
    )
    found = {d["topic"]: replication_of(d["partitions"]) for d in described if not d["error_code"]}
    return ClusterView(brokers, controller, found)


async def wait_for_brokers(bootstrap: str, count: int, timeout: float = 60.0) -> None:
    """Return once the cluster's metadata lists ``count`` brokers (a node's port opens a
    moment before the controller has registered it); StackError after ``timeout``."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    seen = 0
    while loop.time() < deadline:
        admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=REQUEST_TIMEOUT_MS)
        try:
            await admin.start()
            seen = len((await admin.describe_cluster())["brokers"])
            if seen >= count:
                return
        except KafkaError:
            pass
        finally:
            await admin.close()
        await asyncio.sleep(0.5)
    raise StackError(f"Kafka at {bootstrap} lists {seen} of {count} brokers after {timeout:.0f} s")


def describe_lines(kafka: Mapping[str, Any]) -> list[str]:
    """``stack status`` text for a cluster (nothing for a single node): each node, the
    controller, and the under-replicated partitions of our topics."""
    nodes = kafka.get("nodes") or []
    view = kafka.get("cluster") or {}
    if len(nodes) < 2:
        return [f"  {view['error']}"] if "error" in view else []
    lines = [
        f"  node {n['node_id']}       {n['address']:<28} "
        + (f"pid {n['pid']}" if n["pid"] else "not running")
        for n in nodes
    ]
    if "error" in view:
        return [*lines, f"  {view['error']}"]
    if view:
        listed = ", ".join(str(b["node_id"]) for b in view["brokers"])
        lines.append(f"  brokers {listed}; controller {view['controller']}")
        lines.append(f"  under-replicated partitions: {view['under_replicated_partitions']}")
    return lines
