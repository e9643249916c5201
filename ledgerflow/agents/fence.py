"""A member of the hot path's group proves it still owns a partition before it claims it.

A worker starved (or SIGSTOPped) past the group's session timeout while it holds a decided
batch is expelled; the new owner of its partitions recovers from the output log and decides
the same records again. When the old member wakes it must not write its batch as well
(duplicate decisions, forked hash chains). The broker fences it: the new owner ``claim``s the
output partition before it reads it back, which bumps the partition's transactional
producer epoch; from then on the old member's producer is refused (``ProducerFenced``), and
whatever it appended before the claim lies below what the new owner read, so the new owner
takes it as decided (``kafka/fenced.py``; docs/architecture.md, "Fencing a zombie writer").
A woken member's write therefore either lands before the claim and is read back, or is refused.

What the fence cannot tell is who should hold it: a member woken after its expulsion that
recovered a partition again would claim it and fence the new owner. So a ``claim`` is proven
first: one synchronous offset commit of offsets this member already handled
(``proof_offsets``), which the group coordinator refuses (aiokafka's ``CommitFailedError``)
once the member was expelled or a rebalance is under way. A member that is not current raises
``NotCurrent``: nothing of the batch is written, the batch is not advanced (its records are
redelivered to whoever owns them), and the revocation that follows runs as usual. Writes are
not proven one by one — the claim's epoch already guards them — which saves the hot path a
commit round trip (and a write to the broker's offsets log) per batch.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from typing import Any

from ledgerflow.agents.output import Outgoing, Written
from ledgerflow.agents.ports import OutputLog
from ledgerflow.errors import InfrastructureError

Partition = tuple[str, int]  # (topic, partition), as in agents/batching.py
Prove = Callable[[set[Partition]], Awaitable[None]]
"""Raises ``NotCurrent`` unless this member still owns those partitions (``BatchLoop.prove``)."""


class NotCurrent(InfrastructureError):
    """This member is no longer current in its group: it must write nothing and wait for the revocation."""


def first_offsets(fetched: Mapping[Any, Sequence[Any]]) -> dict[Partition, int]:
    """Per partition, the first offset of a fetched batch: every record below it was handled
    (the loop handles one batch at a time) or is the group's committed position."""
    out: dict[Partition, int] = {}
    for records in fetched.values():
        for r in records:
            key = (r.topic, r.partition)
            out[key] = min(out.get(key, r.offset), r.offset)
    return out


def proof_offsets(
    partitions: set[Partition], in_flight: Mapping[Partition, int], pending: Mapping[Partition, int]
) -> dict[Partition, int | None]:
    """What the proving commit carries for each partition about to be claimed: the offsets the
    loop handled and not committed yet, else the first offset of the batch in flight (already
    the group's position), else None — the source re-commits its current position.

    Never an offset past a record not yet handled, so the proof never commits work not done."""
    return {p: pending.get(p, in_flight.get(p)) for p in sorted(partitions)}


class OutputWrapper:
    """An ``OutputLog`` (``agents/ports.py``) handing every call to ``inner``: the base of wrappers
    that change only how a write is made."""

    def __init__(self, inner: OutputLog) -> None:
        self._inner = inner

    @property
    def inner(self) -> OutputLog:
        return self._inner

    async def start(self) -> None:
        await self._inner.start()

    async def claim(self, partition: int) -> None:
        await self._inner.claim(partition)

    async def end(self, partition: int) -> int:
        return await self._inner.end(partition)

    def read(self, partition: int, start: int = 0, end: int | None = None) -> AsyncIterator[Written]:
        return self._inner.read(partition, start, end)

    async def write(self, records: Sequence[Outgoing]) -> list[int]:
        return await self._inner.write(records)

    async def close(self) -> None:
        await self._inner.close()


class FencedOutput(OutputWrapper):
    """An output log whose claims are proven first: input partition *p* of ``input_topic`` is
    written to output partition *p*, so *p* is what this member must still own."""

    def __init__(self, inner: OutputLog, input_topic: str, prove: Prove) -> None:
        super().__init__(inner)
        self.input_topic = input_topic
        self._prove = prove

    async def claim(self, partition: int) -> None:
        """Proven first: a member woken after its expulsion must not fence the partition's new owner."""
        await self._prove({(self.input_topic, partition)})
        await self._inner.claim(partition)
