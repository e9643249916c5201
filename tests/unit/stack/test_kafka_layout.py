"""Which Kafka state of a state directory belongs to the layout being started, and which ports
a layout takes: pure, from directory names and numbers."""

from __future__ import annotations

import pytest

from ledgerflow.stack.kafka import MAX_PORT, cluster_dirs, cluster_size, foreign_dirs, port_problem


def test_cluster_dirs_are_the_kafka_n_names_by_number() -> None:
    names = ["kafka-10", "kafka", "redis", "kafka-2", "kafka-1", "kafka-0", "kafka-x", "kafka-01", "kafka-2b"]
    assert cluster_dirs(names) == ["kafka-1", "kafka-2", "kafka-10"]


@pytest.mark.parametrize(
    ("names", "size"),
    [
        ([], 1),
        (["kafka"], 1),
        (["kafka-1"], 1),  # one node's directory is no cluster
        (["kafka-1", "kafka-2", "kafka-3"], 3),
        (["kafka", "kafka-1", "kafka-2", "kafka-3"], 3),
        (["kafka-1", "kafka-2", "kafka-4"], 2),
        (["kafka-2", "kafka-3"], 1),
    ],
)
def test_cluster_size_counts_kafka_1_on(names: list[str], size: int) -> None:
    assert cluster_size(names) == size


@pytest.mark.parametrize(
    ("names", "brokers", "foreign"),
    [
        ([], 1, []),
        ([], 3, []),
        (["kafka", "redis"], 3, []),  # the single node's directory never confuses a cluster
        (["kafka-1", "kafka-2", "kafka-3"], 3, []),  # the same cluster again: kept
        (["kafka", "kafka-1", "kafka-2", "kafka-3"], 1, ["kafka-1", "kafka-2", "kafka-3"]),
        (["kafka-1", "kafka-2", "kafka-3"], 2, ["kafka-1", "kafka-2", "kafka-3"]),  # formatted for 3 voters
        (["kafka-1", "kafka-2", "kafka-3"], 5, ["kafka-1", "kafka-2", "kafka-3"]),
        (["kafka-1", "kafka-2", "kafka-4"], 3, ["kafka-1", "kafka-2", "kafka-4"]),
        (["kafka-1"], 3, ["kafka-1"]),  # a start that failed half-way
    ],
)
def test_foreign_dirs_are_cluster_state_of_another_size(
    names: list[str], brokers: int, foreign: list[str]
) -> None:
    assert foreign_dirs(names, brokers) == foreign


@pytest.mark.parametrize(("port", "brokers"), [(19092, 1), (MAX_PORT - 1, 1), (MAX_PORT - 5, 3), (1, 1)])
def test_ports_whose_last_controller_fits_are_fine(port: int, brokers: int) -> None:
    assert port_problem(port, brokers) is None


@pytest.mark.parametrize(
    ("port", "brokers", "last", "most"),
    [
        (MAX_PORT, 1, MAX_PORT + 1, MAX_PORT - 1),
        (MAX_PORT - 4, 3, MAX_PORT + 1, MAX_PORT - 5),
        (MAX_PORT, 3, 65540, 65530),
    ],
)
def test_a_port_whose_controller_would_pass_65535_names_the_most_allowed(
    port: int, brokers: int, last: int, most: int
) -> None:
    problem = port_problem(port, brokers)
    assert problem is not None
    assert problem.startswith(f"LEDGERFLOW_KAFKA_PORT={port}: ")
    assert (
        f"{port}-{last}, past 65535" in problem and f"set LEDGERFLOW_KAFKA_PORT to {most} or less" in problem
    )
    assert "\n" not in problem
