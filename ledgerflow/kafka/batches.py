"""Producing records as one record batch per partition (``create_batch``/``send_batch``).

``AIOKafkaProducer.send`` costs a future, an accumulator round and an await per record;
building each partition's records into one batch and submitting it once does the same
work once per batch. Records keep their order within a partition (batches of one
partition are submitted in order and the idempotent producer keeps them so), and every
ack is awaited before returning.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from aiokafka.partitioner import DefaultPartitioner

from ledgerflow.errors import InfrastructureError

_BY_KEY = DefaultPartitioner()  # what ``AIOKafkaProducer.send`` picks for a key (murmur2, as Java clients)


@dataclass(frozen=True, slots=True)
class Outbound:
    partition: int
    key: bytes | None
    value: bytes
    headers: Sequence[tuple[str, bytes]] = ()


async def send_batches(producer: Any, topic: str, records: Sequence[Outbound]) -> list[int]:
    """Produce ``records`` to ``topic`` and wait for every ack; their offsets, in order."""
    if not records:
        return []
    sent: list[tuple[asyncio.Future[Any], list[int]]] = []  # (ack, indexes into records)
    by_partition: dict[int, list[int]] = {}
    for i, r in enumerate(records):
        by_partition.setdefault(r.partition, []).append(i)
    for partition, indexes in by_partition.items():
        batch = producer.create_batch()
        members: list[int] = []
        for i in indexes:
            r = records[i]
            if batch.append(key=r.key, value=r.value, timestamp=None, headers=list(r.headers)) is None:
                sent.append((await producer.send_batch(batch, topic, partition=partition), members))
                batch, members = producer.create_batch(), []
                if batch.append(key=r.key, value=r.value, timestamp=None, headers=list(r.headers)) is None:
                    raise InfrastructureError(
                        f"a record of {len(r.value)} bytes does not fit a batch of {topic}"
                    )
            members.append(i)
        sent.append((await producer.send_batch(batch, topic, partition=partition), members))
    offsets = [0] * len(records)
    for meta, (_, members) in zip(await asyncio.gather(*(ack for ack, _ in sent)), sent, strict=True):
        for n, i in enumerate(members):
            offsets[i] = meta.offset + n
    return offsets


async def partition_by_key(producer: Any, topic: str, keys: Sequence[bytes]) -> list[int]:
    """The partition ``producer.send(topic, key=k)`` would choose for each key."""
    partitions = sorted(await producer.partitions_for(topic))
    return [_BY_KEY(key, partitions, partitions) for key in keys]
