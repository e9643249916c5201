"""Completeness and duplicate deliveries in the decision check (pure; hand-built logs)."""

from __future__ import annotations

import dataclasses
import hashlib
from typing import Any

from ledgerflow.audit.decisions import DecisionCheck, PackBook
from ledgerflow.projections.ops import Position

EVENTS = "conversation.events"
HandLog = Any  # tests/unit/audit/conftest.py


def _redeliver(log: HandLog, entry: Any) -> Any:
    """The same record written again at the end of the partition (a producer retry)."""
    again = dataclasses.replace(entry, at=Position(EVENTS, 0, len(log.inputs)))
    log.inputs.append(again)
    return again


def _run(check: DecisionCheck, log: HandLog, timestamps: dict[int, int] | None = None) -> list:
    for entry in log.inputs:
        check.add_input(entry.at, entry.event, entry.value, (timestamps or {}).get(entry.at.offset))
    found = []
    for entry in log.decisions:
        found += check.feed(entry.at, entry.event, entry.value, input_offset=None)
    return found + check.finish()


def test_a_duplicate_delivery_decided_once_is_counted_not_reported(
    hand_log: HandLog, packs: PackBook
) -> None:
    first = hand_log.turn("c-1", "hello")
    hand_log.decide(first)
    _redeliver(hand_log, first)
    hand_log.decide(hand_log.turn("c-1", "next"))
    check = DecisionCheck(packs)
    assert _run(check, hand_log) == []
    assert (check.turns, check.duplicate_deliveries, check.decisions, check.pending) == (2, 1, 2, 0)


def test_a_duplicate_decided_again_for_its_own_delivery_is_not_tampering(
    hand_log: HandLog, packs: PackBook
) -> None:
    first = hand_log.turn("c-1", "hello")
    hand_log.decide(first)
    again = _redeliver(hand_log, first)
    second = hand_log.decide(again)  # the agent's dedupe window had forgotten the first
    check = DecisionCheck(packs)
    for entry in hand_log.inputs:
        check.add_input(entry.at, entry.event, entry.value)
    found = check.feed(hand_log.decisions[0].at, hand_log.decisions[0].event, hand_log.decisions[0].value, 0)
    found += check.feed(second.at, second.event, second.value, again.at.offset)
    assert found + check.finish() == []
    assert check.decided_again == 1


def test_the_same_delivery_decided_twice_is_still_a_duplicate(hand_log: HandLog, packs: PackBook) -> None:
    first = hand_log.turn("c-1", "hello")
    decision = hand_log.decide(first)
    check = DecisionCheck(packs)
    check.add_input(first.at, first.event, first.value)
    assert check.feed(decision.at, decision.event, decision.value, 0) == []
    [finding] = check.feed(Position("policy.decisions", 0, 1), decision.event, decision.value, 0)
    assert finding.kind == "decision.duplicate"


def test_an_undecided_turn_older_than_the_grace_period_is_missing_at_its_position(
    hand_log: HandLog, packs: PackBook
) -> None:
    hand_log.decide(hand_log.turn("c-1", "hello"))
    stuck = hand_log.turn("c-1", "never decided")
    fresh = hand_log.turn("c-1", "just written")
    check = DecisionCheck(packs, overdue_before_ms=10_000)
    found = _run(check, hand_log, {stuck.at.offset: 9_000, fresh.at.offset: 11_000})
    assert [(f.kind, f.topic, f.partition, f.offset) for f in found] == [
        ("decision.missing", EVENTS, 0, stuck.at.offset)
    ]
    assert check.pending == 1


def test_a_dead_lettered_turn_is_accounted_for_not_missing(hand_log: HandLog, packs: PackBook) -> None:
    refused = hand_log.turn("c-1", "could not be evaluated")
    hand_log.decide(hand_log.turn("c-1", "later"))
    check = DecisionCheck(packs)
    check.dead_lettered = {refused.at.offset: {hashlib.sha256(refused.value).hexdigest()}}
    assert _run(check, hand_log) == []
    assert check.turns_dead_lettered == 1


def test_a_letter_naming_a_turns_position_but_another_value_does_not_excuse_it(
    hand_log: HandLog, packs: PackBook
) -> None:
    """Anyone who can write Kafka can put a letter into the DLQ naming any position: one whose
    value is not the turn's (a letter the agent never wrote) used to hide the turn's missing
    decision."""
    stuck = hand_log.turn("c-1", "never decided")
    hand_log.decide(hand_log.turn("c-1", "later"))
    check = DecisionCheck(packs)
    check.dead_lettered = {stuck.at.offset: {hashlib.sha256(b"forged").hexdigest()}}
    assert [(f.kind, f.offset) for f in _run(check, hand_log)] == [("decision.missing", stuck.at.offset)]
    assert check.turns_dead_lettered == 0


def test_a_decision_naming_another_events_offset_is_forged(hand_log: HandLog, packs: PackBook) -> None:
    a = hand_log.turn("c-1", "a")
    b = hand_log.turn("c-1", "b")
    decision = hand_log.decide(a)
    check = DecisionCheck(packs)
    check.add_input(a.at, a.event, a.value)
    check.add_input(b.at, b.event, b.value)
    [finding] = check.feed(decision.at, decision.event, decision.value, b.at.offset)
    assert finding.kind == "decision.forged"
