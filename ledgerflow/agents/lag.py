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
from collections.abc import Iterable, Iterator, Sequence

import faust
from aiokafka import TopicPartition
from aiokafka.errors import KafkaError
from prometheus_client import Counter
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from ledgerflow.config import Settings
from ledgerflow.consumer_lag import Lag, lag_rows
from ledgerflow.errors import InfrastructureError
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


def register(app: faust.App, settings: Settings) -> None:
    """Refresh ``CONSUMER_LAG`` every ``LAG_INTERVAL_S`` from the group's committed offsets."""
    group = app.conf.id

    async def refresh() -> None:
        mine = {TopicPartition(tp.topic, tp.partition) for tp in app.consumer.assignment()}
        if not mine:
            CONSUMER_LAG.rows = ()
            return
        try:
            committed = await group_offsets(settings, group)
            ends = await app.consumer.highwaters(*mine)
        except (KafkaError, InfrastructureError, OSError) as exc:
            REFRESH_ERRORS.inc()
            log.warning("consumer lag not refreshed (%s); the last figures stay exported", exc)
            return
        owned = {tp: offset for tp, offset in committed.items() if tp in mine}
        CONSUMER_LAG.rows = lag_rows(
            group, owned, {TopicPartition(t.topic, t.partition): e for t, e in ends.items()}
        )

    app.timer(interval=LAG_INTERVAL_S, name="consumer-lag")(refresh)
