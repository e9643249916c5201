"""``ledgerflow stack up --brokers 3``: a private three-node KRaft cluster (own state dir, own
free ports, own Redis) started and stopped through the CLI; every topic replicated three
ways and fully in sync; records produced with acks=all come back; ``stack down`` stops all.
The shared dev stack is never touched."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType

from ledgerflow.config import Settings
from ledgerflow.errors import StackError
from ledgerflow.kafka.admin import HEALTH_TOPIC, ensure_topics, partition_counts
from ledgerflow.netutil import free_port
from ledgerflow.stack import kafka as kafka_stack
from ledgerflow.stack import manage
from ledgerflow.topics import CONVERSATION_EVENTS, TRAINING_COMMANDS, all_topics
from tests.support.privatestack import free_port_run

ROOT = Path(__file__).resolve().parents[2]
BROKERS = 3


def _cli(env: dict[str, str], *args: str, timeout: float = 240) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "ledgerflow.cli", "stack", *args],
        check=False,
        capture_output=True,
        text=True,
        env=env,
        cwd=ROOT,
        timeout=timeout,
    )


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Settings, dict[str, str]]]:
    state = tmp_path_factory.mktemp("cluster")
    kafka_port, redis_port = free_port_run(2 * BROKERS), free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("LEDGERFLOW_")}
    # Ports, not addresses: an address would mark the service external and start nothing.
    env |= {
        "LEDGERFLOW_STATE_DIR": str(state),
        "LEDGERFLOW_KAFKA_PORT": str(kafka_port),
        "LEDGERFLOW_REDIS_PORT": str(redis_port),
        "PYTHONPATH": str(ROOT),
    }
    settings = Settings(
        kafka_bootstrap=f"127.0.0.1:{kafka_port}",
        redis_url=f"redis://127.0.0.1:{redis_port}/0",
        state_dir=state,
    )
    try:
        up = _cli(env, "up", "--brokers", str(BROKERS), "--json")
        assert up.returncode == 0, up.stderr[-3000:]
        yield settings, env
    finally:
        nodes = manage.nodes(settings)
        for node in (*nodes.brokers, nodes.redis):
            pid = node.process.pid()
            if pid is not None:
                os.kill(pid, signal.SIGCONT)
        manage.down(settings, say=lambda _: None)


def _status(env: dict[str, str]) -> dict[str, Any]:
    out = _cli(env, "status", "--json", timeout=60)
    assert out.returncode == 0, out.stderr
    info: dict[str, Any] = json.loads(out.stdout)
    return info


def test_status_shows_three_running_nodes_and_a_controller_among_them(
    cluster: tuple[Settings, dict[str, str]],
) -> None:
    _, env = cluster
    kafka = _status(env)["kafka"]
    nodes = kafka["nodes"]
    assert [n["node_id"] for n in nodes] == [1, 2, 3]
    assert all(n["pid"] for n in nodes), nodes
    assert len({n["pid"] for n in nodes}) == BROKERS
    assert kafka["bootstrap"] == ",".join(n["address"] for n in nodes)
    assert [b["node_id"] for b in kafka["cluster"]["brokers"]] == [1, 2, 3]
    assert kafka["cluster"]["controller"] in {1, 2, 3}


def test_every_topic_has_replication_factor_three_and_three_in_sync(
    cluster: tuple[Settings, dict[str, str]],
) -> None:
    settings, env = cluster
    view = _status(env)["kafka"]["cluster"]
    wanted = {settings.topic(s.base) for s in all_topics()} | {settings.topic(HEALTH_TOPIC)}
    assert set(view["topics"]) == wanted
    for name, topic in view["topics"].items():
        assert (topic["replication_factor"], topic["isr"], topic["under_replicated"]) == (3, 3, 0), name
    assert view["under_replicated_partitions"] == 0


async def _min_insync(bootstrap: str, names: list[str]) -> dict[str, str]:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=15000)
    await admin.start()
    try:
        wanted = {"min.insync.replicas": None}
        responses = await admin.describe_configs(
            [ConfigResource(ConfigResourceType.TOPIC, n, wanted) for n in names]
        )
    finally:
        await admin.close()
    found = {}
    for response in responses:
        for resource in response.to_object()["resources"]:
            assert resource["error_code"] == 0, resource
            for entry in resource["config_entries"]:
                found[resource["resource_name"]] = entry["config_value"]
    return found


def test_every_topic_needs_two_in_sync_replicas_to_acknowledge(
    cluster: tuple[Settings, dict[str, str]],
) -> None:
    settings, env = cluster
    names = [settings.topic(s.base) for s in all_topics()]
    bootstrap = _status(env)["kafka"]["bootstrap"]
    assert asyncio.run(_min_insync(bootstrap, names)) == dict.fromkeys(names, "2")


async def _produce_and_consume(bootstrap: str, topic: str, count: int) -> set[bytes]:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", enable_idempotence=True)
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    await producer.start()
    await consumer.start()
    try:
        sent = [await producer.send(topic, f"v{i}".encode(), key=f"c{i}".encode()) for i in range(count)]
        metas = [await f for f in sent]
        tps = sorted({TopicPartition(topic, m.partition) for m in metas})
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        seen: set[bytes] = set()
        for _ in range(60):
            for records in (await consumer.getmany(*tps, timeout_ms=500)).values():
                seen.update(r.value for r in records if r.value is not None)
            if len(seen) >= count:
                break
        return seen
    finally:
        await producer.stop()
        await consumer.stop()


def test_records_produced_with_acks_all_across_partitions_come_back(
    cluster: tuple[Settings, dict[str, str]],
) -> None:
    settings, env = cluster
    bootstrap = _status(env)["kafka"]["bootstrap"]
    seen = asyncio.run(_produce_and_consume(bootstrap, settings.topic(CONVERSATION_EVENTS), 60))
    assert seen == {f"v{i}".encode() for i in range(60)}


def test_partitions_applies_to_new_multi_partition_topics_and_leaves_existing_ones(
    cluster: tuple[Settings, dict[str, str]],
) -> None:
    settings, env = cluster
    bootstrap = _status(env)["kafka"]["bootstrap"]
    fresh = settings.with_overrides(kafka_bootstrap=bootstrap, topic_prefix="wide.")
    created = asyncio.run(ensure_topics(fresh, partitions=4))
    assert sorted(created) == sorted(fresh.topic(s.base) for s in all_topics())
    wanted = {fresh.topic(s.base): (4 if s.partitions > 1 else 1) for s in all_topics()}
    assert asyncio.run(partition_counts(fresh, list(wanted))) == wanted
    # Already there: a different count changes nothing (growing a live topic moves keys).
    assert asyncio.run(ensure_topics(fresh, partitions=9)) == []
    assert asyncio.run(partition_counts(fresh, list(wanted))) == wanted
    existing = settings.with_overrides(kafka_bootstrap=bootstrap)
    assert asyncio.run(ensure_topics(existing, partitions=9)) == []
    assert asyncio.run(partition_counts(existing, [existing.topic(CONVERSATION_EVENTS)])) == {
        existing.topic(CONVERSATION_EVENTS): 6
    }


def _wait_for_status(
    env: dict[str, str], done: Callable[[dict[str, Any]], bool], what: str
) -> dict[str, Any]:
    """Poll ``stack status --json`` until ``done(kafka)``; fail after a generous deadline."""
    deadline = time.monotonic() + 90
    while True:
        kafka = _status(env)["kafka"]
        if done(kafka):
            return kafka
        if time.monotonic() > deadline:
            pytest.fail(f"{what} did not happen: {json.dumps(kafka['cluster'])[:2000]}")
        time.sleep(1)


def test_with_one_broker_killed_acks_all_writes_succeed_and_up_restarts_it_to_full_isr(
    cluster: tuple[Settings, dict[str, str]],
) -> None:
    settings, env = cluster
    kafka = _status(env)["kafka"]
    victim = kafka["nodes"][2]
    os.kill(victim["pid"], signal.SIGKILL)
    _wait_for_status(
        env, lambda k: (k["cluster"] or {}).get("under_replicated_partitions", 0) > 0, "under-replication"
    )
    # Two of three replicas in sync = min.insync.replicas: acks=all writes are still accepted.
    topic = settings.topic(TRAINING_COMMANDS)
    seen = asyncio.run(_produce_and_consume(kafka["bootstrap"], topic, 30))
    assert seen == {f"v{i}".encode() for i in range(30)}
    again = _cli(env, "up", "--json")
    assert again.returncode == 0, again.stderr[-3000:]
    healed = _wait_for_status(
        env, lambda k: (k["cluster"] or {}).get("under_replicated_partitions") == 0, "catching up"
    )
    assert healed["nodes"][2]["pid"] not in (None, victim["pid"])
    assert all(t["isr"] == 3 for t in healed["cluster"]["topics"].values())


def test_a_second_up_starts_nothing_new(cluster: tuple[Settings, dict[str, str]]) -> None:
    _, env = cluster
    before = [n["pid"] for n in _status(env)["kafka"]["nodes"]]
    again = _cli(env, "up", "--json")  # no --brokers: the state dir says three
    assert again.returncode == 0, again.stderr[-3000:]
    assert [n["pid"] for n in json.loads(again.stdout)["kafka"]["nodes"]] == before


def test_down_stops_every_node(cluster: tuple[Settings, dict[str, str]]) -> None:
    _, env = cluster
    down = _cli(env, "down", timeout=120)
    assert down.returncode == 0, down.stderr
    for name in ("kafka-1", "kafka-2", "kafka-3", "redis"):
        assert f"{name}: stopped" in down.stderr
    kafka = _status(env)["kafka"]
    assert [n["pid"] for n in kafka["nodes"]] == [None, None, None]  # dead, or not ours any more
    assert kafka["cluster"] is None


def _tripwire(*_: object, **__: object) -> None:
    pytest.fail("start_cluster launched a node although a later node's port was taken")


@pytest.mark.parametrize("held", [5, 4])  # the third node's controller port, then its broker port
def test_a_cluster_with_any_port_taken_starts_no_node_at_all(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, held: int
) -> None:
    for name in ("require_java", "resolve_classpath", "spawn"):
        monkeypatch.setattr(kafka_stack, name, _tripwire)
    port = free_port_run(2 * BROKERS)
    nodes = kafka_stack.cluster(tmp_path, "127.0.0.1", port, BROKERS)
    with socket.socket() as foreign:
        foreign.bind(("127.0.0.1", port + held))
        foreign.listen(4)
        with pytest.raises(StackError, match=rf"port {port + held} on 127\.0\.0\.1"):
            kafka_stack.start_cluster(nodes)
    assert not any(n.dir.exists() for n in nodes)
