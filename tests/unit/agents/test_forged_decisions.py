"""Records written straight to ``policy.decisions`` by someone else never steer the policy agent's
recovery: a copy of a real decision with a huge ``lf-input`` must not make later turns look
decided, and a chained forgery must not become a chain head (``agents/trusted.py``).

First the pure judge, record by record; then the agent through in-memory ports, with the forgery
after the snapshot, covered by it, and with no snapshot at all. The real broker and Redis:
tests/integration/test_forged_decisions.py.
"""

from __future__ import annotations

import dataclasses
import logging
from typing import Any

import pytest

from ledgerflow.agents import policy
from ledgerflow.agents.output import LogNotReady, Written
from ledgerflow.agents.trusted import (
    ALTERED,
    BEYOND_INPUT,
    DUPLICATE,
    HEADLESS,
    MISPLACED,
    NO_INPUT,
    NOT_A_DECISION,
    UNCHAINED,
    UNLINKED,
    OutputRecord,
    Skipped,
    Trusted,
    judge,
    vouched,
)
from ledgerflow.contracts import codec
from ledgerflow.contracts.chain import ZERO_HASH, compute_hash
from ledgerflow.contracts.events import Event, derived_event_id
from ledgerflow.contracts.payloads import PolicyDecision
from ledgerflow.policy.wire import head_after
from tests.unit.agents.memory import chained, turn
from tests.unit.agents.test_policy_agent import World, _conversation

HUGE = 10**15


def _decisions(n: int, conv: str = "conv-a") -> list[Event]:
    """``n`` genuine decisions of one conversation, as the agent writes them."""
    world = World()
    world.handle([world.inputs.add(0, turn(conv, i)) for i in range(1, n + 1)])
    return world.output.decisions(0)


def _forged(genuine: Event, sequence: int, prev_hash: str, *, rehash: bool = True) -> Event:
    """Another decision (outcome allow, a made-up input) in ``genuine``'s chain: its hash the hash of
    its content when ``rehash``, else made up."""
    assert isinstance(genuine.payload, PolicyDecision)
    fake_input = "00000000-0000-4000-8000-000000000000"
    forged = dataclasses.replace(
        genuine,
        event_id=derived_event_id("PolicyDecision", fake_input),
        payload=dataclasses.replace(genuine.payload, input_event_id=fake_input, outcome="allow", score=0.0),
    )
    digest = compute_hash(forged.with_chain(sequence, prev_hash, ZERO_HASH).to_json(), prev_hash)
    return forged.with_chain(sequence, prev_hash, digest if rehash else "ab" * 32)


def _at(decision: Event, input_offset: int | None = 0, offset: int = 0) -> OutputRecord:
    return OutputRecord(offset, decision, input_offset)


# ---------------------------------------------------------------- the pure judge


def test_the_next_link_answering_a_held_input_is_trusted() -> None:
    first, second = _decisions(2)
    assert judge(None, _at(first, 0), input_end=2) == Trusted(head_after(first), 0, _input(first))
    assert judge(head_after(first), _at(second, 1), input_end=2) == Trusted(
        head_after(second), 1, _input(second)
    )


def test_an_lf_input_at_or_past_the_input_end_is_skipped_even_when_the_record_links() -> None:
    first, second = _decisions(2)
    head = head_after(first)
    assert isinstance(judge(head, _at(second, 1), input_end=2), Trusted)
    for offset in (2, 3, HUGE):
        verdict = judge(head, _at(second, offset), input_end=2)
        assert isinstance(verdict, Skipped) and verdict.reason == BEYOND_INPUT, verdict
        assert "ends at offset 1" in verdict.detail


def test_a_copy_of_the_head_is_a_duplicate_and_of_an_older_record_unlinked() -> None:
    first, second = _decisions(2)
    assert _reason(judge(head_after(first), _at(first, 0), 2)) == DUPLICATE
    assert _reason(judge(head_after(second), _at(first, 0), 2)) == UNLINKED


