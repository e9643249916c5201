"""A worker whose consumer groups lost their committed offsets while it was stopped (the groups
deleted, or their offsets expired) charges each turn once, on the real stack. Before, the restarted
usage agent was handed its partitions from offset 0 again, re-folded below that first delivery
(nothing), then folded every old turn as a new one: each was past the written windows' watermark, so
each became a ``LateUsage`` delta and every window was charged twice (found by a probe of a live
stack: all of a tenant's windows doubled in the read model, the audit clean)."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.protocol.admin import DeleteGroupsRequest

from ledgerflow.config import Settings
from tests.integration.test_usage_lateness_change import S, charged, publish, records, turn, wait_for, worker


async def delete_groups(settings: Settings) -> list[str]:
    """Delete every consumer group of this test's topic prefix (the worker must be stopped)."""
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap)
    await admin.start()
    try:
        groups = [g[0] for g in await admin.list_consumer_groups() if g[0].startswith(settings.topic_prefix)]
        for group in groups:  # aiokafka's admin has no DeleteGroups call: the request, to its coordinator
            response = await admin._send_request_to_node(
                await admin.find_coordinator(group), DeleteGroupsRequest([group])
            )
            assert [code for _, code in response.results] == [0], response
        return groups
    finally:
        await admin.close()


def test_turns_delivered_again_after_the_groups_lost_their_offsets_are_charged_once(
    settings: Settings, log_dir: Path
) -> None:
    now = time.time_ns() // 1000 // S * S
    conv = "conv-groups-lost"
    sent = {now - 20 * S: 5 + 6, now - 15 * S: 7}
    first = worker(settings, log_dir, "worker-usage-1", 0)
    try:
        publish(
            settings,
            turn(conv, now - 20 * S, 5),
            turn(conv, now - 20 * S + 1, 6),
            turn(conv, now - 15 * S, 7),
        )
        wait_for(settings, first, lambda w: charged(w) == sent, "windows not written")
    finally:
        assert first.stop() == 0
    assert len(asyncio.run(delete_groups(settings))) >= 1
    second = worker(settings, log_dir, "worker-usage-2", 0)
    try:
        publish(settings, turn(conv, now - 10 * S, 11))
        sent[now - 10 * S] = 11
        wait_for(settings, second, lambda w: (now - 10 * S) in charged(w), "the new window not written")
        time.sleep(2)  # whatever else the restart writes
        written = records(settings)
    finally:
        assert second.stop() == 0
    assert charged(written) == sent, [(r.payload, r.event_id) for r in written]
