"""Re-deriving decisions: altered, forged, missing and duplicate decisions are each found at
their own record position; an untouched log passes."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import pytest

from ledgerflow.audit.decisions import DecisionCheck, PackBook, describe_difference
from ledgerflow.contracts import codec
from ledgerflow.contracts.chain import link
from ledgerflow.contracts.events import derived_event_id
from ledgerflow.contracts.payloads import PolicyDecision
from ledgerflow.policy import TrainingState
from ledgerflow.policy.wire import decide


def decoded(check: DecisionCheck, log) -> list:
    """Every decision decoded and fed with its input offset."""
    for entry in log.inputs:
        check.add_input(entry.at, entry.event, entry.value)
    found = []
    for entry in log.decisions:
        found += check.feed(entry.at, codec.decode(entry.value), entry.value, entry.input_offset)
    return found + check.finish()


def rederived_first(check: DecisionCheck, log) -> list:
    """As ``audit/logchecks.py`` feeds them: a decision re-derived from its bytes' input with the
    previous decision's pack and states (``rederive_logged``), decoded only when that differs."""
    for entry in log.inputs:
        check.add_input(entry.at, entry.event, entry.value)
    found = []
    for entry in log.decisions:
        record = check.rederive_logged(entry.value, entry.input_offset) or codec.decode(entry.value)
        found += check.feed(entry.at, record, entry.value, entry.input_offset)
    return found + check.finish()


@pytest.fixture(params=[decoded, rederived_first], ids=["decoded", "rederived-first"])
def run(request: pytest.FixtureRequest) -> Callable[[DecisionCheck, object], list]:
    """Each check runs both ways: what it finds must not depend on which."""
    return request.param


def conversation(log, turns: int = 3, conv: str = "c-1") -> None:
    for n in range(turns):
        log.decide(log.turn(conv, f"question {n}"))


def test_an_untouched_log_re_derives_every_decision(run, hand_log, packs: PackBook) -> None:
    conversation(hand_log, 3, "c-1")
    conversation(hand_log, 2, "c-2")
    check = DecisionCheck(packs, {})
    assert run(check, hand_log) == []
    assert (check.turns, check.decisions, check.verified, check.pending) == (5, 5, 5, 0)


def test_an_altered_outcome_is_located_and_the_next_decision_still_verifies(
    run, hand_log, packs, with_payload
) -> None:
    conversation(hand_log, 3)
    original = hand_log.decisions[1].event
    hand_log.replace_decision(1, with_payload(original, outcome="deny", score=9.0))
    check = DecisionCheck(packs)
    found = run(check, hand_log)
    assert [(f.kind, f.topic, f.partition, f.offset) for f in found] == [
        ("decision.altered", "policy.decisions", 0, 1)
    ]
    assert "payload.outcome: recorded 'deny', re-derived 'allow'" in found[0].detail
    assert check.verified == 2


def test_a_forged_decision_with_no_input_is_reported_where_it_sits(
    run, hand_log, packs, with_payload
) -> None:
    conversation(hand_log, 2)
    genuine = hand_log.decisions[0].event
    fake_input = "00000000-0000-4000-8000-0000000000ff"
    forged = with_payload(genuine, input_event_id=fake_input)
    forged = dataclasses.replace(
        forged, event_id=derived_event_id("PolicyDecision", fake_input), subject="c-9"
    )
    body = link(forged.to_json(), None)
    hand_log.append_decision(forged.with_chain(body["sequence"], body["prev_hash"], body["hash"]))
    found = run(DecisionCheck(packs), hand_log)
    assert [(f.kind, f.offset, f.key) for f in found] == [("decision.forged", 2, "c-9")]
    assert fake_input in found[0].detail


def test_a_turn_without_decision_before_a_decided_one_is_missing_at_the_input(run, hand_log, packs) -> None:
    first = hand_log.turn("c-1", "hello")
    lost = hand_log.turn("c-2", "is anyone there")
    hand_log.decide(first)
    hand_log.decide(hand_log.turn("c-3", "later turn"))
    found = run(DecisionCheck(packs), hand_log)
    assert [(f.kind, f.topic, f.offset, f.key) for f in found] == [
        ("decision.missing", "conversation.events", lost.at.offset, "c-2")
    ]


def test_turns_after_the_last_decided_one_are_pending_not_missing(run, hand_log, packs) -> None:
    hand_log.decide(hand_log.turn("c-1", "hello"))
    hand_log.turn("c-1", "not decided yet")
    check = DecisionCheck(packs)
    assert run(check, hand_log) == []
    assert check.pending == 1


