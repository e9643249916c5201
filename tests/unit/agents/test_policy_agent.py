"""The policy agent's own decisions, through in-memory ports (tests/unit/agents/memory.py):
redelivery below the decided offset, backfill of what the group passed, snapshot staleness,
poison records, revocation mid-batch. The Kafka and Redis adapters behind the same ports are
integration-tested (test_governance, test_crash, test_passed_offsets, test_poison_records)."""

from __future__ import annotations

import asyncio
import dataclasses
import itertools
import uuid
from pathlib import Path

import pytest

from ledgerflow.agents.output import LogNotReady
from ledgerflow.agents.policy import SNAPSHOT_EVERY_S, PolicyAgent, Ports
from ledgerflow.agents.ports import Snapshot
from ledgerflow.config import Settings
from ledgerflow.contracts import codec
from ledgerflow.contracts.chain import ChainHead
from ledgerflow.contracts.events import Event
from ledgerflow.contracts.payloads import PolicyDecision
from tests.unit.agents.memory import (
    HeadStore,
    InputTopic,
    Letters,
    OutputTopic,
    Record,
    Reference,
    chained,
    retry_after_failed_write,
    turn,
)

SETTINGS = Settings(state_dir=Path("/nonexistent"))


def _conversation(decision: Event) -> str:
    """Decisions chain per conversation (the tests' turns are all of one tenant)."""
    return decision.subject


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class World:
    """One policy agent wired to in-memory ports."""

    def __init__(self) -> None:
        self.inputs, self.output, self.heads = InputTopic(), OutputTopic(), HeadStore()
        self.reference, self.letters, self.clock = Reference(), Letters(), Clock()
        self.agent = self.new_agent()

    def new_agent(self) -> PolicyAgent:
        """A fresh owner (another worker, or this one after a restart) on the same logs."""
        ports = Ports(self.heads, self.output, self.inputs, self.reference, self.letters)
        return PolicyAgent(SETTINGS, ports, clock=self.clock)

    def handle(self, records: list[Record]) -> None:
        asyncio.run(self.agent.handle(records))

    def decided(self, partition: int = 0) -> list[str]:
        """The input event ids decided into ``partition``, in log order."""
        return [_payload(d).input_event_id for d in self.output.decisions(partition)]


def _payload(decision: Event) -> PolicyDecision:
    assert isinstance(decision.payload, PolicyDecision)
    return decision.payload


def test_every_turn_is_decided_once_in_order_with_one_chain_per_conversation() -> None:
    world = World()
    turns = [turn("conv-a", 1), turn("conv-b", 1), turn("conv-a", 2)]
    world.handle([world.inputs.add(0, t) for t in turns])
    assert world.decided() == [t.event_id for t in turns]
    assert chained(world.output.decisions(0), _conversation)
    assert [w.input_offset for w in world.output.partitions[0]] == [0, 1, 2]


def test_a_new_owner_claims_each_partition_before_it_reads_it_back() -> None:
    """The claim fences earlier writers (kafka/fenced.py): read first, and a batch an expelled
    owner still had in flight could land after what was read."""
    world = World()
    world.handle([world.inputs.add(0, turn("conv-a", 1)), world.inputs.add(1, turn("conv-b", 1))])
    assert world.output.calls == [("claim", 0), ("end", 0), ("claim", 1), ("end", 1)]
    world.handle([world.inputs.add(0, turn("conv-a", 2))])
    assert len(world.output.calls) == 4, "a partition already recovered is not claimed again"


def test_a_redelivered_batch_below_the_decided_offset_is_not_decided_again() -> None:
    world = World()
    batch = [world.inputs.add(0, turn("conv-a", n)) for n in range(1, 4)]
    world.handle(batch)
    world.handle(batch)  # faust redelivers (the ack was lost)
    assert len(world.output.partitions[0]) == 3
    # A new owner learns the decided offset from the output log itself, not from memory.
    world.heads.snapshots.clear()
    world.agent = world.new_agent()
    world.handle([*batch, world.inputs.add(0, turn("conv-a", 4))])
    assert world.decided() == [turn("conv-a", n).event_id for n in range(1, 5)]
    assert chained(world.output.decisions(0), _conversation)