def test_a_chained_forgery_with_a_made_up_hash_is_altered_with_a_made_up_link_unlinked() -> None:
    (genuine,) = _decisions(1)
    head = head_after(genuine)
    assert _reason(judge(head, _at(_forged(genuine, 2, genuine.hash or "", rehash=False)), 1)) == ALTERED
    assert _reason(judge(head, _at(_forged(genuine, 2, "5a" * 32)), 1)) == UNLINKED
    assert _reason(judge(head, _at(_forged(genuine, 3, genuine.hash or "")), 1)) == UNLINKED
    assert _reason(judge(head, _at(_forged(genuine, 2, genuine.hash or "")), 1)) is None, (
        "a forgery that links and hashes right is indistinguishable (the chain has no secret)"
    )


def test_a_record_continuing_a_chain_with_no_head_is_headless() -> None:
    _, second = _decisions(2)
    assert _reason(judge(None, _at(second, 1), 2)) == HEADLESS
    assert _reason(judge(None, _at(_forged(second, 1, "5a" * 32), 1), 2)) == HEADLESS


def test_records_the_agent_never_writes_are_skipped_with_their_reason() -> None:
    (genuine,) = _decisions(1)
    assert isinstance(genuine.payload, PolicyDecision)
    other_conv = dataclasses.replace(
        genuine, payload=dataclasses.replace(genuine.payload, conversation_id="x")
    )
    cases = {
        NOT_A_DECISION: _at(turn("conv-a", 1)),
        MISPLACED: _at(other_conv),
        UNCHAINED: _at(dataclasses.replace(genuine, sequence=None, prev_hash=None, hash=None)),
        NO_INPUT: _at(genuine, None),
    }
    for reason, record in cases.items():
        assert _reason(judge(None, record, 1)) == reason


def test_vouched_keeps_only_what_the_snapshot_heads_lead_back_through() -> None:
    d1, d2, d3 = _decisions(3)
    copy = _at(d1, HUGE, offset=1)  # a copy of d1 with a huge lf-input
    altered = _at(_forged(d2, 3, d2.hash or "", rehash=False), 1, offset=3)
    linked_elsewhere = _at(_forged(d1, 2, "5a" * 32), 1, offset=4)
    records = [_at(d1, 0, 0), copy, _at(d2, 1, 2), altered, linked_elsewhere, _at(d3, 2, 5)]
    found = vouched({head_after(d3).key: head_after(d3)}, records, input_end=3)
    assert [t.input_offset for t in found.taken] == [0, 1, 2] and not found.headless
    assert {r.offset: why.reason for r, why in found.skipped} == {1: BEYOND_INPUT, 3: ALTERED, 4: UNLINKED}
    found = vouched({}, records[:1], input_end=3)
    assert found.headless, (
        "a right-hashed record of a chain the snapshot does not know: the snapshot is incomplete"
    )
    assert not vouched({}, [altered], input_end=3).headless, (
        "a forgery does not make the snapshot look incomplete"
    )


# ---------------------------------------------------------------- the agent's recovery


def _append(world: World, decision: Event, input_offset: int | None, partition: int = 0) -> int:
    """Write ``decision`` straight to the output log, as anyone with access to Kafka can; its offset."""
    log = world.output.partitions.setdefault(partition, [])
    log.append(Written(len(log), codec.encode(decision), input_offset))
    world.output.keys.setdefault(partition, []).append(decision.subject.encode())
    return len(log) - 1


def _copy_with_huge_input(world: World) -> int:
    last = world.output.partitions[0][-1]
    return _append(world, codec.decode(last.value), HUGE)


def _genuine(world: World, forged: set[int]) -> list[Event]:
    return [codec.decode(w.value) for w in world.output.partitions[0] if w.offset not in forged]


def _restart(world: World, *, snapshot: bool) -> None:
    world.clock.now += policy.SNAPSHOT_EVERY_S
    if not snapshot:
        world.heads.snapshots.clear()
    world.agent = world.new_agent()


