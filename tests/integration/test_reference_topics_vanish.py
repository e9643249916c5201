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
import uuid
from typing import Any

from aiokafka.admin import AIOKafkaAdminClient

from ledgerflow.auth.devkeys import ensure_policy_keys
from ledgerflow.config import Settings
from ledgerflow.errors import TopicsMissing
from ledgerflow.kafka.admin import ensure_topics
from ledgerflow.kafka.reference import ReferenceData, builtin_default_pack
from ledgerflow.rulepacks import publish_pack
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


def test_a_recreated_policy_rules_topic_puts_its_own_packs_in_force(settings: Settings) -> None:
    """Once policy.rules exists again it is a new log, read afresh: its packs are the ones in force.
    The reader kept the deleted log's packs, and a tenant's pack published on the new log (version 1
    again) never replaced the deleted log's version 2, until the process restarted."""
    tenant = f"rc-{uuid.uuid4().hex[:8]}"
    ensure_policy_keys(settings.state_dir)
    name = settings.topic(POLICY_RULES)

    def document(description: str) -> dict[str, Any]:
        doc = builtin_default_pack().document()
        doc.pop("version", None)
        return {**doc, "tenant": tenant, "description": description}

    async def scenario() -> tuple[int | None, str, str]:
        reference = ReferenceData(settings)
        reference.reattach_backoff = (0.5, 1.0)
        await reference.start()
        try:
            await publish_pack(settings, document("old v1"), producer_name="test")
            await publish_pack(settings, document("old v2"), producer_name="test")
            await asyncio.wait_for(reference.sync(), GUARD_S)
            assert reference.pack_for(tenant).version == 2
            await _delete(settings, [name])
            deadline = time.monotonic() + GUARD_S
            while not reference._missing:
                assert time.monotonic() < deadline, "the reader did not see the topic go"
                await asyncio.sleep(0.2)
            await ensure_topics(settings)
            while True:
                try:
                    await asyncio.wait_for(reference.sync(), GUARD_S)
                    break
                except TopicsMissing:
                    assert time.monotonic() < deadline, "the reader did not read the topic again"
                    await asyncio.sleep(0.5)
            new = await publish_pack(settings, document("new v1"), producer_name="test")
            await asyncio.wait_for(reference.sync(), GUARD_S)
            in_force = reference.pack_for(tenant)
            return in_force.version, in_force.constitution_hash, new.constitution_hash
        finally:
            await reference.stop()

    version, in_force, published = asyncio.run(scenario())
    assert (version, in_force) == (1, published), "the deleted log's pack is still in force"
