"""The Kafka adapter behind ``ports.KeyedLog``: an output topic written by key (the usage
agent's ``usage.windows``, keyed by tenant) with an idempotent producer, read back in full."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence

from aiokafka import AIOKafkaProducer

from ledgerflow.config import Settings
from ledgerflow.kafka.batches import Outbound, partition_by_key, send_batches
from ledgerflow.kafka.logs import RawRecord, read_topic


class KafkaKeyedLog:
    def __init__(self, settings: Settings, topic: str) -> None:
        self._settings = settings
        self._topic = topic
        self._producer: AIOKafkaProducer | None = None

    async def start(self) -> None:
        if self._producer is None:
            producer = AIOKafkaProducer(
                bootstrap_servers=self._settings.kafka_bootstrap,
                acks="all",
                enable_idempotence=True,
                linger_ms=5,
            )
            await producer.start()
            self._producer = producer

    async def read(self) -> AsyncIterator[RawRecord]:
        async for raw in read_topic(self._settings, self._topic):
            yield raw

    async def write(self, records: Sequence[tuple[bytes, bytes]]) -> list[tuple[int, int]]:
        if not records:
            return []
        await self.start()
        assert self._producer is not None
        # The partitions ``send`` would choose by key; one batch per partition keeps each key's order.
        partitions = await partition_by_key(self._producer, self._topic, [key for key, _ in records])
        outbound = [Outbound(p, key, value) for p, (key, value) in zip(partitions, records, strict=True)]
        offsets = await send_batches(self._producer, self._topic, outbound)
        return list(zip(partitions, offsets, strict=True))