@pytest.mark.parametrize("snapshot", [True, False], ids=["after-the-snapshot", "no-snapshot"])
def test_a_copy_with_a_huge_lf_input_does_not_make_later_turns_look_decided(snapshot: bool) -> None:
    world = World()
    world.handle([world.inputs.add(0, turn("conv-a", n)) for n in (1, 2)])
    forged = {_copy_with_huge_input(world)}
    _restart(world, snapshot=snapshot)
    world.handle([world.inputs.add(0, turn("conv-b", 1)), world.inputs.add(0, turn("conv-a", 3))])
    genuine = _genuine(world, forged)
    assert [_input(d) for d in genuine] == [
        turn(c, n).event_id for c, n in (("conv-a", 1), ("conv-a", 2), ("conv-b", 1), ("conv-a", 3))
    ], "turns after the copy were taken as decided"
    assert chained(genuine, _conversation)


@pytest.mark.parametrize("rehash", [False, True], ids=["made-up-hash", "made-up-link"])
@pytest.mark.parametrize("snapshot", [True, False], ids=["after-the-snapshot", "no-snapshot"])
def test_a_chained_forgery_never_becomes_the_head_later_decisions_link_to(
    snapshot: bool, rehash: bool
) -> None:
    world = World()
    world.handle([world.inputs.add(0, turn("conv-a", n)) for n in (1, 2)])
    head = world.output.decisions(0)[-1]
    prev = head.hash or "" if not rehash else "5a" * 32
    forged = {_append(world, _forged(head, 3, prev, rehash=rehash), 1)}
    _restart(world, snapshot=snapshot)
    world.handle([world.inputs.add(0, turn("conv-a", 3))])
    genuine = _genuine(world, forged)
    assert [d.sequence for d in genuine] == [1, 2, 3] and chained(genuine, _conversation), (
        "the next decision linked to the forgery"
    )


def test_forgeries_the_snapshot_covers_neither_skip_turns_nor_pass_for_duplicate_deliveries() -> None:
    """Written while the agent runs: its later decisions and snapshot cover them, so the next owner
    only reads them back for its duplicate-delivery memory (``vouched``)."""
    world = World()
    world.handle([world.inputs.add(0, turn("conv-a", 1))])
    pending = turn("conv-b", 1)  # published, not decided yet: anyone can read its event id
    head = world.output.decisions(0)[-1]
    claim = _forged(head, 2, head.hash or "", rehash=False)
    assert isinstance(claim.payload, PolicyDecision)
    claim = dataclasses.replace(
        claim, payload=dataclasses.replace(claim.payload, input_event_id=pending.event_id)
    )
    forged = {_copy_with_huge_input(world), _append(world, claim, 0)}
    world.clock.now += policy.SNAPSHOT_EVERY_S
    world.handle([world.inputs.add(0, turn("conv-a", 2))])  # decided after the forgeries, and saved
    assert world.heads.snapshots[0].out_offset == 3, "the snapshot covers the forgeries"
    _restart(world, snapshot=True)
    world.handle([world.inputs.add(0, pending), world.inputs.add(0, turn("conv-a", 3))])
    genuine = _genuine(world, forged)
    assert [_input(d) for d in genuine] == [
        turn(c, n).event_id for c, n in (("conv-a", 1), ("conv-a", 2), ("conv-b", 1), ("conv-a", 3))
    ]
    assert chained(genuine, _conversation)


def test_a_snapshot_missing_a_head_the_log_continues_falls_back_to_the_whole_log() -> None:
    """A headless record after the snapshot may be the snapshot's gap (Redis lost the head while the
    worker ran), not a forgery: the log from its start tells, and no chain restarts."""
    world = World()
    world.handle([world.inputs.add(0, turn("conv-a", 1)), world.inputs.add(0, turn("conv-b", 1))])
    world.clock.now += policy.SNAPSHOT_EVERY_S / 10
    world.handle([world.inputs.add(0, turn("conv-a", 2))])  # after the snapshot
    del world.heads.snapshots[0].heads["acme/conv-a"]
    _restart(world, snapshot=True)
    world.handle([world.inputs.add(0, turn("conv-a", 3))])
    assert [d.sequence for d in world.output.decisions(0) if d.subject == "conv-a"] == [1, 2, 3]
    assert chained(world.output.decisions(0), _conversation)
    world.clock.now += policy.SNAPSHOT_EVERY_S
    world.handle([world.inputs.add(0, turn("conv-b", 2))])
    assert set(world.heads.snapshots[0].heads) == {"acme/conv-a", "acme/conv-b"}, (
        "after recovering from the log alone every head is saved again"
    )


