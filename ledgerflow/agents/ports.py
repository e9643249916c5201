"""The small ports an agent's logic runs against: what it reads and writes, not how.

The worker plugs in the Kafka and Redis adapters (``agents/output.py``, ``agents/snapshots.py``,
``agents/deadletters.py``, ``agents/keyedlog.py``, ``kafka/reference.py``), which keep their
integration tests against the real services; the unit tests plug in in-memory ports
(tests/unit/agents/) to test the agents' own decisions: redelivery, backfill, snapshots,
poison records, duplicates, revocation.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Mapping, Sequence
from collections.abc import Set as AbstractSet
from dataclasses import dataclass, field
from typing import Any, Protocol

from ledgerflow.agents.output import Outgoing, Written
from ledgerflow.contracts.chain import ChainHead
from ledgerflow.contracts.payloads import DeadLetter
from ledgerflow.policy import ModelCatalog, RulePack, TrainingState

__all__ = [
    "ChainHeadStore",
    "DeadLetterLog",
    "DeadLetterPort",
    "InputLog",
    "KeyedLog",
    "OutputLog",
    "ReferenceView",
    "Snapshot",
    "wall_clock_micros",
]


@dataclass
class Snapshot:
    """A cached account of one output partition: the chain heads up to ``out_offset`` and the
    highest input offset decided (``last_input``); -1 when nothing is known."""

    last_input: int = -1
    out_offset: int = -1
    heads: dict[str, ChainHead] = field(default_factory=dict)
    complete: bool = True
    """Whether ``heads`` holds every chain of the partition (a save of the chains changed since the
    last save is not: it completes a stored snapshot, never starts one)."""
    base: int = -1
    """For a save that is not ``complete``: the ``out_offset`` of the snapshot it completes (the one
    its owner loaded or last saved). Stored older than that, the snapshot went back in time (Redis
    restarted from an older dump, or failed over to a replica that lagged): a partial save onto it
    would leave chains it lost without heads under a newer ``out_offset``, so it is refused too."""


class ChainHeadStore(Protocol):
    """Where chain heads are cached between owners of a partition (a shortcut, never the truth)."""

    async def load(self, partition: int) -> Snapshot:
        """The cached snapshot of ``partition``; an empty one when there is none or the cache is down."""
        ...

    async def save(self, snapshots: Mapping[int, Snapshot]) -> set[int]:
        """Store each partition's offsets and the heads given (the touched chain keys), atomically;
        a partition whose stored snapshot covers a later output offset is left as it is. The
        partitions whose save is not ``complete`` and whose stored snapshot is gone (a flushed
        Redis) or older than the save's ``base`` (a Redis gone back in time): nothing is written for
        them (it would leave a snapshot missing heads); the caller saves every head."""
        ...

    async def drop(self, partition: int) -> None:
        """Forget ``partition``'s snapshot (its output topic was re-created: its offsets restart)."""
        ...


class OutputLog(Protocol):
    """The co-partitioned output topic: single writer per partition, readable back."""

    async def start(self) -> None: ...

    async def claim(self, partition: int) -> None:
        """Fence every earlier writer of ``partition``; called before the partition is read back."""
        ...

    async def end(self, partition: int) -> int:
        """The partition's end offset; raises ``LogNotReady`` if it reads shorter than already seen."""
        ...

    def read(self, partition: int, start: int = 0, end: int | None = None) -> AsyncIterator[Written]:
        """Records ``start <= offset < end`` (default: the end at call time), in order."""
        ...

    async def write(self, records: Sequence[Outgoing]) -> list[int]:
        """Write ``records`` in order and wait for every ack; their offsets."""
        ...

    async def close(self) -> None:
        """Stop for good (the worker is stopping): open writes committed, a later use raises."""
        ...


class InputLog(Protocol):
    """The input topic read back by range: what the consumer group passed before this owner."""

    async def read(self, partition: int, start: int, end: int) -> Sequence[Any]:
        """Records ``start <= offset < end`` of ``partition`` (``logs.RawRecord``-like)."""
        ...

    async def end(self, partition: int) -> int:
        """The partition's end offset (its high watermark): no record answers an input at or past it."""
        ...


class KeyedLog(Protocol):
    """An output topic partitioned by record key, not by input partition (usage windows, by
    tenant): read in full to learn what was written; written with every ack awaited."""

    async def start(self) -> None: ...

    async def claim(self, source: int) -> None:
        """Fence every earlier writer for input partition ``source``; called before the log is read back."""
        ...

    def read(self) -> AsyncIterator[Any]:
        """Every record up to the end at call time (``logs.RawRecord``-like: partition, offset, value)."""
        ...

    def placed(self, key: bytes | None, partition: int) -> bool:
        """Whether a record keyed ``key`` read from ``partition`` is where ``write`` puts that key
        (known once ``read`` began): one anywhere else was not written by the agent."""
        ...

    async def write(self, records: Sequence[tuple[int, bytes, bytes]]) -> list[tuple[int, int]]:
        """Write ``(source input partition, key, value)`` records, wait for every ack; each one's
        ``(partition, offset)``. A source not claimed is refused."""
        ...


class ReferenceView(Protocol):
    """The rule packs and training states every worker reads in full."""

    async def start(self) -> None: ...

    async def sync(self) -> None:
        """Wait until everything in the reference logs at call time has been applied."""
        ...

    def pack_for(self, tenant: str) -> RulePack: ...

    def training_for(self, tenant: str) -> TrainingState: ...

    def models_for(self, tenant: str) -> ModelCatalog: ...

    async def close(self) -> None:
        """Stop reading for good (the worker is stopping)."""
        ...


class DeadLetterPort(Protocol):
    """Where records an agent gives up on go: raises when they were not all acknowledged."""

    async def send_all(self, letters: Sequence[DeadLetter]) -> None: ...


class DeadLetterLog(DeadLetterPort, Protocol):
    """A dead-letter sink that can say what it already holds: an agent recovering a partition
    recognises the records it dead-lettered before (a command agent, ``agents/commanded.py``)."""

    async def dead_lettered(self, source_topic: str, partitions: AbstractSet[int]) -> dict[int, set[int]]:
        """The offsets of ``source_topic``'s records (full name) already dead-lettered, per partition
        of ``partitions``: everything acknowledged before the call."""
        ...


def wall_clock_micros() -> int:
    """Now in microseconds since the epoch: the agents' clock in a worker (unit tests pass their own)."""
    return time.time_ns() // 1000
