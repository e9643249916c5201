"""A local KRaft cluster's layout (ports, ids, quorum, replication), the topic table's
partition override, and the replication summary ``stack status`` prints: pure, no broker."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ledgerflow.errors import StackError
from ledgerflow.stack.cluster import describe_lines, replication_of
from ledgerflow.stack.kafka import KafkaNode, cluster, quorum_leader, server_properties
from ledgerflow.topics import POLICY_RULES, TOPICS, all_topics, replication, with_partitions


@pytest.mark.parametrize(("brokers", "wanted"), [(1, (1, 1)), (2, (2, 1)), (3, (3, 2)), (5, (3, 2))])
def test_replication_is_three_and_two_from_three_brokers_on(brokers: int, wanted: tuple[int, int]) -> None:
    assert replication(brokers) == wanted


@pytest.mark.parametrize("brokers", [0, -1])
def test_replication_never_asks_for_fewer_than_one_copy(brokers: int) -> None:
    assert replication(brokers) == (1, 1)


def test_three_nodes_take_consecutive_port_pairs_and_share_one_quorum(tmp_path: Path) -> None:
    nodes = cluster(tmp_path, "127.0.0.1", 40000, 3)
    assert [(n.node_id, n.port, n.controller_port) for n in nodes] == [
        (1, 40000, 40001),
        (2, 40002, 40003),
        (3, 40004, 40005),
    ]
    assert {n.voters for n in nodes} == {"1@127.0.0.1:40001,2@127.0.0.1:40003,3@127.0.0.1:40005"}
    assert [n.dir.name for n in nodes] == ["kafka-1", "kafka-2", "kafka-3"]
    assert len({n.process.pid_file for n in nodes}) == 3


def test_a_cluster_of_one_is_the_single_node_stack(tmp_path: Path) -> None:
    (node,) = cluster(tmp_path, "127.0.0.1", 40000, 1)
    assert node == KafkaNode(tmp_path, "127.0.0.1", 40000)
    assert node.dir == tmp_path / "kafka"
    assert node.voters == "1@127.0.0.1:40001"


def test_a_cluster_of_no_brokers_is_refused(tmp_path: Path) -> None:
    with pytest.raises(StackError, match="at least one broker"):
        cluster(tmp_path, "127.0.0.1", 40000, 0)


def test_the_single_node_marker_does_not_match_a_cluster_node(tmp_path: Path) -> None:
    (single,) = cluster(tmp_path, "127.0.0.1", 40000, 1)
    first = cluster(tmp_path, "127.0.0.1", 40000, 3)[0]
    cmdline = f"java -cp x kafka.Kafka {first.dir}/server.properties"
    assert any(m in cmdline for m in first.process.markers)
    assert not any(m in cmdline for m in single.process.markers)


def test_cluster_nodes_replicate_internal_topics_three_ways_and_need_two_in_sync(tmp_path: Path) -> None:
    props = server_properties(cluster(tmp_path, "127.0.0.1", 40000, 3)[1])
    assert props["node.id"] == "2"
    assert props["listeners"] == "PLAINTEXT://127.0.0.1:40002,CONTROLLER://127.0.0.1:40003"
    assert props["log.dirs"] == str(tmp_path / "kafka-2" / "data")
    for name in (
        "default.replication.factor",
        "offsets.topic.replication.factor",
        "transaction.state.log.replication.factor",
        "share.coordinator.state.topic.replication.factor",
    ):
        assert props[name] == "3", name
    for name in (
        "min.insync.replicas",
        "transaction.state.log.min.isr",
        "share.coordinator.state.topic.min.isr",
    ):
        assert props[name] == "2", name


def test_with_partitions_changes_every_multi_partition_topic_and_no_single_one() -> None:
    changed = {s.base: s.partitions for s in with_partitions(all_topics(), 12)}
    for spec in all_topics():
        assert changed[spec.base] == (12 if spec.partitions > 1 else 1), spec.base
    assert changed[POLICY_RULES] == 1


def test_with_partitions_none_keeps_the_table_and_below_one_is_refused() -> None:
    assert with_partitions(TOPICS, None) is TOPICS
    with pytest.raises(ValueError, match="at least 1"):
        with_partitions(TOPICS, 0)


def _partition(replicas: list[int], isr: list[int]) -> dict[str, object]:
    return {"replicas": replicas, "isr": isr}


def test_replication_of_counts_partitions_whose_isr_is_short_of_their_replicas() -> None:
    summary = replication_of([_partition([1, 2, 3], [1, 2, 3]), _partition([2, 3, 1], [2, 3])])
    assert (summary.partitions, summary.replication_factor, summary.isr, summary.under_replicated) == (
        2,
        3,
        2,
        1,
    )


def test_replication_of_a_topic_without_partitions_is_all_zero() -> None:
    summary = replication_of([])
    assert (summary.partitions, summary.replication_factor, summary.isr, summary.under_replicated) == (
        0,
        0,
        0,
        0,
    )


def _quorum_state(node: KafkaNode, text: str) -> None:
    path = node.dir / "data" / "__cluster_metadata-0" / "quorum-state"
    path.parent.mkdir(parents=True)
    path.write_text(text)


def test_quorum_leader_is_the_leader_of_the_newest_epoch_any_node_recorded(tmp_path: Path) -> None:
    a, b, c = cluster(tmp_path, "127.0.0.1", 40000, 3)
    _quorum_state(a, json.dumps({"leaderId": 1, "leaderEpoch": 4}))  # stale: a was down
    _quorum_state(b, json.dumps({"leaderId": 3, "leaderEpoch": 5}))
    _quorum_state(c, "{not json")
    assert quorum_leader((a, b, c)) == 3


def test_quorum_leader_is_none_while_an_election_runs_or_nothing_was_recorded(tmp_path: Path) -> None:
    a, b, c = cluster(tmp_path, "127.0.0.1", 40000, 3)
    assert quorum_leader((a, b, c)) is None
    _quorum_state(a, json.dumps({"leaderId": -1, "leaderEpoch": 6, "votedId": 2}))
    assert quorum_leader((a, b, c)) is None


def test_status_text_lists_each_node_the_controller_and_under_replication() -> None:
    kafka = {
        "nodes": [
            {"node_id": 1, "address": "127.0.0.1:40000", "pid": 11},
            {"node_id": 2, "address": "127.0.0.1:40002", "pid": None},
        ],
        "cluster": {"brokers": [{"node_id": 1}], "controller": 1, "under_replicated_partitions": 7},
    }
    text = "\n".join(describe_lines(kafka))
    assert "node 1" in text and "pid 11" in text
    assert "node 2" in text and "not running" in text
    assert "controller 1" in text
    assert "under-replicated partitions: 7" in text


def test_status_text_of_a_single_node_adds_nothing_but_an_error() -> None:
    one = [{"node_id": 1, "address": "127.0.0.1:40000", "pid": 11}]
    assert describe_lines({"nodes": one, "cluster": {"brokers": [], "controller": None}}) == []
    assert describe_lines({"nodes": one, "cluster": {"error": "Kafka at x did not describe itself"}}) == [
        "  Kafka at x did not describe itself"
    ]
