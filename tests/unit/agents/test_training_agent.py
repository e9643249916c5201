"""The training agent's own decisions, through in-memory ports (tests/unit/agents/memory.py):
order and one chain per tenant, redelivery below the answered offset, commands the group
passed, duplicate command ids, poison commands, hostile TTLs, expiry by the clock, a failed
write and a revocation mid-batch. The Kafka adapters behind the same ports are
integration-tested (test_training_and_usage, test_poison_records, test_fuzz_topics)."""

from __future__ import annotations

import asyncio
import dataclasses
import uuid
from collections.abc import Callable
from pathlib import Path

import pytest

from ledgerflow.agents.layout import PartitionGuard
from ledgerflow.agents.output import LogNotReady, Written
from ledgerflow.agents.training import Ports, TrainingAgent
from ledgerflow.config import Settings
from ledgerflow.contracts import codec
from ledgerflow.contracts.chain import ChainHead
from ledgerflow.contracts.eventhash import link_event
from ledgerflow.contracts.events import Event, derived_event_id
from ledgerflow.contracts.payloads import TrainingEnabled, TrainingRejected
from ledgerflow.errors import InfrastructureError
from ledgerflow.metrics import TRAINING_STATE, WORKER_REGISTRY
from ledgerflow.policy.wire import head_after
from ledgerflow.training import TrainingState, fold
from ledgerflow.training.wire import event_of
from tests.unit.agents.memory import (
    T0,
    InputTopic,
    Letters,
    OutputTopic,
    Record,
    chained,
    command,
    pinned,
    retry_after_failed_write,
    turn,
)

SETTINGS = Settings(state_dir=Path("/nonexistent"))
SECOND = 1_000_000


class World:
    """One training agent wired to in-memory ports, with a clock the test moves (µs)."""

    def __init__(self, guard: PartitionGuard | None = None) -> None:
        self.inputs, self.output, self.letters = InputTopic("training.commands"), OutputTopic(), Letters()
        self.now = T0 + 10 * SECOND
        self.guard = guard  # None: no layout pinned, placement unchecked
        self.agent = self.new_agent()

    def new_agent(self) -> TrainingAgent:
        """A fresh owner (another worker, or this one after a restart) on the same logs."""
        agent = TrainingAgent(SETTINGS, Ports(self.output, self.inputs, self.letters), clock=lambda: self.now)
        agent.guard = self.guard
        return agent

    def handle(self, records: list[Record]) -> None:
        asyncio.run(self.agent.handle(records))

    def send(self, *events: Event, partition: int = 0) -> list[Record]:
        return [self.inputs.add(partition, e) for e in events]

    def outcomes(self, partition: int = 0) -> list[tuple[str, str]]:
        """(type, tenant) of each training.audit record of ``partition``, in log order."""
        return [(r.type, r.tenant) for r in self.output.decisions(partition)]


def test_commands_are_answered_in_order_with_one_chain_per_tenant() -> None:
    world = World()
    world.handle(world.send(command(1), command(2, "globex"), command(3, enable=False)))
    assert world.outcomes() == [
        ("TrainingEnabled", "acme"),
        ("TrainingEnabled", "globex"),
        ("TrainingDisabled", "acme"),
    ]
    assert [w.input_offset for w in world.output.partitions[0]] == [0, 1, 2]
    assert world.output.keys[0] == [b"acme", b"globex", b"acme"]
    assert chained(world.output.decisions(0))


def test_a_new_owner_claims_each_partition_before_it_reads_it_back() -> None:
    world = World()
    world.handle(world.send(command(1)) + world.send(command(2, "globex"), partition=1))
    assert world.output.calls == [("claim", 0), ("end", 0), ("claim", 1), ("end", 1)]


def test_a_redelivered_batch_below_the_answered_offset_is_not_answered_again() -> None:
    world = World()
    batch = world.send(command(1), command(2, enable=False))
    world.handle(batch)
    world.handle(batch)  # faust redelivers (the commit was lost)
    assert len(world.output.partitions[0]) == 2
    world.agent = world.new_agent()  # a new owner learns the answered offset from training.audit
    world.handle([*batch, *world.send(command(3))])
    assert [t for t, _ in world.outcomes()] == ["TrainingEnabled", "TrainingDisabled", "TrainingEnabled"]
    assert chained(world.output.decisions(0))


