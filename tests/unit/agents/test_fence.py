"""A member expelled from the hot path's group writes nothing twice (agents/fence.py): the batch
loop with the real policy agent on in-memory ports (tests/unit/agents/memory.py), each worker's
output fenced as the broker fences it (``memory.FencedWriter``: a claim supersedes every earlier
writer of the partition), and a record source whose group membership the test decides. The
Kafka side (a commit the coordinator refuses, a producer the broker fences) is tested with a
SIGSTOPped worker in tests/integration/test_zombie_fence.py."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pytest

from ledgerflow.agents.app import handle_until_done
from ledgerflow.agents.batching import Partition, Route
from ledgerflow.agents.batchloop import BatchLoop
from ledgerflow.agents.fence import FencedOutput, NotCurrent, first_offsets, proof_offsets
from ledgerflow.agents.policy import PolicyAgent, Ports
from ledgerflow.config import Settings
from ledgerflow.contracts.payloads import PolicyDecision
from tests.unit.agents import memory
from tests.unit.agents.memory import (
    TOPIC,
    FencedWriter,
    HeadStore,
    InputTopic,
    OutputTopic,
    Record,
    chained,
    turn,
)

SETTINGS = Settings(state_dir=Path("/nonexistent"))
P0: Partition = (TOPIC, 0)


class GroupSource:
    """Batches to hand out; ``member`` says whether the group still counts this member as current."""

    def __init__(self, *batches: Sequence[Record]) -> None:
        self.batches = [list(b) for b in batches]
        self.member = True
        self.proofs: list[dict[Partition, int | None]] = []
        self.commits: list[dict[Partition, int]] = []

    def deliver(self, batch: Sequence[Record]) -> None:
        self.batches.append(list(batch))

    async def getmany(self, max_records: int, timeout_ms: int) -> Mapping[Any, Sequence[Record]]:
        out: dict[Partition, list[Record]] = {}
        for r in self.batches.pop(0) if self.batches else []:
            out.setdefault((r.topic, r.partition), []).append(r)
        return out

    async def commit(self, offsets: Mapping[Partition, int]) -> None:
        if not self.member:
            raise RuntimeError("CommitFailedError: the group has already rebalanced")
        self.commits.append(dict(offsets))

    async def current(self, offsets: Mapping[Partition, int | None]) -> bool:
        self.proofs.append(dict(offsets))
        return self.member


class Worker:
    """One worker's batch loop running the policy agent (wired as ``policy.register`` does) over
    ``source``, writing to the shared ``output`` through the fence."""

    def __init__(
        self, source: GroupSource, inputs: InputTopic, output: OutputTopic, heads: HeadStore
    ) -> None:
        self.loop = BatchLoop(source, [], commit_every_s=3600)
        self.writer = FencedWriter(output)
        fenced = FencedOutput(self.writer, TOPIC, self.loop.prove)
        self.agent = PolicyAgent(SETTINGS, Ports(heads, fenced, inputs, memory.Reference(), memory.Letters()))

        async def handle(records: list[Any]) -> None:
            await handle_until_done(
                records,
                name="policy",
                lock=None,
                owned=list,
                handle=self.agent.handle,
                forget=self.agent.revoke,
            )

        self.loop.add(Route("policy", frozenset({TOPIC}), handle))

    async def step(self) -> int:
        # A refused member that retried its batch would never return: bounded so the test fails instead.
        return await asyncio.wait_for(self.loop.step(), timeout=10)


def _decided(output: OutputTopic, partition: int = 0) -> list[str]:
    out = []
    for d in output.decisions(partition):
        assert isinstance(d.payload, PolicyDecision)
        out.append(d.payload.input_event_id)
    return out


def test_an_expelled_member_writes_nothing_does_not_advance_and_its_loop_goes_on() -> None:
    asyncio.run(_an_expelled_member_writes_nothing_does_not_advance_and_its_loop_goes_on())


async def _an_expelled_member_writes_nothing_does_not_advance_and_its_loop_goes_on() -> None:
    inputs, output = InputTopic(), OutputTopic()
    batch = [inputs.add(0, turn("conv-a", n)) for n in (1, 2, 3)]
    source = GroupSource(batch)
    worker = Worker(source, inputs, output, HeadStore())
    source.member = False
    assert await worker.step() == 3  # the loop survives the refusal
    assert output.partitions == {}, "an expelled member wrote its batch"
    assert worker.loop.pending == {} and source.commits == []  # not advanced: redelivered to the owner
    assert worker.agent.recovered == set()  # what it staged is forgotten: recovered from the log again
    assert source.proofs == [{P0: 0}]  # it proved with the offsets below the batch, nothing not handled
    # The revocation follows; the group gives the partition back and the batch is redelivered.
    await worker.loop.revoked({P0})
    await worker.loop.assigned({P0})
    source.member = True
    source.deliver(batch)
    assert await worker.step() == 3
    assert _decided(output) == [turn("conv-a", n).event_id for n in (1, 2, 3)]
    assert worker.loop.pending == {P0: 3}


def test_a_zombie_woken_after_the_new_owner_decided_its_batch_writes_nothing() -> None:
    asyncio.run(_a_zombie_woken_after_the_new_owner_decided_its_batch_writes_nothing())


async def _a_zombie_woken_after_the_new_owner_decided_its_batch_writes_nothing() -> None:
    inputs, output, heads = InputTopic(), OutputTopic(), HeadStore()
    earlier = [inputs.add(0, turn("conv-a", 1)), inputs.add(0, turn("conv-b", 1))]
    batch = [inputs.add(0, turn("conv-a", n)) for n in (2, 3)] + [inputs.add(0, turn("conv-b", 2))]
    zombie_source = GroupSource(earlier, batch)
    zombie = Worker(zombie_source, inputs, output, heads)
    assert await zombie.step() == 2
    owner_source = GroupSource(batch)
    owner = Worker(owner_source, inputs, output, heads)

    async def expelled_meanwhile() -> None:
        """The zombie decided its batch and stalled past the session timeout before writing it:
        the group expelled it and the new owner claimed the partition, recovered the log and
        decided the same turns."""
        zombie_source.member = False
        assert await owner.step() == 3

    zombie.writer.before_write = expelled_meanwhile
    assert await zombie.step() == 3  # refused by the fence, then its claim by the group: the loop goes on
    want = [t.event_id for t in (turn("conv-a", 1), turn("conv-b", 1))]
    want += [turn("conv-a", n).event_id for n in (2, 3)] + [turn("conv-b", 2).event_id]
    assert _decided(output) == want, "a turn was decided twice (or lost)"
    assert chained(output.decisions(0), lambda d: d.subject)
    assert zombie.loop.pending == {P0: 2}  # only the batch it wrote before
    # the claim of P0 at its first recovery; then, its write fenced, the claim of the retry's
    # recovery with the offsets it had handled (not the undecided batch's): refused
    assert zombie_source.proofs == [{P0: 0}, {P0: 2}]


def test_a_zombie_that_writes_before_anyone_claimed_its_partition_is_read_back_by_the_new_owner() -> None:
    asyncio.run(_a_zombie_that_writes_before_anyone_claimed_its_partition_is_read_back_by_the_new_owner())


async def _a_zombie_that_writes_before_anyone_claimed_its_partition_is_read_back_by_the_new_owner() -> None:
    """Expelled, but woken before the new owner's claim: its write lands (writes are not proven
    one by one), and the new owner, claiming then reading the log, takes those turns as decided."""
    inputs, output, heads = InputTopic(), OutputTopic(), HeadStore()
    batch = [inputs.add(0, turn("conv-a", n)) for n in (1, 2)] + [inputs.add(0, turn("conv-b", 1))]
    zombie_source = GroupSource(batch[:1], batch[1:])
    zombie = Worker(zombie_source, inputs, output, heads)
    assert await zombie.step() == 1
    zombie_source.member = False  # expelled; nobody has claimed P0 yet
    assert await zombie.step() == 2
    owner_source = GroupSource(batch)  # the group hands the whole range to the new owner
    owner = Worker(owner_source, inputs, output, heads)
    assert await owner.step() == 3
    assert _decided(output) == [t.event_id for t in (turn("conv-a", 1), turn("conv-a", 2), turn("conv-b", 1))]
    assert chained(output.decisions(0), lambda d: d.subject)
    assert owner.agent.recovered == {0} and owner_source.proofs == [{P0: 0}]


def test_a_member_proves_once_per_claim_never_per_written_batch() -> None:
    asyncio.run(_a_member_proves_once_per_claim_never_per_written_batch())


async def _a_member_proves_once_per_claim_never_per_written_batch() -> None:
    inputs, output = InputTopic(), OutputTopic()
    first = [inputs.add(0, turn("conv-a", n)) for n in (1, 2)] + [inputs.add(1, turn("conv-c", 1))]
    later = [inputs.add(0, turn("conv-a", 3))]
    source = GroupSource(first, later, first[:2])  # the third batch: a redelivery, all decided already
    worker = Worker(source, inputs, output, HeadStore())
    assert await worker.step() == 3
    assert await worker.step() == 1
    assert await worker.step() == 2
    # one commit per partition claimed at its recovery; none for the batches written after
    assert source.proofs == [{P0: 0}, {(TOPIC, 1): 0}]
    assert len(output.partitions[0]) == 3 and len(output.partitions[1]) == 1


def test_catch_up_outside_a_batch_is_fenced_too() -> None:
    asyncio.run(_catch_up_outside_a_batch_is_fenced_too())


async def _catch_up_outside_a_batch_is_fenced_too() -> None:
    inputs, output = InputTopic(), OutputTopic()
    inputs.add(1, turn("conv-b", 1))
    source = GroupSource()
    worker = Worker(source, inputs, output, HeadStore())
    source.member = False
    with pytest.raises(NotCurrent):
        await worker.agent.catch_up({1: 1}, assigned={1})
    assert output.partitions == {} and worker.agent.recovered == set()
    assert source.proofs == [{(TOPIC, 1): None}]  # no batch: the source re-commits its position


def test_proof_offsets_never_pass_a_record_not_handled() -> None:
    fetched = {
        P0: [Record(TOPIC, 0, o, b"k", b"v") for o in (7, 8)],
        (TOPIC, 2): [Record(TOPIC, 2, 4, b"k", b"v")],
    }
    in_flight = first_offsets(fetched)
    assert in_flight == {P0: 7, (TOPIC, 2): 4}
    pending = {P0: 7, (TOPIC, 3): 9}  # handled, not committed yet
    got = proof_offsets({P0, (TOPIC, 2), (TOPIC, 5)}, in_flight, pending)
    assert got == {P0: 7, (TOPIC, 2): 4, (TOPIC, 5): None}


def test_a_refused_batch_is_not_advanced_for_the_other_agent_of_the_loop_either() -> None:
    asyncio.run(_a_refused_batch_is_not_advanced_for_the_other_agent_of_the_loop_either())


async def _a_refused_batch_is_not_advanced_for_the_other_agent_of_the_loop_either() -> None:
    inputs, output = InputTopic(), OutputTopic()
    batch = [inputs.add(0, turn("conv-a", 1)), inputs.add(1, turn("conv-b", 1))]
    source = GroupSource(batch, batch)
    worker = Worker(source, inputs, output, HeadStore())
    seen: list[int] = []

    async def projector(records: list[Any]) -> None:  # a second route on the same topic
        seen.append(len(records))

    worker.loop.add(Route("projector", frozenset({TOPIC}), projector))
    source.member = False
    assert await worker.step() == 2  # no ExceptionGroup out of the loop
    assert output.partitions == {} and worker.loop.pending == {}
    await worker.loop.revoked({P0, (TOPIC, 1)})
    await worker.loop.assigned({P0, (TOPIC, 1)})
    source.member = True
    assert await worker.step() == 2
    assert worker.loop.pending == {P0: 1, (TOPIC, 1): 1} and len(_decided(output, 1)) == 1