def _ghost(genuine: Event) -> Event:
    """A decision of a conversation with no chain ("ghost"), sequence 2, its hash right."""
    forged = _forged(genuine, 2, "5a" * 32)
    assert isinstance(forged.payload, PolicyDecision)
    ghost = dataclasses.replace(
        forged, subject="ghost", payload=dataclasses.replace(forged.payload, conversation_id="ghost")
    )
    unhashed = ghost.with_chain(2, "5a" * 32, ZERO_HASH)
    return ghost.with_chain(2, "5a" * 32, compute_hash(unhashed.to_json(), "5a" * 32))


def test_a_headless_forgery_the_snapshot_covers_never_sends_recovery_back_to_the_logs_start() -> None:
    """A record of a chain that does not exist (any subject, a right hash): met after the snapshot it
    costs one read of the whole log; once a snapshot covers it, it is skipped at every recovery
    without one (a snapshot is complete: a partial save onto a lost or older one is refused)."""
    world = World()
    world.handle([world.inputs.add(0, turn("conv-a", 1))])
    ghost = _ghost(world.output.decisions(0)[-1])
    forged = {_append(world, ghost, 0)}
    world.clock.now += policy.SNAPSHOT_EVERY_S
    world.handle([world.inputs.add(0, turn("conv-a", 2))])  # decided after the forgery, and saved
    assert world.heads.snapshots[0].out_offset == 2, "the snapshot covers the forgery"
    reads: list[int] = []
    real_read = world.output.read

    def counted(partition: int, start: int = 0, end: int | None = None) -> Any:
        reads.append(start)
        return real_read(partition, start, end)

    world.output.read = counted  # type: ignore[method-assign]
    for _ in range(2):  # two recoveries
        _restart(world, snapshot=True)
        world.handle([world.inputs.add(0, turn("conv-a", 3 + len(reads)))])
    assert len(reads) == 2, f"one pass over the log per recovery, not {len(reads)}"
    genuine = _genuine(world, forged)
    assert [d.sequence for d in genuine] == [1, 2, 3, 4] and chained(genuine, _conversation)


def test_a_partial_save_onto_a_snapshot_redis_took_back_is_refused_and_no_chain_forks() -> None:
    """Redis restarted from an older dump (or failed over to a replica that lagged) while the agent
    ran: the stored snapshot went back to before conv-a's last decision. A save of only conv-b's
    head over it would leave conv-a's older head under a newer ``__out``, and the next owner would
    decide conv-a's next turn as a second record of the same sequence. The save is refused, and the
    next holds every head."""
    world = World()
    world.handle([world.inputs.add(0, turn("conv-a", 1))])
    older = dataclasses.replace(world.heads.snapshots[0], heads=dict(world.heads.snapshots[0].heads))
    world.clock.now += policy.SNAPSHOT_EVERY_S
    world.handle([world.inputs.add(0, turn("conv-a", 2))])  # saved: conv-a at sequence 2
    world.heads.snapshots[0] = older  # Redis goes back in time: conv-a at sequence 1
    world.clock.now += policy.SNAPSHOT_EVERY_S
    world.handle([world.inputs.add(0, turn("conv-b", 1))])  # a save of conv-b's head alone: refused
    world.clock.now += policy.SNAPSHOT_EVERY_S
    world.handle([world.inputs.add(0, turn("conv-b", 2))])  # the next save holds every head
    assert world.heads.snapshots[0].heads["acme/conv-a"].sequence == 2
    _restart(world, snapshot=True)
    world.handle([world.inputs.add(0, turn("conv-a", 3))])
    assert [d.sequence for d in world.output.decisions(0) if d.subject == "conv-a"] == [1, 2, 3]
    assert chained(world.output.decisions(0), _conversation)