def test_a_redelivered_poison_command_below_the_answered_offset_is_dead_lettered_once() -> None:
    world = World()
    batch = [world.inputs.append(0, b"\xc3\x01garbage", b"acme"), *world.send(command(1))]
    world.handle(batch)
    world.handle(batch)  # redelivered: the poison record is below the answered offset now
    assert [d.offset for d in world.letters.sent] == [0]
    assert [t for t, _ in world.outcomes()] == ["TrainingEnabled"]


def test_commands_the_group_passed_before_this_owner_are_read_back_and_answered_first() -> None:
    world = World()
    world.send(command(1), command(2, enable=False))  # committed past, never answered
    delivered = world.send(command(3))
    world.handle(delivered)
    assert world.inputs.reads == [(0, 0, 2)]
    assert [t for t, _ in world.outcomes()] == ["TrainingEnabled", "TrainingDisabled", "TrainingEnabled"]
    assert [w.input_offset for w in world.output.partitions[0]] == [0, 1, 2]


def test_a_command_id_delivered_again_at_another_offset_is_answered_once_also_after_recovery() -> None:
    world = World()
    world.handle(world.send(command(1, command_id="c-1"), command(1, command_id="c-1")))
    world.handle(world.send(command(1, command_id="c-1")))
    assert world.outcomes() == [("TrainingEnabled", "acme")]
    world.agent = world.new_agent()  # the answered ids are rebuilt from training.audit
    world.handle(world.send(command(1, command_id="c-1"), command(2, enable=False)))
    assert [t for t, _ in world.outcomes()] == ["TrainingEnabled", "TrainingDisabled"]


def test_poison_commands_are_dead_lettered_and_the_rest_answered() -> None:
    world = World()
    good = world.send(command(1))
    garbage = world.inputs.append(0, b"\xc3\x01garbage", b"acme")
    wrong_key = world.inputs.append(0, codec.encode(command(2)), b"globex")
    wrong_type = world.inputs.append(0, codec.encode(turn("acme", 3, tenant="acme")), b"acme")
    empty = world.inputs.append(0, b"", b"acme")
    later = world.send(command(4, enable=False))
    world.handle([*good, garbage, wrong_key, wrong_type, empty, *later])
    assert [t for t, _ in world.outcomes()] == ["TrainingEnabled", "TrainingDisabled"]
    assert [w.input_offset for w in world.output.partitions[0]] == [0, 5]
    codes = [(d.offset, d.reason_code) for d in world.letters.sent]
    assert codes == [
        (1, "truncated"),
        (2, "invalid-envelope"),
        (3, "wrong-type-for-topic"),
        (4, "not-single-object"),
    ], codes


def test_a_command_keyed_by_another_subject_than_its_tenant_is_dead_lettered_not_decided() -> None:
    """Placed by its key ``acme-ops``, answered there, it was decided against a copy of acme's
    state in the wrong partition, and its outcome was one every reader refuses as misplaced."""
    world = World()
    elsewhere = dataclasses.replace(command(1), subject="acme-ops")
    sent = world.send(elsewhere, command(2))
    world.handle(sent)
    assert world.outcomes() == [("TrainingEnabled", "acme")]  # command 2's: the first decided nothing
    assert [w.input_offset for w in world.output.partitions[0]] == [1]
    assert [(d.offset, d.reason_code) for d in world.letters.sent] == [(0, "misrouted")]
    assert "must be its tenant 'acme', not 'acme-ops'" in world.letters.sent[0].reason


@pytest.mark.parametrize("ttl", [-1, 0, -(2**63), 2**62])
def test_a_hostile_ttl_is_recorded_as_a_rejection_and_enables_nothing(ttl: int) -> None:
    world = World()
    world.handle(world.send(command(1, ttl=ttl), command(2, enable=False)))
    records = world.output.decisions(0)
    assert [r.type for r in records] == ["TrainingRejected", "TrainingRejected"]
    assert isinstance(records[0].payload, TrainingRejected) and records[0].payload.rejected_reason
    assert chained(records)


