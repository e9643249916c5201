"""``ledgerflow stack up --redis-cluster``: a private Redis Cluster (own state dir, six free
ports; Kafka is the session's, under a fresh topic prefix) started, inspected, restarted
and stopped through the CLI. The shared dev stack's Redis is never touched."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis as redis_sync
from redis.cluster import ClusterNode, RedisCluster

from ledgerflow.config import Settings
from ledgerflow.stack import manage, rediscluster
from tests.support.privatestack import free_port_run

ROOT = Path(__file__).resolve().parents[2]


def _cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "ledgerflow.cli", "stack", *args],
        check=False,
        capture_output=True,
        text=True,
        env=env,
        cwd=ROOT,
        timeout=180,
    )


@pytest.fixture(scope="module")
def cluster(
    stack: Settings, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[Settings, dict[str, str]]]:
    state = tmp_path_factory.mktemp("rediscluster")
    # cluster nodes must listen at most 55535 (their bus is 10000 above), free bus ports too
    port = free_port_run(rediscluster.NODE_COUNT, highest=rediscluster.MAX_PORT, also=rediscluster.BUS_OFFSET)
    env = {k: v for k, v in os.environ.items() if not k.startswith("LEDGERFLOW_")}
    env |= {
        "LEDGERFLOW_STATE_DIR": str(state),
        "LEDGERFLOW_KAFKA_BOOTSTRAP": stack.kafka_bootstrap,  # an address: external, nothing started
        "LEDGERFLOW_TOPIC_PREFIX": f"t{uuid.uuid4().hex[:10]}.",
        "LEDGERFLOW_REDIS_PORT": str(port),  # a port: ours to start
        "PYTHONPATH": str(ROOT),
    }
    settings = Settings(
        kafka_bootstrap=stack.kafka_bootstrap,
        redis_url=f"redis://127.0.0.1:{port}/0",
        state_dir=state,
        kafka_external=True,
    )
    try:
        up = _cli(env, "up", "--redis-cluster", "--json")
        assert up.returncode == 0, up.stderr[-3000:]
        yield settings, env
    finally:
        manage.down(settings, say=lambda _: None)


def _redis(env: dict[str, str]) -> dict[str, Any]:
    out = _cli(env, "status", "--json")
    assert out.returncode == 0, out.stderr
    info: dict[str, Any] = json.loads(out.stdout)["redis"]
    return info


def test_status_shows_six_running_nodes_three_masters_with_every_slot_and_three_replicas(
    cluster: tuple[Settings, dict[str, str]],
) -> None:
    _, env = cluster
    redis = _redis(env)
    assert [n["name"] for n in redis["nodes"]] == [f"redis-{i}" for i in range(1, 7)]
    assert all(n["pid"] for n in redis["nodes"]), redis["nodes"]
    view = redis["cluster"]
    assert (view["state"], view["slots_ok"], view["masters"], view["replicas"]) == ("ok", 16384, 3, 3)
    assert all(n["connected"] for n in view["nodes"])
    assert sum(n["slots"] for n in view["nodes"] if n["role"] == "master") == 16384


def test_a_cluster_client_writes_and_reads_keys_on_every_master(
    cluster: tuple[Settings, dict[str, str]],
) -> None:
    settings, _ = cluster
    client = RedisCluster(startup_nodes=[ClusterNode("127.0.0.1", manage.nodes(settings).redis.port)])  # type: ignore[no-untyped-call]
    try:
        keys = [f"k{i}" for i in range(60)]
        for key in keys:
            client.set(key, key)
        assert [client.get(k) for k in keys] == [k.encode() for k in keys]
        owners = {client.get_node_from_key(k).port for k in keys}  # type: ignore[no-untyped-call]
        assert len(owners) == 3
        # Keys sharing a hash tag live in one slot: a multi-key command on them is allowed.
        client.mset({"{c1}:a": "1", "{c1}:b": "2"})
        assert client.mget(["{c1}:a", "{c1}:b"]) == [b"1", b"2"]
    finally:
        client.close()


def test_a_plain_client_is_redirected_for_a_key_another_master_owns(
    cluster: tuple[Settings, dict[str, str]],
) -> None:
    settings, _ = cluster
    first = manage.nodes(settings).redis
    plain = redis_sync.Redis(host=first.host, port=first.port)
    try:
        results = []
        for i in range(20):
            try:
                plain.set(f"k{i}", "x")
                results.append("ok")
            except redis_sync.exceptions.MovedError:
                results.append("moved")
        assert "moved" in results and "ok" in results
    finally:
        plain.close()


def test_a_second_up_without_the_flag_starts_nothing_new(cluster: tuple[Settings, dict[str, str]]) -> None:
    _, env = cluster
    before = [n["pid"] for n in _redis(env)["nodes"]]
    again = _cli(env, "up", "--json")  # the state dir says: a Redis Cluster
    assert again.returncode == 0, again.stderr[-3000:]
    assert [n["pid"] for n in json.loads(again.stdout)["redis"]["nodes"]] == before


def test_down_stops_every_node_and_up_rejoins_them_from_their_cluster_state(
    cluster: tuple[Settings, dict[str, str]],
) -> None:
    _, env = cluster
    down = _cli(env, "down")
    assert down.returncode == 0, down.stderr
    for i in range(1, 7):
        assert f"redis-{i}: stopped" in down.stderr
    stopped = _redis(env)
    assert [n["pid"] for n in stopped["nodes"]] == [None] * 6
    assert stopped["cluster"] is None
    up = _cli(env, "up", "--json")
    assert up.returncode == 0, up.stderr[-3000:]
    view = json.loads(up.stdout)["redis"]["cluster"]
    assert (view["state"], view["masters"], view["replicas"]) == ("ok", 3, 3)
