"""The local Redis Cluster's layout and how ``stack status`` reads ``CLUSTER NODES`` / ``INFO``."""

from __future__ import annotations

from pathlib import Path

import pytest

from ledgerflow.errors import ValidationError
from ledgerflow.stack import rediscluster
from ledgerflow.stack.rediscluster import (
    describe_lines,
    formed,
    nodes,
    parse_cluster_info,
    parse_cluster_nodes,
)

M1, M2, M3, R1, R2, R3 = (f"{c}" * 40 for c in "abcdef")
HEALTHY = f"""\
{M1} 127.0.0.1:30001@40001 myself,master - 0 0 1 connected 0-5460
{M2} 127.0.0.1:30002@40002 master - 0 1700000000000 2 connected 5461-10922
{M3} 127.0.0.1:30003@40003 master - 0 1700000000000 3 connected 10923-16383
{R1} 127.0.0.1:30004@40004 slave {M1} 0 1700000000000 1 connected
{R2} 127.0.0.1:30005@40005 slave {M2} 0 1700000000000 2 connected
{R3} 127.0.0.1:30006@40006 slave {M3} 0 1700000000000 3 connected
"""


def test_six_nodes_on_consecutive_ports_each_in_its_own_directory(tmp_path: Path) -> None:
    cluster = nodes(tmp_path, "127.0.0.1", 30001)
    assert [(n.port, n.name, n.dir.name) for n in cluster] == [
        (30001 + i, f"redis-{i + 1}", f"redis-{i + 1}") for i in range(6)
    ]
    assert len({n.process.pid_file for n in cluster}) == 6
    assert all(n.process.name == n.name for n in cluster)


def test_parse_cluster_nodes_reads_roles_masters_and_slot_counts() -> None:
    members = parse_cluster_nodes(HEALTHY)
    assert [(m.address, m.role, m.slots) for m in members][:3] == [
        ("127.0.0.1:30001", "master", 5461),
        ("127.0.0.1:30002", "master", 5462),
        ("127.0.0.1:30003", "master", 5461),
    ]
    assert [m.master_id for m in members][3:] == [M1, M2, M3]
    assert sum(m.slots for m in members) == 16384
    assert formed(members)


def test_parse_cluster_nodes_counts_single_slots_and_skips_migrating_ones() -> None:
    text = f"{M1} 127.0.0.1:30001@40001 master - 0 0 1 connected 0-9 42 [43->-{M2}] [44-<-{M2}]\n"
    (member,) = parse_cluster_nodes(text)
    assert member.slots == 11


def test_a_replica_still_shown_as_an_empty_master_is_not_formed() -> None:
    early = HEALTHY.replace(f"slave {M3} 0", "master - 0")
    assert not formed(parse_cluster_nodes(early))


def test_a_failed_or_disconnected_node_is_not_formed() -> None:
    assert not formed(
        parse_cluster_nodes(
            HEALTHY.replace("master - 0 1700000000000 2 connected", "master,fail - 0 1 2 disconnected")
        )
    )
    assert not formed(
        parse_cluster_nodes(
            HEALTHY.replace(f"slave {M2} 0 1700000000000 2 connected", f"slave,fail {M2} 0 1 2 connected")
        )
    )


def test_a_cluster_missing_a_node_or_with_a_master_without_replica_is_not_formed() -> None:
    lines = HEALTHY.splitlines()
    assert not formed(parse_cluster_nodes("\n".join(lines[:5])))
    two_on_one = HEALTHY.replace(f"slave {M3}", f"slave {M1}")
    assert not formed(parse_cluster_nodes(two_on_one))


def test_parse_cluster_info_reads_key_value_lines() -> None:
    info = parse_cluster_info("cluster_state:ok\r\ncluster_slots_ok:16384\r\ncluster_known_nodes:6\r\n")
    assert info == {"cluster_state": "ok", "cluster_slots_ok": "16384", "cluster_known_nodes": "6"}


def test_garbage_lines_are_ignored() -> None:
    assert parse_cluster_nodes("\nnot a node line\n") == []
    assert parse_cluster_info("no colon here\n") == {}


def test_status_text_lists_each_node_and_the_cluster_shape() -> None:
    redis = {
        "nodes": [
            {"name": "redis-1", "address": "127.0.0.1:30001", "pid": 7},
            {"name": "redis-2", "address": "127.0.0.1:30002", "pid": None},
        ],
        "cluster": {"state": "fail", "masters": 3, "replicas": 2},
    }
    text = "\n".join(describe_lines(redis))
    assert "redis-1" in text and "pid 7" in text
    assert "redis-2" in text and "not running" in text
    assert "cluster fail: 3 masters, 2 replicas" in text


def test_status_text_of_a_single_redis_adds_nothing() -> None:
    assert describe_lines({"nodes": [], "cluster": None}) == []


def test_nodes_whose_cluster_bus_would_pass_65535_are_refused_in_one_line() -> None:
    # Redis itself exits at start-up when its port is above 55535 (the bus is 10000 above it).
    last_ok = rediscluster.MAX_PORT - rediscluster.NODE_COUNT + 1
    assert rediscluster.nodes(Path("/tmp/x"), "127.0.0.1", last_ok)[-1].port == rediscluster.MAX_PORT
    with pytest.raises(ValidationError, match=f"LEDGERFLOW_REDIS_PORT to {last_ok} or less"):
        rediscluster.nodes(Path("/tmp/x"), "127.0.0.1", last_ok + 1)


def test_cluster_dirs_are_the_redis_n_names_by_number() -> None:
    names = ["redis-10", "redis", "kafka-1", "redis-2", "redis-1", "redis-0", "redis-x", "redis-01"]
    assert rediscluster.cluster_dirs(names) == ["redis-1", "redis-2", "redis-10"]


SIX = [f"redis-{i}" for i in range(1, 7)]


@pytest.mark.parametrize(
    ("names", "cluster", "foreign"),
    [
        ([], False, []),
        ([], True, []),
        (["redis", "kafka-1"], True, []),  # the single Redis's directory never confuses a cluster
        (["redis", "kafka-1"], False, []),
        (SIX, True, []),  # the same cluster again: its nodes.conf rejoins it
        (["redis-1", "redis-2"], True, []),  # a cluster whose first start stopped half-way: its own
        (["redis", *SIX], False, SIX),  # a stopped cluster's state beside one Redis starting
        (["redis-3"], False, ["redis-3"]),
        ([*SIX, "redis-7"], True, ["redis-7"]),  # no node of a six-node cluster
    ],
)
def test_foreign_dirs_are_the_redis_n_state_not_of_the_layout_starting(
    names: list[str], cluster: bool, foreign: list[str]
) -> None:
    assert rediscluster.foreign_dirs(names, cluster) == foreign