def test_an_overdue_lock_expires_on_the_tick_once_and_a_new_owner_sees_it_expired() -> None:
    world = World()
    world.handle(world.send(command(1, ttl=60)))
    enabled = world.output.decisions(0)[0].payload
    assert isinstance(enabled, TrainingEnabled) and enabled.expires_at == world.now + 60 * SECOND
    world.now += 59 * SECOND
    asyncio.run(world.agent.tick())
    assert len(world.output.partitions[0]) == 1, "not overdue yet"
    world.now += 1 * SECOND
    asyncio.run(world.agent.tick())
    asyncio.run(world.agent.tick())
    assert [t for t, _ in world.outcomes()] == ["TrainingEnabled", "TrainingExpired"]
    assert world.output.partitions[0][1].input_offset is None, "no input caused the expiry"
    world.agent = world.new_agent()
    world.handle(world.send(command(2, ttl=60)))  # accepted: the new owner folded the expiry
    assert [t for t, _ in world.outcomes()] == ["TrainingEnabled", "TrainingExpired", "TrainingEnabled"]
    assert chained(world.output.decisions(0))


@pytest.mark.parametrize("how", ["restart", "rebalance"])
def test_a_lock_expires_on_time_in_a_partition_no_command_reached_since_a_new_owner(how: str) -> None:
    """After a restart or a rebalance the agent holds no partition in memory until a command
    arrives; the tick recovers each owned one from its log, so an overdue lock expires on time
    (it stayed on, and every turn was judged with training on, until the next command). The
    commands passed meanwhile are still answered, once, when the first batch comes."""
    world = World()
    world.handle(world.send(command(1, ttl=60)))
    if how == "restart":
        world.agent = world.new_agent()
    else:
        world.agent.revoke({0})
    passed = world.send(command(2, enable=False))  # published while no one owned the partition
    world.now += 61 * SECOND
    asyncio.run(world.agent.tick({0}))
    assert [t for t, _ in world.outcomes()] == ["TrainingEnabled", "TrainingExpired"]
    asyncio.run(world.agent.tick({0}))  # once
    world.handle(world.send(command(3, ttl=60)))  # the first batch since: reads what passed first
    assert [t for t, _ in world.outcomes()] == [
        "TrainingEnabled",
        "TrainingExpired",
        "TrainingRejected",
        "TrainingEnabled",
    ], "the command published before the first batch must be answered once, in order"
    assert world.output.partitions[0][2].input_offset == passed[0].offset
    assert chained(world.output.decisions(0))


def test_the_tick_before_any_batch_writes_nothing() -> None:
    world = World()
    asyncio.run(world.agent.tick())
    assert world.output.partitions == {}


def test_a_failed_write_then_the_retry_after_revocation_answers_each_command_once() -> None:
    world = World()
    world.handle(world.send(command(1)))
    batch = world.send(command(2, enable=False), command(3))
    retry_after_failed_write(world.output, world.handle, world.agent.revoke, batch)
    assert [t for t, _ in world.outcomes()] == ["TrainingEnabled", "TrainingDisabled", "TrainingEnabled"]
    assert chained(world.output.decisions(0))


def test_a_partition_revoked_mid_batch_is_continued_by_its_next_owner_from_the_log() -> None:
    world = World()
    batch = [*world.send(command(1)), *world.send(command(2, "globex"), partition=2)]
    world.output.on_write = lambda: world.agent.revoke({2})  # a rebalance while the batch is written
    world.handle(batch)
    world.output.on_write = None
    other = world.new_agent()  # the new owner of partition 2 gets its batch again, then more
    asyncio.run(other.handle([batch[1], *world.send(command(3, "globex", enable=False), partition=2)]))
    assert world.outcomes(2) == [("TrainingEnabled", "globex"), ("TrainingDisabled", "globex")]
    assert chained(world.output.decisions(2))


def test_an_undecodable_audit_record_is_skipped_when_a_new_owner_recovers() -> None:
    world = World()
    world.handle(world.send(command(1)))
    world.output.partitions[0].append(Written(1, b"\x00not avro", None))
    world.agent = world.new_agent()
    world.handle(world.send(command(2, enable=False)))
    records = [codec.decode(w.value) for w in world.output.partitions[0] if w.offset != 1]
    assert [r.type for r in records] == ["TrainingEnabled", "TrainingDisabled"]
    assert chained(records)


