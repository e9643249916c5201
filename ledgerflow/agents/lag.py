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


def register(app: faust.App, settings: Settings) -> None:
    """Refresh ``CONSUMER_LAG`` every ``LAG_INTERVAL_S`` from the group's committed offsets."""

    async def refresh() -> None:
        await refresh_once(CONSUMER_LAG, lambda: owned_lag(app, settings))

    app.timer(interval=LAG_INTERVAL_S, name="consumer-lag")(refresh)


async def owned_lag(app: faust.App, settings: Settings) -> list[Lag]:
    """Lag rows of the partitions assigned to this worker (none before the first assignment)."""
    mine = {TopicPartition(tp.topic, tp.partition) for tp in app.consumer.assignment()}
    if not mine:
        return []
    committed = await group_offsets(settings, app.conf.id)
    ends = await app.consumer.highwaters(*mine)
    owned = {tp: offset for tp, offset in committed.items() if tp in mine}
    return lag_rows(
        app.conf.id, owned, {TopicPartition(t.topic, t.partition): end for t, end in ends.items()}
    )
