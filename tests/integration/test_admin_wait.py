"""The admin questions (``kafka.admin``) on a cluster that is not ready yet: a fresh cluster has
no group coordinator until its offsets topic exists, which the first group lookup creates; the
questions wait for it instead of failing. Each test that needs a fresh cluster starts its own
private Kafka + Redis (the shared dev stack's offsets topic exists long since)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterator
from pathlib import Path

import pytest
from aiokafka.errors import KafkaError

from ledgerflow.agents.layout import PINNED, pin
from ledgerflow.config import Settings
from ledgerflow.kafka.admin import committed_offsets, group_metadata, group_offsets, partition_counts
from ledgerflow.topics import CONVERSATION_EVENTS, all_topics
from tests.support.privatestack import private_settings, private_stack
from tests.support.processes import free_port


@pytest.fixture
def fresh(tmp_path: Path) -> Iterator[Settings]:
    """A private single-broker cluster with our topics and no consumer group ever looked up."""
    settings = private_settings(tmp_path / "stack")
    with private_stack(settings):
        yield settings


def test_the_layout_pin_on_a_fresh_cluster_waits_for_the_group_coordinator(fresh: Settings) -> None:
    # A fresh cluster answered the pin's first group lookup with GroupCoordinatorNotAvailable:
    # both workers of a chaos run exited at start.
    layout = asyncio.run(pin(fresh, "fresh-workers"))
    declared = {s.base: s.partitions for s in all_topics()}
    assert layout.counts == {base: declared[base] for base in PINNED}
    assert layout.counts[CONVERSATION_EVENTS] > 1


def test_committed_offsets_on_a_fresh_cluster_are_waited_for_and_none(fresh: Settings) -> None:
    async def ask() -> tuple[object, ...]:
        return (
            await group_offsets(fresh, "fresh-a"),
            await committed_offsets(fresh, "fresh-b", fresh.topic(CONVERSATION_EVENTS)),
            await group_metadata(fresh, "fresh-c"),
        )

    assert asyncio.run(ask()) == ({}, {}, {})


def test_no_broker_at_the_address_is_raised_at_once_not_waited_for(
    settings: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    nowhere = settings.with_overrides(kafka_bootstrap=f"127.0.0.1:{free_port()}")
    questions = [
        lambda: partition_counts(nowhere, [nowhere.topic(CONVERSATION_EVENTS)]),
        lambda: group_offsets(nowhere, "g"),
        lambda: committed_offsets(nowhere, "g", "t"),
        lambda: group_metadata(nowhere, "g"),
    ]
    with caplog.at_level(logging.INFO, logger="ledgerflow.kafka.admin"):
        for question in questions:
            with pytest.raises(KafkaError):
                asyncio.run(question())
    assert [r.getMessage() for r in caplog.records if r.name == "ledgerflow.kafka.admin"] == []