def test_a_new_owner_whose_clock_is_behind_never_stamps_a_tenant_back_in_time() -> None:
    """After a rebalance the new owner's wall clock was 5 s behind the old one's: it stamped the
    disable before the enable it ended, a history the aggregate refuses (``training.illegal``)."""
    world = World()
    world.handle(world.send(command(1), command(2, "globex")))
    world.agent = world.new_agent()
    world.now -= 5 * SECOND
    world.handle(world.send(command(3, enable=False), command(4, enable=False), command(5, "initech")))
    world.now -= 3600 * SECOND  # and an hour further back: refusals are stamped forward too
    world.handle(world.send(command(6, enable=False)))
    records = world.output.decisions(0)
    acme = [r.occurred_at for r in records if r.tenant == "acme"]
    assert acme == [T0 + 10 * SECOND, T0 + 10 * SECOND + 1, T0 + 10 * SECOND + 2, T0 + 10 * SECOND + 3]
    assert [r.type for r in records if r.tenant == "acme"] == [
        "TrainingEnabled",
        "TrainingDisabled",
        "TrainingRejected",
        "TrainingRejected",
    ]
    assert fold([event_of(r) for r in records if r.tenant == "acme"]).version == 2  # a legal history
    initech = [r.occurred_at for r in records if r.tenant == "initech"]
    assert initech == [T0 + 5 * SECOND], "another tenant's stamps do not push this one's"


def test_an_expiry_after_the_clock_went_back_is_stamped_after_the_enable() -> None:
    world = World()
    world.handle(world.send(command(1, ttl=60)))
    world.agent.revoke({0})
    world.now += 61 * SECOND
    asyncio.run(world.agent.tick({0}))
    world.handle(world.send(command(2, ttl=60)))
    world.now -= 3600 * SECOND  # an NTP step back within one owner
    world.handle(world.send(command(3, enable=False)))
    records = world.output.decisions(0)
    assert [r.type for r in records] == [
        "TrainingEnabled",
        "TrainingExpired",
        "TrainingEnabled",
        "TrainingDisabled",
    ]
    stamps = [r.occurred_at for r in records]
    assert stamps == sorted(stamps) and len(set(stamps)) == 4
    assert fold([event_of(r) for r in records]).version == 4


def test_a_crash_between_the_dead_letters_and_the_outcomes_dead_letters_nothing_twice() -> None:
    """The batch's dead letters were acknowledged, then its outcome write failed: the retry
    recovered the partition from training.audit, which holds nothing of a poison command, and
    dead-lettered it again."""
    world = World()
    poison = world.inputs.append(0, b"\xc3\x01garbage", b"acme")
    retry_after_failed_write(
        world.output, world.handle, world.agent.revoke, [poison, *world.send(command(1))]
    )
    assert [(d.partition, d.offset) for d in world.letters.sent] == [(0, 0)]
    assert world.outcomes() == [("TrainingEnabled", "acme")]


@pytest.mark.parametrize("how", ["restart", "rebalance"])
def test_a_partitions_last_poison_commands_are_dead_lettered_once_by_the_next_owner(how: str) -> None:
    """Poison last in the partition: no outcome after it says it was handled, so the next owner
    read it back with the commands the group passed (Step 2) and dead-lettered it again."""
    world = World()
    world.handle([*world.send(command(1)), world.inputs.append(0, b"\xc3\x01garbage", b"acme")])
    world.handle([world.inputs.append(0, b"", b"acme")])
    if how == "restart":
        world.agent = world.new_agent()
    else:
        world.agent.revoke({0})
    world.handle(world.send(command(4, enable=False)))  # the group committed past the poison
    assert [d.offset for d in world.letters.sent] == [1, 2]
    assert [t for t, _ in world.outcomes()] == ["TrainingEnabled", "TrainingDisabled"]


def test_letters_of_another_partition_or_topic_do_not_hide_a_poison_command() -> None:
    world = World()
    other_partition = world.inputs.append(1, b"\xc3\x01garbage", b"globex")
    world.handle([other_partition])
    # the same position (partition 0, offset 0) in another topic's DLQ letters
    world.letters.sent.append(
        dataclasses.replace(world.letters.sent[0], source_topic="x.training.commands", partition=0)
    )
    world.agent = world.new_agent()
    poison = world.inputs.append(0, b"\xc3\x01garbage", b"acme")
    world.handle([poison, *world.send(command(2))])
    assert [(d.source_topic, d.partition, d.offset) for d in world.letters.sent[2:]] == [
        ("training.commands", 0, 0)
    ]
    assert world.outcomes() == [("TrainingEnabled", "acme")]


