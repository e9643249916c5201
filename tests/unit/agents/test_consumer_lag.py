"""``ledgerflow_consumer_lag_records``: the rows a worker exports, and only the current ones."""

from __future__ import annotations

import asyncio

import pytest
from aiokafka import TopicPartition
from aiokafka.errors import KafkaConnectionError
from prometheus_client import CollectorRegistry, generate_latest

from ledgerflow.agents.lag import ConsumerLag, refresh_once
from ledgerflow.consumer_lag import Lag, lag_rows
from ledgerflow.metrics import WORKER_REGISTRY


def _errors() -> float:
    return WORKER_REGISTRY.get_sample_value("ledgerflow_consumer_lag_refresh_errors_total") or 0.0


def _exposed(collector: ConsumerLag) -> list[str]:
    registry = CollectorRegistry()
    registry.register(collector)
    text = generate_latest(registry).decode()
    return [line for line in text.splitlines() if not line.startswith("#")]


def test_each_owned_partition_is_one_series_labelled_by_group_topic_and_partition() -> None:
    a, b = TopicPartition("p.events", 0), TopicPartition("p.decisions", 11)
    collector = ConsumerLag()
    collector.rows = lag_rows("p.worker", {a: 5, b: 100}, {a: 12, b: 90})
    assert _exposed(collector) == [
        'ledgerflow_consumer_lag_records{group="p.worker",partition="11",topic="p.decisions"} 0.0',
        'ledgerflow_consumer_lag_records{group="p.worker",partition="0",topic="p.events"} 7.0',
    ]  # b: committed past the end read a moment earlier is no lag, never a negative one


def test_a_partition_moved_to_another_worker_leaves_with_the_next_refresh() -> None:
    a, b = TopicPartition("t", 0), TopicPartition("t", 1)
    collector = ConsumerLag()
    collector.rows = lag_rows("g", {a: 1, b: 1}, {a: 3, b: 3})
    collector.rows = lag_rows("g", {b: 2}, {b: 3})
    assert _exposed(collector) == ['ledgerflow_consumer_lag_records{group="g",partition="1",topic="t"} 1.0']


def test_no_rows_still_declares_the_family_so_dashboards_find_it() -> None:
    registry = CollectorRegistry()
    registry.register(ConsumerLag())
    assert "# TYPE ledgerflow_consumer_lag_records gauge" in generate_latest(registry).decode()


def test_an_uncommitted_or_unknown_partition_has_no_row() -> None:
    a, b = TopicPartition("t", 0), TopicPartition("t", 1)
    assert [(r.partition, r.lag) for r in lag_rows("g", {a: 4}, {a: 9, b: 9})] == [(0, 5)]
    assert lag_rows("g", {b: 4}, {a: 9}) == []


def test_a_failed_refresh_keeps_the_last_rows_and_is_counted() -> None:
    collector = ConsumerLag()
    first = lag_rows("g", {TopicPartition("t", 0): 1}, {TopicPartition("t", 0): 4})
    before = _errors()

    async def fine() -> list[Lag]:
        return first

    async def broker_gone() -> list[Lag]:
        raise KafkaConnectionError("Unable to bootstrap")

    async def bug() -> list[Lag]:
        raise KeyError("not a Kafka error either")

    asyncio.run(refresh_once(collector, fine))
    asyncio.run(refresh_once(collector, broker_gone))
    asyncio.run(refresh_once(collector, bug))
    assert collector.rows == first
    assert _errors() == before + 2
    assert _exposed(collector) == ['ledgerflow_consumer_lag_records{group="g",partition="0",topic="t"} 3.0']


def test_a_cancelled_refresh_is_not_swallowed() -> None:
    async def cancelled() -> list[Lag]:
        raise asyncio.CancelledError

    with pytest.raises(asyncio.CancelledError):
        asyncio.run(refresh_once(ConsumerLag(), cancelled))
