"""The broker-side fence of the co-partitioned outputs (kafka/fenced.py), against a real broker.

An expelled owner's producer may still hold a batch it retries (its partition's leader moved)
and deliver it whenever the process wakes: no check the old owner makes before its send can
stop that. Here the old owner's writer is left exactly so — claimed, a transaction open, a
record written — while a new owner claims the partition; its next write is refused by the
broker and appends nothing, while everything it wrote before the claim is in what the new
owner reads back after claiming.
"""

from __future__ import annotations

import asyncio

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.errors import ProducerFenced

from ledgerflow.config import Settings
from ledgerflow.kafka.batches import Outbound
from ledgerflow.kafka.fenced import COMMIT_EVERY_S, FencedWriters, NotClaimed
from ledgerflow.topics import POLICY_DECISIONS


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def _writers(settings: Settings, clock: Clock | None = None) -> FencedWriters:
    def producer(transactional_id: str) -> AIOKafkaProducer:
        return AIOKafkaProducer(
            bootstrap_servers=settings.kafka_bootstrap,
            acks="all",
            enable_idempotence=True,
            transactional_id=transactional_id,
        )

    return FencedWriters(settings.topic(POLICY_DECISIONS), producer, clock or Clock())


async def _values(settings: Settings, partition: int) -> list[bytes]:
    """Every record of the partition, read uncommitted (as every ledgerflow reader does)."""
    consumer = AIOKafkaConsumer(bootstrap_servers=settings.kafka_bootstrap, enable_auto_commit=False)
    await consumer.start()
    try:
        tp = TopicPartition(settings.topic(POLICY_DECISIONS), partition)
        consumer.assign([tp])
        end = (await consumer.end_offsets([tp]))[tp]
        consumer.seek(tp, 0)
        values: list[bytes] = []
        while await consumer.position(tp) < end:
            batch = await consumer.getmany(tp, timeout_ms=1000)
            values += [r.value or b"" for r in batch.get(tp, [])]
        return values
    finally:
        await consumer.stop()


def _one(value: bytes) -> dict[int, list[Outbound]]:
    return {0: [Outbound(0, b"conv", value)]}


def test_an_old_owners_write_after_a_new_claim_is_refused_and_appends_nothing(settings: Settings) -> None:
    async def scenario() -> None:
        clock = Clock()
        old, new = _writers(settings), _writers(settings, clock)
        try:
            await old.claim(0)
            await old.write(_one(b"old-1"))  # its transaction stays open: not committed yet
            await new.claim(0)  # the epoch bump: the old owner's transaction is aborted, its writes refused
            assert await _values(settings, 0) == [b"old-1"], "its writes before the claim are read"
            with pytest.raises(ProducerFenced):
                await old.write(_one(b"old-2"))
            with pytest.raises(NotClaimed):  # its failed write released the partition: it must recover first
                await old.write(_one(b"old-3"))
            await new.write(_one(b"new-1"))
            await new.settle()  # nothing to commit yet: opened less than COMMIT_EVERY_S ago
            assert new.open() == {0}
            clock.now += COMMIT_EVERY_S
            await new.settle()
            assert new.open() == set()
            await new.write(_one(b"new-2"))  # a fresh transaction after the commit
            assert await _values(settings, 0) == [b"old-1", b"new-1", b"new-2"]
        finally:
            await old.stop()
            await new.stop()

    asyncio.run(scenario())


def test_a_process_reclaiming_its_own_partition_fences_its_earlier_producer(settings: Settings) -> None:
    async def scenario() -> None:
        writers = _writers(settings)
        try:
            await writers.claim(1)
            await writers.write({1: [Outbound(1, b"conv", b"first")]})
            await writers.claim(1)  # recovery after a failure: the old producer is dropped and fenced
            await writers.write({1: [Outbound(1, b"conv", b"second")]})
            assert await _values(settings, 1) == [b"first", b"second"]
        finally:
            await writers.stop()

    asyncio.run(scenario())