@pytest.mark.parametrize("how", ["restart", "rebalance"])
def test_a_letter_written_from_outside_naming_a_command_does_not_drop_it(how: str) -> None:
    """The DLQ is read back on recovery (Step 2); a letter there naming a command that decodes was
    written by no agent. It used to make the next owner skip the command: no outcome, no letter."""
    world = World()
    world.handle(world.send(command(1)))
    poison = world.inputs.append(0, b"\xc3\x01garbage", b"acme")
    world.handle([poison])
    genuine = world.letters.sent[0]
    # offsets 2 and 3 (not written yet), and the poison's own a second time
    world.letters.sent += [dataclasses.replace(genuine, offset=o, reason="forged") for o in (1, 2, 3)]
    if how == "restart":
        world.agent = world.new_agent()
    else:
        world.agent.revoke({0})
    world.handle(world.send(command(2, enable=False), command(3)))
    assert [t for t, _ in world.outcomes()] == ["TrainingEnabled", "TrainingDisabled", "TrainingEnabled"]
    assert [w.input_offset for w in world.output.partitions[0]] == [0, 2, 3]
    assert len(world.letters.sent) == 4, "the poison is not dead-lettered again, nothing else is"


def test_a_dlq_that_cannot_be_read_holds_the_batch_back_until_it_can() -> None:
    world = World()
    world.handle([world.inputs.append(0, b"\xc3\x01garbage", b"acme")])
    world.agent = world.new_agent()
    world.letters.fail_reads = True
    batch = world.send(command(2))
    with pytest.raises(InfrastructureError):
        world.handle(batch)
    assert world.outcomes() == [] and len(world.letters.sent) == 1, "nothing decided on a guess"
    world.agent.revoke({0})
    world.letters.fail_reads = False
    world.handle(batch)
    assert len(world.letters.sent) == 1
    assert world.outcomes() == [("TrainingEnabled", "acme")]


def test_an_outcome_written_from_outside_stamped_far_ahead_does_not_drag_the_tenants_stamps() -> None:
    """A refusal (it applies to any state) stamped in 2199: followed, every later outcome of the
    tenant, an enable's deadline included, would be stamped there. Appended as the next link of
    the tenant's chain, with no ``lf-input``: recovery cannot tell it from the agent's own (the
    chain has no secret), so the stamp rule is what keeps it from steering the clock."""
    world = World()
    world.handle(world.send(command(1, ttl=60), command(2, ttl=60)))  # the second: already enabled
    refusal = world.output.decisions(0)[1]
    assert refusal.type == "TrainingRejected"
    far = dataclasses.replace(refusal, occurred_at=7_226_582_400_000_000, event_id=str(uuid.uuid4()))
    forged = link_event(far, head_after(refusal))
    world.output.partitions[0].append(Written(2, codec.encode(forged), None))
    world.agent = world.new_agent()
    world.handle(world.send(command(3, enable=False)))
    disabled = world.output.decisions(0)[3]
    assert (disabled.type, disabled.occurred_at) == ("TrainingDisabled", world.now)


# ---------------------------------------------------------------- records written from outside
# Anyone with access to Kafka can append to training.audit. Recovery takes a record as the
# agent's own only if it is the next link of its tenant's chain and its lf-input, if any, is an
# offset the input partition holds (contracts/outcome_trust.py); the rest steers nothing.

FAR = 10**15


Learnt = tuple[dict[str, TrainingState], dict[str, ChainHead], int, list[tuple[str, int]], dict[str, int]]


def _recovered(world: World) -> Learnt:
    """What a new owner learns from partition 0: states, heads, last input, answered ids, stamps."""
    known = asyncio.run(world.new_agent()._recover(0))
    return known.tenants, known.heads, known.last_input, list(known.answered.items()), known.stamps


def _live(world: World) -> Learnt:
    known = world.agent._partitions[0]
    return known.tenants, known.heads, known.last_input, list(known.answered.items()), known.stamps


