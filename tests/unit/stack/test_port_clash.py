"""`stack up` refuses, before starting anything, ports two of its services would share."""

from __future__ import annotations

from pathlib import Path

from ledgerflow.stack import kafka as kafka_stack
from ledgerflow.stack import rediscluster
from ledgerflow.stack.manage import StackNodes, port_clash
from ledgerflow.stack.redis import RedisNode

STATE = Path("/nonexistent/state")


def _nodes(kafka_port: int, redis_port: int, brokers: int = 1, cluster: bool = False) -> StackNodes:
    kafka = kafka_stack.cluster(STATE, "127.0.0.1", kafka_port, brokers)
    shards = rediscluster.nodes(STATE, "127.0.0.1", redis_port) if cluster else ()
    redis = shards[0] if shards else RedisNode(STATE, "127.0.0.1", redis_port)
    return StackNodes(kafka=kafka[0], redis=redis, brokers=kafka, redis_cluster=shards)


def test_the_defaults_and_ports_apart_do_not_clash() -> None:
    assert port_clash(_nodes(19092, 16379), kafka=True, redis=True) is None
    assert port_clash(_nodes(19092, 16379, brokers=3, cluster=True), kafka=True, redis=True) is None


def test_redis_on_the_kafka_controller_port_is_refused_in_one_line() -> None:
    """``demo --kafka-port 19392 --redis-port 19393`` started Redis, then failed on Kafka's controller."""
    clash = port_clash(_nodes(19392, 19393), kafka=True, redis=True)
    assert clash is not None and "\n" not in clash
    assert "Kafka node 1's controller and Redis would both listen on port 19393" in clash


def test_redis_on_a_later_broker_of_a_cluster_is_refused() -> None:
    clash = port_clash(_nodes(19092, 19096, brokers=3), kafka=True, redis=True)
    assert clash is not None and "port 19096" in clash and "Kafka node 3" in clash


def test_a_redis_cluster_node_on_a_kafka_port_or_a_bus_on_kafka_is_refused() -> None:
    assert port_clash(_nodes(19092, 19088, cluster=True), kafka=True, redis=True) is not None
    bus = port_clash(_nodes(29092, 19092 - 3, cluster=True), kafka=True, redis=True)
    assert bus is not None and "cluster bus" in bus


def test_a_service_stack_up_does_not_start_clashes_with_nothing() -> None:
    assert port_clash(_nodes(19392, 19393), kafka=False, redis=True) is None
    assert port_clash(_nodes(19392, 19393), kafka=True, redis=False) is None