def test_records_the_group_passed_before_this_owner_are_read_back_and_decided_first() -> None:
    world = World()
    passed = [world.inputs.add(0, turn("conv-a", n)) for n in range(1, 4)]  # never decided
    delivered = world.inputs.add(0, turn("conv-a", 4))  # the group's committed offset is 3
    world.handle([delivered])
    assert world.inputs.reads == [(0, 0, 3)]
    assert world.decided() == [turn("conv-a", n).event_id for n in range(1, 5)]
    assert chained(world.output.decisions(0), _conversation) and passed


def test_catch_up_decides_a_passed_partition_that_gets_no_new_traffic() -> None:
    world = World()
    world.inputs.add(1, turn("conv-b", 1))
    world.inputs.add(1, turn("conv-b", 2))
    asyncio.run(world.agent.catch_up({1: 2}, assigned={1}))
    assert world.decided(1) == [turn("conv-b", 1).event_id, turn("conv-b", 2).event_id]
    assert world.agent.recovered == {1}


def test_a_stale_snapshot_is_rolled_forward_from_the_log() -> None:
    world = World()
    world.handle([world.inputs.add(0, turn("conv-a", 1))])  # saved at once: the first save
    world.clock.now += SNAPSHOT_EVERY_S / 10
    world.handle([world.inputs.add(0, turn("conv-a", n)) for n in (2, 3)])  # not saved yet
    assert world.heads.snapshots[0].last_input == 0, "the snapshot is at most once a second"
    world.agent = world.new_agent()  # the worker restarts with the stale snapshot
    world.handle([world.inputs.add(0, turn("conv-a", 4))])
    decisions = world.output.decisions(0)
    assert [d.sequence for d in decisions] == [1, 2, 3, 4] and chained(decisions, _conversation)
    world.clock.now += SNAPSHOT_EVERY_S
    world.handle([world.inputs.add(0, turn("conv-a", 5))])
    snap = world.heads.snapshots[0]
    assert (snap.last_input, snap.out_offset, snap.heads["acme/conv-a"].sequence) == (4, 4, 5)


def test_a_snapshot_ahead_of_the_log_is_waited_for_never_taken_for_a_short_log() -> None:
    world = World()
    world.heads.snapshots[0] = Snapshot(7, 3, {"conv-a": ChainHead("conv-a", 4, "ab" * 32)})
    with pytest.raises(LogNotReady, match="not readable to its end yet"):
        world.handle([world.inputs.add(0, turn("conv-a", 1))])
    assert world.output.partitions == {} and world.agent.recovered == set()


def test_a_poison_record_is_dead_lettered_and_the_rest_of_the_batch_decided() -> None:
    world = World()
    good = world.inputs.add(0, turn("conv-a", 1))
    garbage = world.inputs.append(0, b"\xc3\x01garbage", b"conv-a")
    too_large = world.inputs.append(0, b"x" * (256 * 1024 + 1), b"conv-a")
    wrong_key = world.inputs.append(0, codec.encode(turn("conv-a", 9)), b"conv-z")
    later = world.inputs.add(0, turn("conv-a", 2))
    world.handle([good, garbage, too_large, wrong_key, later])
    assert world.decided() == [turn("conv-a", n).event_id for n in (1, 2)]
    codes = [(d.offset, d.reason_code) for d in world.letters.sent]
    assert codes == [(1, "truncated"), (2, "record-too-large"), (3, "invalid-envelope")], codes
    sizes = [d.value_size for d in world.letters.sent]
    assert sizes == [len(r.value or b"") for r in (garbage, too_large, wrong_key)]
    assert chained(world.output.decisions(0), _conversation)


def test_a_duplicate_delivery_of_the_same_event_is_decided_once() -> None:
    world = World()
    t = turn("conv-a", 1)
    world.handle([world.inputs.add(0, t), world.inputs.add(0, t)])
    world.handle([world.inputs.add(0, t)])
    assert world.decided() == [t.event_id]