def _append(world: World, record: Event, input_offset: int | None) -> None:
    log = world.output.partitions[0]
    log.append(Written(len(log), codec.encode(record), input_offset))


def _next_link(world: World, **changes: object) -> Event:
    """A refusal of acme (it applies to any state) linked as the next record of acme's chain."""
    acme = [r for r in world.output.decisions(0) if r.tenant == "acme"]
    refusal = next(r for r in reversed(acme) if r.type == "TrainingRejected")
    body = dataclasses.replace(refusal, event_id=str(uuid.uuid4()), **changes)  # type: ignore[arg-type]
    return link_event(body, head_after(acme[-1]))


def test_a_forged_outcome_claiming_a_far_input_does_not_swallow_the_next_command() -> None:
    """A correct next link of acme's chain with ``lf-input: 10**15``: followed, last_input became
    10**15 and every later command of the partition was skipped as already answered."""
    world = World()
    world.handle(world.send(command(1, ttl=60), command(2, ttl=60)))  # enabled, then a refusal
    _append(world, _next_link(world), FAR)
    world.agent = world.new_agent()
    world.handle(world.send(command(3, enable=False)))
    records = world.output.decisions(0)
    assert [r.type for r in records] == [
        "TrainingEnabled",
        "TrainingRejected",
        "TrainingRejected",  # the forged one
        "TrainingDisabled",
    ], "the command after the forged record must be decided"
    assert world.output.partitions[0][3].input_offset == 2
    assert chained([r for i, r in enumerate(records) if i != 2]), "the answer links to the real head"


FORGERIES: dict[str, Callable[[World], tuple[Event, int | None]]] = {
    "lf-input beyond the input": lambda w: (_next_link(w), FAR),
    "wrong hash": lambda w: (dataclasses.replace(_next_link(w), hash="ff" * 32), 1),
    "content changed after hashing": lambda w: (
        dataclasses.replace(_next_link(w), occurred_at=_next_link(w).occurred_at + 1),
        None,
    ),
    "wrong prev_hash": lambda w: (
        link_event(
            dataclasses.replace(w.output.decisions(0)[1], event_id=str(uuid.uuid4())),
            ChainHead("acme", 2, "ab" * 32),
        ),
        None,
    ),
    "replayed copy of the head": lambda w: (w.output.decisions(0)[1], 1),
    "replayed older link": lambda w: (w.output.decisions(0)[0], 0),
    "another tenant's chain": lambda w: (
        link_event(dataclasses.replace(w.output.decisions(0)[1], tenant="initech"), None),
        None,
    ),
    "unchained": lambda w: (dataclasses.replace(_next_link(w), sequence=None, prev_hash=None, hash=None), 1),
}


@pytest.mark.parametrize("forgery", FORGERIES)
def test_a_forged_record_mid_log_steers_no_state_head_input_or_stamp(forgery: str) -> None:
    world = World()
    world.handle(world.send(command(1, ttl=60), command(2, ttl=60), command(3, "globex")))
    record, input_offset = FORGERIES[forgery](world)
    _append(world, record, input_offset)
    assert _recovered(world) == _live(world), "recovery learns exactly what the agent itself wrote"
    world.handle(world.send(command(4, enable=False), command(5, "globex", enable=False)))
    assert [w.input_offset for w in world.output.partitions[0]][-2:] == [3, 4]
    assert _recovered(world) == _live(world), "and so with the forged record mid-log"
    world.agent = world.new_agent()
    world.handle(world.send(command(6, ttl=60), command(7, "globex", ttl=60)))
    records = world.output.decisions(0)
    assert [r.type for r in records[-2:]] == ["TrainingEnabled", "TrainingEnabled"]
    assert chained([r for i, r in enumerate(records) if i != 3])


