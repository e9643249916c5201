"""``ledgerflow_consumer_lag_records{group,topic,partition}`` of the partitions this worker owns.

Every ``LAG_INTERVAL_S`` the worker reads its group's committed offsets (one Kafka admin
request) and the end offsets of the partitions assigned to it (one ListOffsets through
its own consumer), and replaces the rows a scrape reports. Only assigned partitions are
reported, so N workers report disjoint series and ``sum`` over them is the group's lag;
a partition moved to another worker leaves this worker's series at the next refresh.
A refresh that fails keeps the last rows and counts
``ledgerflow_consumer_lag_refresh_errors_total``, so a stale figure is visible.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Iterable, Iterator, Sequence
from typing import Protocol

import faust
from aiokafka import TopicPartition
from prometheus_client import Counter
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from ledgerflow.config import Settings
from ledgerflow.consumer_lag import Lag, lag_rows
from ledgerflow.kafka.admin import group_offsets
from ledgerflow.metrics import WORKER_REGISTRY

LAG_INTERVAL_S = 10.0
NAME = "ledgerflow_consumer_lag_records"

log = logging.getLogger(__name__)

REFRESH_ERRORS = Counter(
    "ledgerflow_consumer_lag_refresh_errors_total",
    "Consumer-lag refreshes that failed (the last figures stay exported)",
    registry=WORKER_REGISTRY,
)


def lag_family(rows: Iterable[Lag]) -> GaugeMetricFamily:
    family = GaugeMetricFamily(
        NAME,
        "Records of a partition not yet committed by its consumer group (end offset - committed offset)",
        labels=["group", "topic", "partition"],
    )
    for row in rows:
        family.add_metric([row.group, row.topic, str(row.partition)], row.lag)
    return family


class ConsumerLag(Collector):
    """The last lag rows, exported as one gauge family on every scrape."""

    def __init__(self) -> None:
        self.rows: Sequence[Lag] = ()

    def describe(self) -> Iterator[Metric]:
        yield lag_family(())

    def collect(self) -> Iterator[Metric]:
        yield lag_family(self.rows)


CONSUMER_LAG = ConsumerLag()
WORKER_REGISTRY.register(CONSUMER_LAG)


async def refresh_once(collector: ConsumerLag, read: Callable[[], Awaitable[list[Lag]]]) -> None:
    """Replace ``collector``'s rows with what ``read`` returns; on failure keep them and count it."""
    try:
        collector.rows = await read()
    except Exception as exc:  # a metric must never stop the worker (faust crashes on a timer's error)
        REFRESH_ERRORS.inc()
        log.warning("consumer lag not refreshed (%r); the last figures stay exported", exc)


class GroupMember(Protocol):
    """One consumer-group member of this worker: its group, its partitions, their end offsets."""

    @property
    def group(self) -> str: ...

    def assigned(self) -> set[TopicPartition]: ...

    async def end_offsets(self, partitions: set[TopicPartition]) -> dict[TopicPartition, int]: ...


class FaustMember:
    """The faust App's consumer (the training and usage agents' group)."""

    def __init__(self, app: faust.App) -> None:
        self._app = app

    @property
    def group(self) -> str:
        return str(self._app.conf.id)

    def assigned(self) -> set[TopicPartition]:
        return {TopicPartition(tp.topic, tp.partition) for tp in self._app.consumer.assignment()}

    async def end_offsets(self, partitions: set[TopicPartition]) -> dict[TopicPartition, int]:
        ends = await self._app.consumer.highwaters(*partitions)
        return {TopicPartition(t.topic, t.partition): end for t, end in ends.items()}


def register(app: faust.App, settings: Settings, members: Sequence[GroupMember] = ()) -> None:
    """Refresh ``CONSUMER_LAG`` every ``LAG_INTERVAL_S`` for the faust App's group and ``members``
    (the hot path's batch loop has a consumer and a group of its own)."""
    everyone: list[GroupMember] = [FaustMember(app), *members]

    async def refresh() -> None:
        await refresh_once(CONSUMER_LAG, lambda: owned_lag(everyone, settings))

    app.timer(interval=LAG_INTERVAL_S, name="consumer-lag")(refresh)


async def owned_lag(members: Sequence[GroupMember], settings: Settings) -> list[Lag]:
    """Lag rows of the partitions assigned to this worker's members (none before an assignment)."""
    rows: list[Lag] = []
    for member in members:
        mine = member.assigned()
        if not mine:
            continue
        committed = await group_offsets(settings, member.group)
        ends = await member.end_offsets(mine)
        owned = {tp: offset for tp, offset in committed.items() if tp in mine}
        rows.extend(lag_rows(member.group, owned, ends))
    return rows
