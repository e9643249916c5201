"""``stack.kafka``: reading ``java -version`` and the single-node KRaft ``server.properties``."""

from __future__ import annotations

from pathlib import Path

import pytest

from ledgerflow.stack.kafka import KafkaNode, _java_major, new_cluster_id, write_config

JAVA_17 = """openjdk version "17.0.15" 2025-04-15
OpenJDK Runtime Environment (build 17.0.15+6-Debian-1deb12u1)
OpenJDK 64-Bit Server VM (build 17.0.15+6-Debian-1deb12u1, mixed mode, sharing)
"""
JAVA_21 = """openjdk version "21.0.4" 2024-07-16 LTS
OpenJDK Runtime Environment Temurin-21.0.4+7 (build 21.0.4+7-LTS)
OpenJDK 64-Bit Server VM Temurin-21.0.4+7 (build 21.0.4+7-LTS, mixed mode, sharing)
"""
JAVA_8 = """java version "1.8.0_392"
Java(TM) SE Runtime Environment (build 1.8.0_392-b08)
Java HotSpot(TM) 64-Bit Server VM (build 25.392-b08, mixed mode)
"""
JAVA_21_GA = """openjdk version "21" 2023-09-19
OpenJDK Runtime Environment (build 21+35-2513)
OpenJDK 64-Bit Server VM (build 21+35-2513, mixed mode, sharing)
"""
JAVA_11_GA = """openjdk version "11" 2018-09-25
OpenJDK Runtime Environment 18.9 (build 11+28)
OpenJDK 64-Bit Server VM 18.9 (build 11+28, mixed mode)
"""


@pytest.mark.parametrize(("text", "major"), [(JAVA_17, 17), (JAVA_21, 21), (JAVA_8, 8)])
def test_java_major_reads_modern_and_legacy_version_strings(text: str, major: int) -> None:
    assert _java_major(text) == major


def test_java_major_skips_a_picked_up_options_line() -> None:
    assert _java_major("Picked up JAVA_TOOL_OPTIONS: -Xss1.5m -Dx=2.0\n" + JAVA_17) == 17


def test_java_major_of_unrecognised_text_is_none() -> None:
    assert _java_major("bash: java: command not found") is None


@pytest.mark.parametrize(("text", "major"), [(JAVA_21_GA, 21), (JAVA_11_GA, 11)])
def test_java_major_reads_ga_versions_without_dots(text: str, major: int) -> None:
    assert _java_major(text) == major


def read_props(path: Path) -> dict[str, str]:
    lines = [line for line in path.read_text().splitlines() if line and not line.startswith("#")]
    return dict(line.split("=", 1) for line in lines)


def test_server_properties_describe_a_single_kraft_node(tmp_path: Path) -> None:
    node = KafkaNode(tmp_path, "127.0.0.1", 39092)
    path = write_config(node)
    props = read_props(path)

    assert path == tmp_path / "kafka" / "server.properties"
    assert props["process.roles"] == "broker,controller"
    assert props["controller.quorum.voters"] == "1@127.0.0.1:39093"
    assert props["listeners"] == "PLAINTEXT://127.0.0.1:39092,CONTROLLER://127.0.0.1:39093"
    assert props["advertised.listeners"] == "PLAINTEXT://127.0.0.1:39092"
    assert props["controller.listener.names"] == "CONTROLLER"
    assert props["log.dirs"] == str(tmp_path / "kafka" / "data")


def test_server_properties_fit_one_broker_and_never_auto_create_topics(tmp_path: Path) -> None:
    props = read_props(write_config(KafkaNode(tmp_path, "127.0.0.1", 39092)))
    for name in (
        "offsets.topic.replication.factor",
        "transaction.state.log.replication.factor",
        "transaction.state.log.min.isr",
        "share.coordinator.state.topic.replication.factor",
    ):
        assert props[name] == "1", name
    assert props["group.initial.rebalance.delay.ms"] == "0"
    assert props["auto.create.topics.enable"] == "false"


def test_write_config_also_writes_log4j2_and_is_repeatable(tmp_path: Path) -> None:
    node = KafkaNode(tmp_path, "127.0.0.1", 39092)
    first = write_config(node).read_text()
    assert write_config(node).read_text() == first
    assert "rootLogger.level" in (tmp_path / "kafka" / "log4j2.properties").read_text()


def test_process_marker_is_main_class_and_this_state_dir(tmp_path: Path) -> None:
    node = KafkaNode(tmp_path, "127.0.0.1", 39092)
    assert node.controller_port == 39093
    assert node.process.markers == (f"kafka.Kafka {tmp_path / 'kafka'}/",)
    assert node.process.pid_file == tmp_path / "kafka" / "kafka.pid"


def test_a_cluster_id_never_starts_with_a_dash_the_storage_tool_would_take_for_an_option() -> None:
    draws = iter([b"\xf8" + bytes(15), b"\xfb" + bytes(15), bytes(16)])  # "-…", "-…", then "A…"
    cluster_id = new_cluster_id(lambda: next(draws))
    assert cluster_id == "A" * 22
    assert len(new_cluster_id()) == 22