def test_a_linked_outcome_of_a_tenant_whose_home_is_another_partition_steers_nothing(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A copy of globex's enable (globex's home is partition 1 of the 3 pinned) written straight to
    partition 0 as the start of a globex chain there, hashed right, carrying the id of acme's next
    command and an input partition 0 holds. Recovery folded it: the agent held a lock for globex in
    partition 0 and, once it was due, wrote a ``TrainingExpired`` for globex there (every reader
    refuses it as misplaced), and acme's next command was skipped as a duplicate delivery."""
    world = World(pinned(3))
    world.handle(world.send(command(1, ttl=60)))  # acme, at home in partition 0
    world.handle(world.send(command(2, "globex", ttl=60), partition=1))  # globex, at home in 1
    genuine = world.output.decisions(1)[0]
    assert isinstance(genuine.payload, TrainingEnabled)
    payload = dataclasses.replace(genuine.payload, command_id="cmd-acme-3")
    copy = dataclasses.replace(genuine, event_id=str(uuid.uuid4()), payload=payload)
    _append(world, link_event(copy, None), 0)  # the first link of a globex chain in partition 0
    world.agent = world.new_agent()
    world.now += 61 * SECOND
    with caplog.at_level("WARNING", logger="ledgerflow.agents.commanded"):
        asyncio.run(world.agent.tick({0, 1}))  # both locks are due: recovered and expired
    world.handle(world.send(command(3, ttl=60)))  # cmd-acme-3
    assert world.outcomes(0) == [
        ("TrainingEnabled", "acme"),
        ("TrainingEnabled", "globex"),  # the forged one
        ("TrainingExpired", "acme"),
        ("TrainingEnabled", "acme"),
    ], "no expiry of globex where globex does not belong, and acme's next command decided"
    assert world.outcomes(1) == [("TrainingEnabled", "globex"), ("TrainingExpired", "globex")]
    assert set(world.agent._partitions[0].tenants) == {"acme"}
    assert chained(world.output.decisions(0)[::2]) and chained(world.output.decisions(1))
    warned = [r.getMessage() for r in caplog.records]
    assert warned == [
        "training: training.audit[0]@1 is not the agent's own (written from outside?); ignored: "
        "tenant 'globex' belongs in partition 1 of 3, not 0: its agent writes none of its outcomes here"
    ], warned


def test_a_legitimate_log_recovers_fully_without_a_warning(caplog: pytest.LogCaptureFixture) -> None:
    world = World()
    world.handle(world.send(command(1, ttl=60), command(2, "globex"), command(3, ttl=60)))
    world.handle(world.send(command(3, command_id="cmd-acme-3")))  # a duplicate id: not answered
    world.now += 61 * SECOND
    asyncio.run(world.agent.tick())  # acme expires: an outcome without lf-input
    world.handle(world.send(command(4, enable=False, command_id="c-4"), command(5, "globex", enable=False)))
    assert [t for t, _ in world.outcomes()] == [
        "TrainingEnabled",
        "TrainingEnabled",
        "TrainingRejected",
        "TrainingExpired",
        "TrainingRejected",  # acme is disabled already
        "TrainingDisabled",
    ]
    caplog.clear()
    with caplog.at_level("WARNING", logger="ledgerflow.agents.commanded"):
        tenants, heads, last_input, answered, _ = recovered = _recovered(world)
    assert recovered == _live(world)
    assert not caplog.records
    assert last_input == 5 and [c for c, _ in answered] == [
        "cmd-acme-1",
        "cmd-globex-2",
        "cmd-acme-3",
        "c-4",
        "cmd-globex-5",
    ]
    assert {k: h.sequence for k, h in heads.items()} == {"acme": 4, "globex": 2}
    assert set(tenants) == {"acme", "globex"}


def test_an_input_end_read_short_does_not_disown_the_outcomes_of_commands_delivered_since() -> None:
    """A restarting broker may answer a high watermark below what it holds: the command delivered
    at offset 2 proves input 0 reaches offset 3 at least, so the outcomes of offsets 0 and 1 are
    still the agent's own and the next outcome continues the tenant's chain (not a new one)."""
    world = World()
    world.handle(world.send(command(1), command(2, enable=False)))

    async def short(partition: int) -> int:
        return 0

    world.inputs.end = short  # type: ignore[method-assign]
    world.agent = world.new_agent()
    world.handle(world.send(command(3)))
    records = world.output.decisions(0)
    assert [(r.type, r.sequence) for r in records] == [
        ("TrainingEnabled", 1),
        ("TrainingDisabled", 2),
        ("TrainingEnabled", 3),
    ]
    assert chained(records)


def _enabled_gauge(tenant: str) -> float | None:
    """``ledgerflow_training_mode_enabled{tenant}`` as this worker exports it (None: no series)."""
    return WORKER_REGISTRY.get_sample_value("ledgerflow_training_mode_enabled", {"tenant": tenant})