def test_heads_a_new_owner_learns_from_the_log_past_the_snapshot_are_saved() -> None:
    """An owner that loses the partition before its next save leaves the snapshot without the heads
    it made since; its successor rolls them forward from the log and saves them."""
    world = World()
    world.handle([world.inputs.add(0, turn("conv-a", 1))])
    world.clock.now += policy.SNAPSHOT_EVERY_S / 10
    world.handle([world.inputs.add(0, turn("conv-b", 1))])  # not saved: revoked first
    world.agent.revoke({0})
    _restart(world, snapshot=True)
    world.handle([world.inputs.add(0, turn("conv-a", 2))])
    assert set(world.heads.snapshots[0].heads) == {"acme/conv-a", "acme/conv-b"}


def test_a_snapshot_claiming_inputs_past_the_input_end_is_waited_for_then_dropped(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A snapshot a recovery saved from a trusted copy (before this check existed) says input 10**15
    was decided: the input log is waited for, as a log behind its snapshot, then the log alone counts."""
    world = World()
    world.handle([world.inputs.add(0, turn("conv-a", 1))])
    world.heads.snapshots[0].last_input = HUGE
    world.agent = world.new_agent()
    later = world.inputs.add(0, turn("conv-a", 2))
    with pytest.raises(LogNotReady, match="snapshot says input offset 1000000000000000 was decided"):
        world.handle([later])
    monkeypatch.setattr(policy, "SNAPSHOT_DISTRUST_S", 0.0)
    world.agent = world.new_agent()
    world.handle([later])
    assert [_input(d) for d in world.output.decisions(0)] == [turn("conv-a", n).event_id for n in (1, 2)]


def test_each_record_skipped_is_logged_once_with_its_reason_and_counted(
    caplog: pytest.LogCaptureFixture,
) -> None:
    world = World()
    world.handle([world.inputs.add(0, turn("conv-a", 1))])
    head = world.output.decisions(0)[-1]
    copy = _copy_with_huge_input(world)
    altered = _append(world, _forged(head, 2, head.hash or "", rehash=False), 0)
    world.output.partitions[0].append(Written(altered + 1, b"\x00not avro", 0))
    _restart(world, snapshot=True)
    before = _skipped_metric()
    with caplog.at_level(logging.WARNING, logger="ledgerflow.agents.policy"):
        world.handle([world.inputs.add(0, turn("conv-a", 2))])
    lines = [r.getMessage() for r in caplog.records if "not taken as this agent's own" in r.getMessage()]
    assert [line.split("@")[1].split(" ")[0] for line in lines] == [str(copy), str(altered), str(altered + 1)]
    assert "beyond-input: lf-input 1000000000000000" in lines[0] and "altered: hash" in lines[1]
    assert "undecodable" in lines[2]
    assert _skipped_metric() - before == 3


def _skipped_metric() -> float:
    from prometheus_client import REGISTRY

    return sum(
        s.value
        for m in REGISTRY.collect()
        if m.name == "ledgerflow_policy_recovery_skipped"
        for s in m.samples
        if s.name.endswith("_total")
    )


def _reason(verdict: Trusted | Skipped) -> str | None:
    return verdict.reason if isinstance(verdict, Skipped) else None


def _input(decision: Event) -> str:
    assert isinstance(decision.payload, PolicyDecision)
    return decision.payload.input_event_id


def test_after_redis_lost_the_snapshot_the_next_save_holds_every_head(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A save of the chains changed since the last one, onto a snapshot Redis lost (a flush), would
    start a snapshot missing the others: a chain whose last record is older than the re-read window
    then restarts at sequence 1 with its next owner."""
    monkeypatch.setattr(policy, "DEDUPE_WINDOW", 2)  # stands for 10,000 records of other chains
    world = World()
    world.handle([world.inputs.add(0, turn("conv-b", 1)), world.inputs.add(0, turn("conv-a", 1))])
    world.heads.snapshots.clear()  # Redis flushed while the worker runs
    for n in (2, 3):
        world.clock.now += policy.SNAPSHOT_EVERY_S
        world.handle([world.inputs.add(0, turn("conv-a", n))])
    assert "acme/conv-b" in world.heads.snapshots[0].heads
    _restart(world, snapshot=True)
    world.handle([world.inputs.add(0, turn("conv-b", 2))])
    assert [d.sequence for d in world.output.decisions(0) if d.subject == "conv-b"] == [1, 2]