def test_a_failed_write_stages_nothing_and_the_retry_after_revocation_decides_each_turn_once() -> None:
    world = World()
    world.handle([world.inputs.add(0, turn("conv-a", 1))])
    batch = [world.inputs.add(0, turn("conv-a", n)) for n in (2, 3)]
    retry_after_failed_write(world.output, world.handle, world.agent.revoke, batch)
    assert world.decided() == [turn("conv-a", n).event_id for n in (1, 2, 3)]
    assert chained(world.output.decisions(0), _conversation)


def test_a_partition_revoked_mid_batch_keeps_no_state_and_its_next_owner_continues_the_chain() -> None:
    world = World()
    batch = [world.inputs.add(0, turn("conv-a", 1)), world.inputs.add(2, turn("conv-c", 1))]
    world.output.on_write = lambda: world.agent.revoke({2})  # a rebalance while the batch is written
    world.handle(batch)
    world.output.on_write = None
    assert world.agent.recovered == {0}
    assert set(world.heads.snapshots) == {0}, "the old owner snapshots nothing of a partition it lost"
    other = world.new_agent()  # the new owner gets the batch of partition 2 again, then more
    asyncio.run(other.handle([batch[1], world.inputs.add(2, turn("conv-c", 2))]))
    assert world.decided(2) == [turn("conv-c", n).event_id for n in (1, 2)]
    assert chained(world.output.decisions(2), _conversation)


def _tenant_turn(tenant: str, n: int) -> Event:
    """A turn of ``tenant`` in conversation ``c-2`` (event ids differ per tenant)."""
    t = turn("c-2", n, tenant=tenant)
    return dataclasses.replace(t, event_id=str(uuid.uuid5(uuid.NAMESPACE_URL, f"{tenant}/c-2/{n}")))


def _sequences(world: World) -> dict[str, list[int | None]]:
    found: dict[str, list[int | None]] = {}
    for d in world.output.decisions(0):
        found.setdefault(d.tenant, []).append(d.sequence)
    return found


def test_two_tenants_sharing_a_conversation_id_get_one_chain_each_also_after_recovery() -> None:
    world = World()
    world.handle([world.inputs.add(0, _tenant_turn(t, n)) for n in (1, 2) for t in ("acme", "globex")])
    assert _sequences(world) == {"acme": [1, 2], "globex": [1, 2]}
    world.heads.snapshots.clear()  # a new owner with no snapshot: the heads come from the log
    world.agent = world.new_agent()
    world.handle([world.inputs.add(0, _tenant_turn(t, 3)) for t in ("globex", "acme")])
    assert _sequences(world) == {"acme": [1, 2, 3], "globex": [1, 2, 3]}
    for tenant in ("acme", "globex"):
        chain = [d for d in world.output.decisions(0) if d.tenant == tenant]
        assert all(b.prev_hash == a.hash for a, b in itertools.pairwise(chain))


class StaleEnd(InputTopic):
    """An input topic whose end offset reads behind what it holds (a new partition leader whose
    high watermark has not caught up yet): ``stale`` records short."""

    def __init__(self, stale: int) -> None:
        super().__init__()
        self.stale = stale

    async def end(self, partition: int) -> int:
        return max(0, len(self.partitions.get(partition, [])) - self.stale)


def test_a_redelivered_turn_is_not_decided_again_when_the_input_end_reads_short() -> None:
    """The batch itself proves the partition holds its last record: recovery trusts decisions
    answering any offset up to it, whatever the broker's end offset says. Bounded by the batch's
    first offset instead, the decision of the redelivered turn itself was skipped as beyond the
    input, and the turn decided a second time."""
    world = World()
    world.inputs = StaleEnd(stale=2)
    world.agent = world.new_agent()
    batch = [world.inputs.add(0, turn("conv-a", n)) for n in range(1, 4)]
    world.handle(batch)
    assert len(world.output.partitions[0]) == 3
    # A new owner gets the last two turns again (the group had committed offset 1).
    world.heads.snapshots.clear()
    world.agent = world.new_agent()
    world.handle(batch[1:])
    assert world.decided() == [turn("conv-a", n).event_id for n in range(1, 4)]
    assert chained(world.output.decisions(0), _conversation)
