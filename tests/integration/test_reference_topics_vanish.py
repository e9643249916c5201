"""``ReferenceData`` (the edge's and every worker's reader of policy.rules, training.audit and
models.audit) when its topics are deleted under it, and re-created.

Before, it kept their partitions assigned: aiokafka's fetcher, finding no leader for them, asked for
metadata in a loop without backoff and logged ``Topic … not found in cluster metadata`` thousands of
times a second. Now the reader drops them at once, ``sync`` fails with ``TopicsMissing`` naming them,
and once they exist again the reader reads them afresh by itself.
"""

from __future__ import annotations

import asyncio
import time

from aiokafka.admin import AIOKafkaAdminClient

from ledgerflow.config import Settings
from ledgerflow.errors import TopicsMissing
from ledgerflow.kafka.admin import ensure_topics
from ledgerflow.kafka.reference import ReferenceData
from ledgerflow.topics import MODELS_AUDIT, POLICY_RULES, TRAINING_AUDIT
from tests.integration.test_edge_topics_vanish import counted

WATCH_S = 3.0
MAX_LOG_RECORDS = 30
GUARD_S = 60.0


async def _delete(settings: Settings, names: list[str]) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap)
    await admin.start()
    try:
        await admin.delete_topics(names)
        deadline = time.monotonic() + GUARD_S
        while set(names) & set(await admin.list_topics()):
            assert time.monotonic() < deadline, "the topics were not deleted"
            await asyncio.sleep(0.2)
    finally:
        await admin.close()


def test_deleted_reference_topics_are_dropped_without_a_flood_and_read_again_when_back(
    settings: Settings,
) -> None:
    names = [settings.topic(b) for b in (POLICY_RULES, TRAINING_AUDIT, MODELS_AUDIT)]

    async def scenario() -> TopicsMissing | None:
        reference = ReferenceData(settings)
        reference.reattach_backoff = (0.5, 1.0)
        await reference.start()
        try:
            with counted() as seen:
                await _delete(settings, names)
                await asyncio.sleep(WATCH_S)
            flood = [f"{r.name}: {r.getMessage()}"[:160] for r in seen.records]
            assert len(flood) <= MAX_LOG_RECORDS, f"{len(flood)} log records in {WATCH_S:g} s: {flood[:6]}"
            refused = None
            try:
                await asyncio.wait_for(reference.sync(), GUARD_S)
            except TopicsMissing as exc:
                refused = exc
            await ensure_topics(settings)
            deadline = time.monotonic() + GUARD_S
            while True:
                try:
                    await asyncio.wait_for(reference.sync(), GUARD_S)
                    break
                except TopicsMissing:
                    assert time.monotonic() < deadline, "the reader did not read the topics again"
                    await asyncio.sleep(0.5)
            assert reference._consumer is not None
            assert {tp.topic for tp in reference._consumer.assignment()} == set(names)
            return refused
        finally:
            await reference.stop()

    refused = asyncio.run(scenario())
    assert refused is not None and settings.topic(POLICY_RULES) in str(refused), refused
