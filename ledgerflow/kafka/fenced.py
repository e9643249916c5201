"""Writers that a new owner of a partition fences off: one transactional producer per output partition.

A worker stopped (SIGSTOP, a long GC-like stall) past its group's session timeout loses its
partitions; the new owner recovers from the output log and writes on. But the old worker's
producer may still hold a batch it was retrying (the partition's leader moved): the idempotent
producer retries it for ever, and when the old worker wakes the batch lands *after* the new
owner's records — one turn, two decisions. No check made by the old worker before its send can
stop a send already under way.

Kafka's producer epochs can. Each owned partition *p* has its own ``transactional_id``
(``<output topic>-<p>``: the output partition of a co-partitioned output, ``agents/output.py``;
the input partition whose windows a keyed output carries, ``agents/keyedlog.py``);
``claim(p)`` starts a producer with it and waits for its producer id,
which bumps the id's epoch and aborts any transaction the previous holder left open, writing
an abort marker into every partition it wrote. From then on the broker refuses every write of an older epoch
(``ProducerFenced``): the zombie's retried batch is rejected, never appended. Everything the
zombie appended before the fence lies below that marker, so the new owner, reading *p* after
``claim`` returns, sees it and does not decide those records again.

The transactions are the fence, not a visibility boundary: readers keep reading uncommitted (the
default), so a decision is visible as soon as it is acknowledged, and a record of a transaction
aborted by a fence is as real to every reader as to the new owner that read it during recovery.
An open transaction is committed about every ``COMMIT_EVERY_S`` (``settle``), which keeps it
far inside the broker's transaction timeout (60 s); the commit's markers take offsets in *p*, so
offsets of these topics are not contiguous.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from aiokafka import AIOKafkaProducer
from aiokafka.errors import ProducerFenced

from ledgerflow.errors import InfrastructureError
from ledgerflow.kafka.batches import Outbound, send_batches

log = logging.getLogger(__name__)

COMMIT_EVERY_S = 5.0  # each commit costs the next send ~25 ms (its markers); the timeout is 60 s
CLAIM_WAIT_S = 30.0  # a coordinator failing over answers within seconds; past this the caller retries
STOP_WAIT_S = 5.0
Factory = Callable[[str], AIOKafkaProducer]


def transactional_producers(bootstrap: str, **options: Any) -> Factory:
    """A ``Factory`` of idempotent, ``acks=all`` transactional producers (``options``: linger, batch size)."""

    def make(transactional_id: str) -> AIOKafkaProducer:
        return AIOKafkaProducer(
            bootstrap_servers=bootstrap,
            acks="all",
            enable_idempotence=True,
            transactional_id=transactional_id,
            **options,
        )

    return make


class NotClaimed(InfrastructureError):
    """A write to a partition this process has not claimed (or whose claim a failure dropped)."""


@dataclass
class _Writer:
    producer: AIOKafkaProducer
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    opened: float | None = None  # when the open transaction began; None: none open


class FencedWriters:
    """One fenced transactional producer per claimed partition of ``topic``."""

    def __init__(self, topic: str, factory: Factory, clock: Callable[[], float] = time.monotonic) -> None:
        self.topic = topic
        self._factory = factory
        self._clock = clock
        self._writers: dict[int, _Writer] = {}

    def transactional_id(self, partition: int) -> str:
        return f"{self.topic}-{partition}"

    async def claim(self, partition: int) -> None:
        """Fence every earlier writer of ``partition`` (this process's own earlier producer too)."""
        await self.release({partition})
        producer = self._factory(self.transactional_id(partition))
        try:
            await asyncio.wait_for(_started(producer), CLAIM_WAIT_S)
        except TimeoutError:
            await _stop(producer)
            raise InfrastructureError(
                f"{self.topic}[{partition}]: no transaction coordinator answered within {CLAIM_WAIT_S:.0f} s"
            ) from None
        except BaseException:
            await _stop(producer)
            raise
        self._writers[partition] = _Writer(producer, opened=self._clock())

    async def release(self, partitions: set[int]) -> None:
        """Drop the producers of ``partitions`` (revoked, or their write failed)."""
        for p in partitions:
            writer = self._writers.pop(p, None)
            if writer is not None:
                await _stop(writer.producer)

    async def write(self, by_partition: Mapping[int, Sequence[Outbound]]) -> dict[int, list[int]]:
        """Write each partition's records through its producer, concurrently; their offsets.

        A partition whose write fails is released: the caller recovers it (``claim`` first) before
        writing it again — its producer may be fenced, and the write may or may not have landed."""
        results = await asyncio.gather(
            *(self._write_one(p, records) for p, records in by_partition.items()), return_exceptions=True
        )
        failed = {p for p, r in zip(by_partition, results, strict=True) if isinstance(r, BaseException)}
        if failed:
            await self.release(failed)
            raise next(r for r in results if isinstance(r, BaseException))
        return {p: r for p, r in zip(by_partition, results, strict=True) if not isinstance(r, BaseException)}

    async def _write_one(self, partition: int, records: Sequence[Outbound]) -> list[int]:
        writer = self._writers.get(partition)
        if writer is None:
            raise NotClaimed(f"{self.topic}[{partition}] written before it was claimed; recovering it first")
        async with writer.lock:
            if writer.opened is None:
                await writer.producer.begin_transaction()
                writer.opened = self._clock()
            return await send_batches(writer.producer, self.topic, records)

    def open(self) -> set[int]:
        """Partitions whose writer has a transaction open."""
        return {p for p, writer in self._writers.items() if writer.opened is not None}

    async def settle(self) -> None:
        """Commit every transaction open for ``COMMIT_EVERY_S`` or more; a failure releases its partition."""
        now = self._clock()
        for p, writer in list(self._writers.items()):
            if writer.opened is None or now - writer.opened < COMMIT_EVERY_S:
                continue
            async with writer.lock:
                try:
                    await writer.producer.commit_transaction()
                    writer.opened = None
                    continue
                except ProducerFenced:  # the partition moved to another member (a rebalance): expected
                    log.info("%s[%d]: fenced by the partition's new owner; writer released", self.topic, p)
                except Exception as exc:  # the broker away: the next write recovers the partition
                    log.warning("%s[%d]: committing the writer's transaction failed (%r)", self.topic, p, exc)
                if self._writers.get(p) is writer:
                    await self.release({p})

    async def stop(self) -> None:
        """Commit what is open (a clean stop leaves no transaction to time out), then stop."""
        for p, writer in list(self._writers.items()):
            if writer.opened is not None:
                try:
                    await asyncio.wait_for(writer.producer.commit_transaction(), STOP_WAIT_S)
                except Exception as exc:  # its records are on the log either way; the next owner fences it
                    log.warning("%s[%d]: committing on stop failed (%r)", self.topic, p, exc)
        await self.release(set(self._writers))


async def settle_forever(writers: FencedWriters) -> None:
    """``writers.settle()`` every half ``COMMIT_EVERY_S``: the task an output runs while it is started."""
    while True:
        await asyncio.sleep(COMMIT_EVERY_S / 2)
        try:
            await writers.settle()
        except Exception as exc:  # settle logs per partition; this is a bug, not a fault: keep settling
            log.exception("settling %s failed (%r)", writers.topic, exc)


async def stop_settling(task: asyncio.Task[None] | None) -> None:
    if task is not None:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def _started(producer: AIOKafkaProducer) -> None:
    await producer.start()
    await producer.begin_transaction()  # waits for the producer id: the epoch bump, the fence


async def _stop(producer: AIOKafkaProducer) -> None:
    """Stop ``producer``, waiting at most ``STOP_WAIT_S``: a batch retried against an absent broker
    would hold ``stop`` for ever, and a dropped producer's batches are fenced anyway."""
    try:
        await asyncio.wait_for(producer.stop(), STOP_WAIT_S)
    except Exception as exc:
        log.warning("stopping a fenced producer: %r", exc)