def _outcomes_counted(kind: str) -> float:
    found = WORKER_REGISTRY.get_sample_value("ledgerflow_training_command_outcomes_total", {"type": kind})
    return found or 0.0


def test_a_worker_that_lost_a_partition_stops_exporting_its_tenants_training_state() -> None:
    """The tenant's next owner exports its state now; a series left at 1 here outlived the lock
    (the dashboard sums the series of every worker: the lock showed on after it expired)."""
    world = World()
    world.handle(world.send(command(1, "gauge-lost", ttl=60)))
    assert _enabled_gauge("gauge-lost") == 1
    world.agent.revoke({0})  # a rebalance gave partition 0 to another worker
    assert _enabled_gauge("gauge-lost") is None


def test_a_new_owner_exports_the_training_state_it_recovered_from_the_log() -> None:
    """After a restart (or a rebalance) the gauge says what the log says as soon as the partition is
    recovered (the tick recovers every owned one), not only after the tenant's next command."""
    world = World()
    world.handle(world.send(command(1, "gauge-restart", ttl=600)))
    TRAINING_STATE.remove("gauge-restart")  # the worker restarted: a new process exports nothing yet
    world.agent = world.new_agent()
    asyncio.run(world.agent.tick({0}))
    assert _enabled_gauge("gauge-restart") == 1


def test_outcomes_are_counted_once_written_not_when_a_failed_write_staged_them() -> None:
    """``ledgerflow_training_command_outcomes_total`` counts records written: a write the broker
    refused, then retried, counts its records once (and the gauge never shows a state unwritten)."""
    world = World()
    world.handle(world.send(command(1, "gauge-retry")))
    disabled, enabled = _outcomes_counted("TrainingDisabled"), _outcomes_counted("TrainingEnabled")
    batch = world.send(command(2, "gauge-retry", enable=False))
    world.output.fail_writes = True
    with pytest.raises(LogNotReady):
        world.handle(batch)
    assert _enabled_gauge("gauge-retry") == 1, "the disable was not written: the lock is still on"
    world.agent.revoke({0})
    world.output.fail_writes = False
    world.handle(batch)
    assert _outcomes_counted("TrainingDisabled") == disabled + 1
    assert _outcomes_counted("TrainingEnabled") == enabled
    assert _enabled_gauge("gauge-retry") == 0


def _anonymous(event: Event) -> Event:
    """``event`` as a producer writing straight to training.commands may send it: no command id."""
    return dataclasses.replace(event, payload=dataclasses.replace(event.payload, command_id=""))  # type: ignore[type-var]


def test_outcomes_of_commands_without_an_id_have_their_own_event_ids_stable_on_replay() -> None:
    """Two different refusals (or enables) of one tenant, answering commands written straight to
    Kafka without a command id, shared one ``event_id`` (derived from type, tenant and ""): the
    envelope's unique id (docs/contracts.md), so a reader keyed by it kept one of two facts. An
    anonymous command's outcome id now names the command's position (topic, partition, offset):
    distinct, and the same when a new owner decides them again after an aborted write."""
    world = World()
    sent = world.send(
        _anonymous(command(1, ttl=-1)),  # refused
        _anonymous(command(2, enable=False)),  # refused: not enabled
        _anonymous(command(3)),
        _anonymous(command(4, enable=False)),
        _anonymous(command(5)),
        command(6, enable=False),
    )
    world.handle(sent)
    log = world.output.decisions(0)
    assert [r.type for r in log] == [
        "TrainingRejected",
        "TrainingRejected",
        "TrainingEnabled",
        "TrainingDisabled",
        "TrainingEnabled",
        "TrainingDisabled",
    ]
    ids = {r.event_id for r in log}
    assert len(ids) == len(log), "an event_id-keyed reader lost an outcome to a shared id"
    assert log[-1].event_id == derived_event_id("TrainingDisabled", "acme", "cmd-acme-6"), (
        "the id of a command with an id is unchanged"
    )
    replay = World()  # the first write aborted: a new owner decides the same commands again
    replay.inputs, replay.now = world.inputs, world.now
    replay.agent = replay.new_agent()
    replay.handle(sent)
    assert [r.event_id for r in replay.output.decisions(0)] == [r.event_id for r in log]
