"""The pinned partition layout (agents/layout.py): its commit metadata, the checks, and the policy
agent refusing a moved conversation before anything is written (in-memory ports)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from ledgerflow.agents.layout import (
    PROCEDURE,
    PartitionGuard,
    changed,
    misplaced,
    uneven,
)
from ledgerflow.agents.policy import PolicyAgent, Ports
from ledgerflow.api.hub import partition_for
from ledgerflow.config import Settings
from ledgerflow.errors import InfrastructureError
from ledgerflow.kafka.placement import MARK, Layout, placement
from tests.unit.agents.memory import HeadStore, InputTopic, Letters, OutputTopic, Record, Reference, turn

SETTINGS = Settings(state_dir=Path("/nonexistent"))
PINNED = Layout({"conversation.events": 3, "training.commands": 3, "models.commands": 3})


class Refused(Exception):
    pass


def _refuse(problem: str) -> None:
    raise Refused(problem)


def _key_in(partition: int, partitions: int, moved_to: int | None = None) -> str:
    """A conversation id placed in ``partition`` of ``partitions`` (and in ``moved_to`` of five)."""
    for n in range(100_000):
        key = f"conv-{n}"
        if placement(key.encode(), partitions) == partition and (
            moved_to is None or placement(key.encode(), 5) == moved_to
        ):
            return key
    raise AssertionError("no such key")


def test_the_layout_round_trips_through_the_commit_metadata_and_anything_else_is_no_layout() -> None:
    assert Layout.decode(PINNED.encode()) == PINNED
    assert PINNED.encode() == f"{MARK}conversation.events=3,models.commands=3,training.commands=3"
    for other in (None, "", "some tool's metadata", f"{MARK}conversation.events=x", f"{MARK}a=-1"):
        assert Layout.decode(other) is None


def test_placement_is_kafkas_default_partitioner_the_edge_reads_conversations_by() -> None:
    for n in range(200):
        assert placement(f"c-{n}".encode(), 7) == partition_for(f"c-{n}", 7)


def test_a_count_other_than_the_pinned_one_is_one_line_naming_the_procedure() -> None:
    assert changed(PINNED, {"conversation.events": 3, "policy.decisions": 3}) is None
    assert changed(PINNED, {}) is None  # a topic this worker does not read
    problem = changed(PINNED, {"conversation.events": 5, "training.commands": 3})
    assert problem is not None and "\n" not in problem
    assert "conversation.events has 5 partitions" in problem and "with 3" in problem and PROCEDURE in problem


def test_co_partitioned_topics_of_different_counts_are_refused() -> None:
    assert uneven({"conversation.events": 5, "policy.decisions": 5, "training.commands": 3}) is None
    problem = uneven({"conversation.events": 5, "policy.decisions": 3})
    assert (
        problem is not None and "policy.decisions has 3 partitions but conversation.events has 5" in problem
    )


def test_a_record_where_its_key_does_not_belong_or_beyond_the_pinned_partitions_is_misplaced() -> None:
    key = _key_in(1, 3)
    assert misplaced(Record("t", 1, 0, key.encode(), b""), 3) is None
    wrong = misplaced(Record("t", 2, 7, key.encode(), b""), 3)
    assert wrong is not None and "t[2]@7" in wrong and "not in partition 1 of the 3" in wrong
    beyond = misplaced(Record("t", 3, 0, None, b""), 3)
    assert beyond is not None and "beyond the 3 partitions" in beyond
    assert misplaced(Record("t", 2, 0, None, b""), 3) is None  # unkeyed: any partition below the pin


class World:
    """A guarded policy agent on in-memory ports, three partitions pinned; the topic has ``now``
    partitions (None: the guard cannot ask, as for tenant commands)."""

    def __init__(self, now: int | Exception | None = 5) -> None:
        self.inputs, self.output, self.letters = InputTopic(), OutputTopic(), Letters()
        self.asked = 0
        ports = Ports(HeadStore(), self.output, self.inputs, Reference(), self.letters)

        async def count() -> int:
            self.asked += 1
            if isinstance(now, Exception):
                raise now
            assert now is not None
            return now

        guard = PartitionGuard(3, _refuse, None if now is None else count)
        self.agent = PolicyAgent(SETTINGS, ports, guard=guard)

    def handle(self, records: list[Record]) -> None:
        asyncio.run(self.agent.handle(records))

    def written(self) -> int:
        return sum(len(log) for log in self.output.partitions.values())


@pytest.mark.parametrize("now", [5, None], ids=["partitions-added", "count-unknown"])
def test_a_moved_conversations_first_turn_in_its_new_partition_is_refused_before_anything_is_written(
    now: int | None,
) -> None:
    world = World(now)
    conv = _key_in(0, 3, moved_to=2)  # three partitions: 0; five: 2
    world.handle([world.inputs.add(0, turn(conv, n)) for n in (1, 2)])
    assert world.written() == 2
    # A producer that saw five partitions puts the next turn (of this and of a new conversation) in 2.
    other = _key_in(2, 3)
    batch = [world.inputs.add(2, turn(other, 1)), world.inputs.add(2, turn(conv, 3))]
    with pytest.raises(Refused, match=r"conversation\.events\[2\]@1 .* not in partition 0 of the 3"):
        world.handle(batch)
    assert world.written() == 2  # not even the well-placed turn of the same batch


def test_a_turn_misrouted_by_its_producer_is_dead_lettered_and_the_rest_of_its_batch_decided() -> None:
    world = World(now=3)  # the topic still has the pinned count: no partitions were added
    conv, other = _key_in(0, 3), _key_in(2, 3)
    new = next(k for n in range(1000) if placement((k := f"new-{n}").encode(), 3) == 0)
    world.handle([world.inputs.add(0, turn(conv, 1))])
    # A producer with another partitioner puts a turn of ``conv`` and the first turn of ``new``
    # (both belong in 0) in partition 2, between two well-placed turns of ``other``.
    batch = [
        world.inputs.add(2, turn(other, 1)),
        world.inputs.add(2, turn(conv, 2)),
        world.inputs.add(2, turn(new, 1)),
        world.inputs.add(2, turn(other, 2)),
    ]
    world.handle(batch)
    assert world.asked == 1  # the count is asked once per batch, not per record
    assert len(world.output.partitions[2]) == 2  # both turns of ``other``
    assert [(d.partition, d.offset) for d in world.letters.sent] == [(2, 1), (2, 2)]
    for letter in world.letters.sent:
        assert (
            letter.reason.startswith("misrouted: key ")
            and "belongs in partition 0 of 3, not 2" in letter.reason
        )
    # The partition goes on: a misrouted turn stops nothing.
    world.handle([world.inputs.add(2, turn(other, 3))])
    assert len(world.output.partitions[2]) == 3


def test_a_misplaced_turn_whose_topic_cannot_be_asked_leaves_its_batch_to_be_tried_again() -> None:
    world = World(now=InfrastructureError("Kafka: the partition counts of conversation.events: timed out"))
    batch = [world.inputs.add(2, turn(_key_in(2, 3), 1)), world.inputs.add(2, turn(_key_in(0, 3), 1))]
    with pytest.raises(InfrastructureError, match="timed out"):
        world.handle(batch)
    assert world.written() == 0 and world.letters.sent == []  # nothing of it written; retried whole


def test_a_batch_from_a_partition_beyond_the_pinned_ones_is_refused_before_recovery() -> None:
    world = World()
    with pytest.raises(Refused, match="beyond the 3 partitions"):
        world.handle([world.inputs.add(4, turn(_key_in(4, 5), 1))])
    assert world.output.partitions == {} and world.inputs.reads == []


def test_a_batch_of_tenant_commands_is_refused_if_any_one_is_not_where_its_tenant_belongs() -> None:
    guard = PartitionGuard(3, _refuse)
    tenant = _key_in(1, 3, moved_to=3)
    guard.every(
        [
            Record("training.commands", 1, 0, tenant.encode(), b""),
            Record("training.commands", 0, 0, None, b""),
        ]
    )
    with pytest.raises(Refused, match=r"training\.commands\[0\]@4 .* not in partition 1 of the 3"):
        guard.every(
            [
                Record("training.commands", 1, 1, tenant.encode(), b""),
                Record("training.commands", 0, 4, tenant.encode(), b""),
            ]
        )
