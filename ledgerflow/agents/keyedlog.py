"""The Kafka adapter behind ``ports.KeyedLog``: an output topic written by key (the usage
agent's ``usage.windows``, keyed by tenant), read back in full.

Each input partition *p* the agent owns writes through its own transactional producer
(``kafka/fenced.py``, id ``<topic>-<p>``): the agent ``claim``s *p* before it reads the log
back for *p*'s recovery, so a worker that lost *p* while a batch of its windows was still
being retried cannot append it after what the new owner read.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence

from aiokafka import AIOKafkaProducer

from ledgerflow.config import Settings
from ledgerflow.errors import InfrastructureError
from ledgerflow.kafka.admin import partition_counts
from ledgerflow.kafka.batches import Outbound, partition_by_key
from ledgerflow.kafka.fenced import FencedWriters, settle_forever, stop_settling, transactional_producers
from ledgerflow.kafka.logs import RawRecord, read_topic
from ledgerflow.kafka.placement import placement


class KafkaKeyedLog:
    def __init__(self, settings: Settings, topic: str) -> None:
        self._settings = settings
        self._topic = topic
        self._router: AIOKafkaProducer | None = None  # only asked which partition a key goes to
        self._writers: FencedWriters | None = None
        self._settler: asyncio.Task[None] | None = None
        self._closed = False
        self._partitions: int | None = None  # the topic's partition count, learnt by ``read``

    async def start(self) -> None:
        self._check_open()
        if self._router is None:
            router = AIOKafkaProducer(bootstrap_servers=self._settings.kafka_bootstrap)
            await router.start()
            self._router = router
            self._writers = FencedWriters(
                self._topic, transactional_producers(self._settings.kafka_bootstrap, linger_ms=5)
            )
            self._settler = asyncio.create_task(settle_forever(self._writers), name=f"settle {self._topic}")
            if self._closed:  # closed while starting: what this start opened is stopped too
                await self.stop()
                self._check_open()

    async def stop(self) -> None:
        await stop_settling(self._settler)
        if self._writers is not None:
            await self._writers.stop()
        if self._router is not None:
            await self._router.stop()
        self._router = self._writers = self._settler = None

    async def close(self) -> None:
        """Stop for good, when the worker stops (``agents/shutdown.py``): a later ``claim`` or
        ``write`` raises instead of starting the producers again."""
        self._closed = True
        await self.stop()

    def _check_open(self) -> None:
        if self._closed:
            raise InfrastructureError(f"{self._topic}: the keyed log is closed (the worker is stopping)")

    async def claim(self, source: int) -> None:
        await self.start()
        assert self._writers is not None
        writers = self._writers
        await writers.claim(source)
        if self._closed:  # closed while claiming: the producer this claim started is stopped too
            await writers.release({source})
            self._check_open()

    async def read(self) -> AsyncIterator[RawRecord]:
        self._partitions = (await partition_counts(self._settings, [self._topic]))[self._topic]
        async for raw in read_topic(self._settings, self._topic):
            yield raw

    def placed(self, key: bytes | None, partition: int) -> bool:
        """Kafka's default partitioner, which ``write`` uses (``batches.partition_by_key``), under the
        count ``read`` found (a worker stops if partitions are added: agents/layout.py)."""
        count = self._partitions
        return key is not None and count is not None and placement(key, count) == partition

    async def write(self, records: Sequence[tuple[int, bytes, bytes]]) -> list[tuple[int, int]]:
        if not records:
            return []
        await self.start()
        assert self._router is not None and self._writers is not None
        # The partitions ``send`` would choose by key; one batch per partition keeps each key's order.
        partitions = await partition_by_key(self._router, self._topic, [key for _, key, _ in records])
        by_source: dict[int, list[Outbound]] = {}
        for p, (source, key, value) in zip(partitions, records, strict=True):
            by_source.setdefault(source, []).append(Outbound(p, key, value))
        written = {s: iter(offsets) for s, offsets in (await self._writers.write(by_source)).items()}
        return [(p, next(written[source])) for p, (source, _, _) in zip(partitions, records, strict=True)]
