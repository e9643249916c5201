"""Records the consumer group has already passed are still decided and projected.

faust-streaming acks a ``take_events`` batch in a ``finally``, also when the agent is
cancelled mid-batch, and a new agent joins a group at the group's committed offsets. Both
leave committed offsets beyond records an agent never handled; the agents close the gap
from their own output (policy) or checkpoint (projector).
"""

from __future__ import annotations

import asyncio
import random
import time

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.structs import OffsetAndMetadata

from ledgerflow.config import Settings
from ledgerflow.contracts import codec
from ledgerflow.kafka.admin import partition_counts
from ledgerflow.kafka.logs import read_all
from ledgerflow.projections.keys import Keys
from ledgerflow.redisclient import sync_client
from ledgerflow.traffic import interleaved, publish
from tests.support.processes import start
from tests.support.rediscluster import set_guard_now


async def _commit_to_end(settings: Settings, group: str, topics: list[str]) -> None:
    counts = await partition_counts(settings, topics)
    consumer = AIOKafkaConsumer(
        bootstrap_servers=settings.kafka_bootstrap, group_id=group, enable_auto_commit=False
    )
    await consumer.start()
    try:
        tps = [TopicPartition(t, p) for t, n in counts.items() for p in range(n)]
        consumer.assign(tps)
        ends = await consumer.end_offsets(tps)
        await consumer.commit({tp: OffsetAndMetadata(end, "") for tp, end in ends.items()})
    finally:
        await consumer.stop()


def test_records_behind_the_committed_offsets_are_decided_and_projected(settings: Settings, log_dir) -> None:
    events = list(interleaved(random.Random(9), ["acme"], 40, time.time_ns() // 1000, run_id="gap"))
    asyncio.run(publish(settings, iter(events), progress_every_s=0))
    turns = {e.event_id for e in events if e.type == "MessageSubmitted"}
    group = settings.topic_prefix + "ledgerflow-worker"
    asyncio.run(_commit_to_end(settings, group, [settings.topic("conversation.events")]))
    keys = Keys.for_prefix(settings.topic_prefix)
    client = sync_client(settings.redis_url)
    set_guard_now(client, keys.sentinel(), "complete")  # so only the gap logic can bring the records in
    worker = start(settings, "worker", "worker", "--agents", "policy,projector", log_dir=log_dir)
    try:
        asyncio.run(
            publish(
                settings,
                iter(interleaved(random.Random(10), ["acme"], 2, time.time_ns() // 1000, run_id="late")),
                progress_every_s=0,
            )
        )
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            decided = {
                codec.decode(r.value).payload.input_event_id
                for r in asyncio.run(read_all(settings, settings.topic("policy.decisions")))
            }
            projected = sum(
                int(client.hget(keys.conversation("acme", c), "turns") or 0)
                for c in {e.subject for e in events}
            )
            if turns <= decided and projected == len(turns):
                break
            time.sleep(1.0)
        else:
            raise AssertionError(
                f"decided {len(turns & decided)}/{len(turns)}, projected {projected}\n{worker.log_tail()}"
            )
    finally:
        worker.stop()