def test_a_second_decision_for_one_turn_is_a_duplicate(run, hand_log, packs) -> None:
    conversation(hand_log, 2)
    again = hand_log.decisions[1]
    hand_log.append_decision(again.event, again.value)
    found = run(DecisionCheck(packs), hand_log)
    assert [(f.kind, f.offset) for f in found] == [("decision.duplicate", 2)]
    assert "policy.decisions[0]@1" in found[0].detail


def test_an_input_hash_that_differs_is_reported(run, hand_log, packs) -> None:
    conversation(hand_log, 1)
    source = hand_log.inputs[0]
    tampered = dataclasses.replace(
        source.event, payload=dataclasses.replace(source.event.payload, content="edited")
    )
    hand_log.inputs[0] = dataclasses.replace(source, event=tampered, value=codec.encode(tampered))
    kinds = {f.kind for f in run(DecisionCheck(packs), hand_log)}
    assert kinds == {"decision.input-hash", "decision.altered"}


def test_a_pack_version_never_published_cannot_be_re_derived(run, hand_log, packs, with_payload) -> None:
    conversation(hand_log, 1)
    hand_log.replace_decision(0, with_payload(hand_log.decisions[0].event, rule_pack_version=7))
    found = run(DecisionCheck(packs), hand_log)
    assert [f.kind for f in found] == ["decision.pack-missing"]


def test_a_training_state_absent_from_training_audit_is_reported(run, hand_log, packs) -> None:
    hand_log.decide(hand_log.turn("c-1", "hi"), TrainingState(True, 3))
    assert [f.kind for f in run(DecisionCheck(packs, {("acme", 3): True}), hand_log)] == []
    found = run(DecisionCheck(packs, {("acme", 3): False}), hand_log)
    assert [f.kind for f in found] == ["decision.training-state"]


def test_describe_difference_names_fields_and_puts_hashes_last(hand_log, with_payload) -> None:
    hand_log.decide(hand_log.turn("c-1", "hi"))
    record = hand_log.decisions[0].event
    assert isinstance(record.payload, PolicyDecision)
    changed = with_payload(record, score=2.5)
    text = describe_difference(changed, record)
    assert text.startswith("payload.score: recorded 2.5, re-derived 0")


def test_a_decision_like_the_previous_one_is_re_derived_from_its_bytes_alone(
    hand_log, packs, with_payload
) -> None:
    """``rederive_logged`` gives the record the bytes decode to, once the tenant's first decision
    named the pack and states; a changed byte or another training state is decoded instead."""
    conversation(hand_log, 3)
    hand_log.decide(hand_log.turn("c-1", "training on now"), TrainingState(True, 3))
    hand_log.decide(hand_log.turn("c-1", "altered"), TrainingState(True, 3))
    hand_log.replace_decision(4, with_payload(hand_log.decisions[4].event, outcome="deny"))
    check = DecisionCheck(packs, {("acme", 3): True})
    for entry in hand_log.inputs:
        check.add_input(entry.at, entry.event, entry.value)
    derived = []
    for entry in hand_log.decisions:
        record = check.rederive_logged(entry.value, entry.input_offset)
        derived.append(record is not None)
        if record is not None:
            assert record == codec.decode(entry.value)
        check.feed(entry.at, record or codec.decode(entry.value), entry.value, entry.input_offset)
    assert derived == [False, True, True, False, False]
    assert check.verified == 4  # the altered one does not re-derive either way


def test_a_re_derivation_that_raises_unexpectedly_is_a_finding_and_the_audit_goes_on(
    run, hand_log, packs: PackBook
) -> None:
    """An exception other than a LedgerflowError while re-deriving one decision (a bug its input
    triggers) used to end the whole audit; the policy agent dead-letters such a turn and goes on."""
    conversation(hand_log, 2, "c-1")
    hostile = hand_log.turn("c-2", "the turn that breaks the evaluation")
    victim = hand_log.decide(hostile)
    conversation(hand_log, 2, "c-3")

    def derive(event, value, pack, training, head, models):
        if event.event_id == hostile.event.event_id:
            raise ValueError("line one\n  line two " + "x" * 500)
        return decide(event, value, pack, training, head, models)

    check = DecisionCheck(packs, {}, derive=derive)
    [finding] = run(check, hand_log)
    assert (finding.kind, finding.topic, finding.partition, finding.offset) == (
        "decision.underivable",
        victim.at.topic,
        victim.at.partition,
        victim.at.offset,
    )
    assert finding.key == "c-2"
    assert f"input at conversation.events[0]@{hostile.at.offset} raised ValueError: line one line two x" in (
        finding.detail
    )
    assert "\n" not in finding.detail and len(finding.detail) < 400
    assert (check.turns, check.decisions, check.verified) == (5, 5, 4)
