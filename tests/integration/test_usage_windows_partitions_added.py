"""Partitions added to ``usage.windows`` alone are refused like those of the pinned inputs.

The topic is keyed by tenant and its chains (per tenant and source partition) are read back in
order only within one partition: with more partitions a tenant's next windows land elsewhere,
and at its next recovery the usage agent took its own earlier records for forgeries and wrote
their windows again, chained anew (a fork, windows twice). docs/scaling.md promises that a live
ledgerflow topic given partitions is refused; the pin covered only the co-partitioned topics."""

from __future__ import annotations

import asyncio

import pytest
from aiokafka import TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewPartitions

from ledgerflow.agents import layout
from ledgerflow.agents.batchloop import loop_group
from ledgerflow.config import Settings
from ledgerflow.kafka.admin import commit_metadata
from ledgerflow.kafka.placement import Layout
from ledgerflow.topics import CONVERSATION_EVENTS, MODELS_COMMANDS, TRAINING_COMMANDS, USAGE_WINDOWS


async def _alter(settings: Settings, base: str, partitions: int) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap)
    await admin.start()
    try:
        await admin.create_partitions({settings.topic(base): NewPartitions(partitions)})
    finally:
        await admin.close()


def test_partitions_added_to_usage_windows_are_refused_at_start_and_while_running(settings: Settings) -> None:
    group = loop_group(settings)
    pinned = asyncio.run(layout.pin(settings, group))
    asyncio.run(_alter(settings, USAGE_WINDOWS, 5))
    with pytest.raises(layout.LayoutChanged, match="usage.windows has 5 partitions .* made with 3"):
        asyncio.run(layout.pin(settings, group))  # a worker starting
    problem = layout.changed(pinned, asyncio.run(layout.current(settings)))  # a running worker's timer
    assert problem is not None and USAGE_WINDOWS in problem


def test_a_pin_an_older_worker_kept_is_extended_to_usage_windows(settings: Settings) -> None:
    """A group pinned before ``usage.windows`` was: today's count of it is pinned from then on."""
    group = loop_group(settings)
    older = Layout({CONVERSATION_EVENTS: 6, MODELS_COMMANDS: 3, TRAINING_COMMANDS: 3})
    where = [TopicPartition(settings.topic(base), 0) for base in sorted(older.counts)]
    asyncio.run(commit_metadata(settings, layout.kept_in(group), older.encode(), where))
    assert asyncio.run(layout.pin(settings, group)).counts[USAGE_WINDOWS] == 3
    asyncio.run(_alter(settings, USAGE_WINDOWS, 5))
    with pytest.raises(layout.LayoutChanged, match="usage.windows"):
        asyncio.run(layout.pin(settings, group))
