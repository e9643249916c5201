"""Dedupe by identity, chain links and the guard, on the in-memory model of the writer (pure).

``MemorySpace`` mirrors the Lua script; ``tests/integration/test_projection_conditions.py``
checks that Redis ends in the same state.
"""

from __future__ import annotations

import dataclasses

from hypothesis import given, settings
from hypothesis import strategies as st

from ledgerflow.contracts.chain import ZERO_HASH, ChainHead, decision_chain_key, link
from ledgerflow.contracts.events import Event, derived_event_id, new_event
from ledgerflow.contracts.payloads import ConversationStarted, MessageSubmitted, PolicyDecision
from ledgerflow.projections.conversations import identity_of, project
from ledgerflow.projections.keys import Keys
from ledgerflow.projections.model import MemorySpace
from ledgerflow.projections.ops import FencedOps, Position
from ledgerflow.projections.writer import Refusal

KEYS = Keys("lf:unit:")
T0 = 1_700_000_000_000_000
EVENTS, DECISIONS = "conversation.events", "policy.decisions"


def turn(i: int, conv: str = "c1", tenant: str = "acme") -> Event:
    return new_event(
        "MessageSubmitted",
        tenant=tenant,
        subject=conv,
        payload=MessageSubmitted(f"t{i}", "user", f"hello {i}", "slm-1", 10),
        producer="unit",
        occurred_at_micros=T0 + i,
        event_id=derived_event_id("unit", f"{conv}/{i}"),
    )


def decision(i: int, head: ChainHead | None, conv: str = "c1") -> Event:
    unchained = new_event(
        "PolicyDecision",
        tenant="acme",
        subject=conv,
        payload=PolicyDecision(
            input_event_id=derived_event_id("unit", f"{conv}/{i}"),
            input_hash=None,
            conversation_id=conv,
            outcome="allow",
            score=0.1,
            matched_rules=(),
            rule_pack_version=1,
            constitution_hash="ab" * 32,
            training_version=0,
            training_enabled=False,
        ),
        producer="unit",
        occurred_at_micros=T0 + i,
        event_id=derived_event_id("decision", f"{conv}/{i}"),
    )
    linked = link(unchained.to_json(), head)
    return unchained.with_chain(linked["sequence"], linked["prev_hash"], linked["hash"])


def head(event: Event) -> ChainHead:
    assert event.sequence is not None and event.hash is not None
    return ChainHead(decision_chain_key(event.tenant, event.subject), event.sequence, event.hash)


def groups(*placed: tuple[Event, Position]) -> list[FencedOps]:
    return [g for event, at in placed for g in project(event, at, KEYS)]


def conv(space: MemorySpace, name: str = "c1") -> dict[str, str]:
    return space.data.get(KEYS.conversation("acme", name), {})  # type: ignore[no-any-return]


def test_the_same_turn_delivered_twice_is_counted_once() -> None:
    first = turn(1)
    again = dataclasses.replace(first)  # same event_id, another offset (a producer bypassing the edge)
    space = MemorySpace()
    result = space.apply(groups((first, Position(EVENTS, 0, 5)), (again, Position(EVENTS, 0, 9))))
    assert (result.applied, result.deduped) == (2, 2)  # conversation and tenant group of the first only
    assert conv(space)["turns"] == "1"
    assert space.data[KEYS.tenant("acme")]["turns"] == "1"
    assert len(space.data[KEYS.conversation_turns("acme", "c1")]) == 1


def test_the_duplicate_is_recognised_across_batches() -> None:
    space = MemorySpace()
    space.apply(groups((turn(1), Position(EVENTS, 0, 5))))
    later = space.apply(groups((turn(2), Position(EVENTS, 0, 6)), (turn(1), Position(EVENTS, 0, 7))))
    assert later.deduped == 2 and conv(space)["turns"] == "2"


def test_identity_is_the_event_id_for_events_and_the_input_for_decisions() -> None:
    assert identity_of(turn(1)) == f"e:{turn(1).event_id}"
    d = decision(1, None)
    assert isinstance(d.payload, PolicyDecision)
    assert identity_of(d) == f"d:c1/{d.payload.input_event_id}"
    started = new_event(
        "ConversationStarted",
        tenant="acme",
        subject="c1",
        payload=ConversationStarted(actor="a", model="m"),
        producer="unit",
        occurred_at_micros=T0,
    )
    assert identity_of(started) == f"e:{started.event_id}"


@settings(max_examples=30, deadline=None)
@given(st.lists(st.integers(0, 5), min_size=1, max_size=20))
def test_any_delivery_of_duplicates_counts_each_distinct_turn_once(order: list[int]) -> None:
    space = MemorySpace()
    placed = [(turn(i), Position(EVENTS, 0, offset)) for offset, i in enumerate(order)]
    space.apply(groups(*placed))
    assert conv(space)["turns"] == str(len(set(order)))
    assert int(space.data[KEYS.tenant("acme")]["tokens"]) == 10 * len(set(order))


def test_a_chain_that_links_is_projected() -> None:
    d1 = decision(1, None)
    d2 = decision(2, head(d1))
    space = MemorySpace()
    result = space.apply(groups((d1, Position(DECISIONS, 0, 0)), (d2, Position(DECISIONS, 0, 1))))
    assert result.refused == [] and result.applied == 4
    assert space.data[KEYS.tenant("acme")]["decisions_allow"] == "2"


def test_a_decision_that_does_not_link_never_reaches_the_read_model() -> None:
    d1 = decision(1, None)
    forged = decision(2, ChainHead("acme/c1", 1, "f" * 64))  # a valid hash of its own, the wrong prev_hash
    space = MemorySpace()
    result = space.apply(groups((d1, Position(DECISIONS, 0, 0)), (forged, Position(DECISIONS, 0, 1))))
    cursor = f"{DECISIONS}:0"
    assert result.refused == [Refusal(cursor, 1, "broken-link")] * 2  # once per group
    assert space.data[KEYS.tenant("acme")]["decisions_allow"] == "1"
    assert space.data[KEYS.conversation_quarantine("acme", "c1")] == {f"{cursor}@1": "broken-link"}
    assert len(space.data[KEYS.conversation_decisions("acme", "c1")]) == 1
    # The genuine next decision still links to the last projected one.
    d2 = decision(2, head(d1))
    assert space.apply(groups((d2, Position(DECISIONS, 0, 2)))).refused == []


def test_a_copy_of_a_decision_is_a_duplicate_delivery_not_a_forgery() -> None:
    d1 = decision(1, None)
    space = MemorySpace()
    result = space.apply(groups((d1, Position(DECISIONS, 0, 0)), (d1, Position(DECISIONS, 0, 1))))
    assert (result.deduped, result.refused) == (2, [])  # one decision per input event
    assert space.data[KEYS.tenant("acme")]["decisions_allow"] == "1"


def test_a_re_hashed_copy_for_another_input_does_not_link() -> None:
    d1 = decision(1, None)
    other = decision(9, None)  # sequence 1 again, another input: a chain restarting
    result = MemorySpace().apply(groups((d1, Position(DECISIONS, 0, 0)), (other, Position(DECISIONS, 0, 1))))
    assert {r.reason for r in result.refused} == {"broken-link"}


def test_a_chain_that_does_not_start_at_genesis_is_refused() -> None:
    late = decision(2, ChainHead("acme/c1", 1, "e" * 64))
    result = MemorySpace().apply(groups((late, Position(DECISIONS, 0, 0))))
    assert {r.reason for r in result.refused} == {"bad-genesis"}
    assert decision(1, None).prev_hash == ZERO_HASH


def test_without_its_guard_nothing_is_written() -> None:
    space = MemorySpace()
    lost = space.apply(groups((turn(1), Position(EVENTS, 0, 0))), guard=KEYS.sentinel())
    assert lost.lost and space.data == {}
    space.data[KEYS.sentinel()] = "1"
    assert space.apply(groups((turn(1), Position(EVENTS, 0, 0))), guard=KEYS.sentinel()).applied == 2


def test_a_forged_decision_for_a_turn_leaves_the_turn_to_its_genuine_decision() -> None:
    """A decision written from outside for a real turn, linked to nothing, is refused by its link:
    it must not claim the turn's identity, or the genuine decision after it is taken for a
    duplicate and never projected (and its chain never starts in the read model)."""
    forged = decision(1, ChainHead("acme/c1", 1, "f" * 64))  # the turn's input, a made-up link
    genuine, after = decision(1, None), decision(2, None)
    after = decision(2, head(genuine))
    for cut in (1, 2):  # the genuine decision in the forgery's batch, or in the next one
        space = MemorySpace()
        placed = [(forged, Position(DECISIONS, 0, 0)), (genuine, Position(DECISIONS, 0, 1))]
        first, second = space.apply(groups(*placed[:cut])), space.apply(groups(*placed[cut:]))
        assert {r.reason for r in first.refused + second.refused} == {"bad-genesis"}
        assert first.deduped + second.deduped == 0
        stored = space.data[KEYS.conversation_decisions("acme", "c1")]
        assert list(stored) == [genuine.payload.input_event_id]  # type: ignore[union-attr]
        assert space.apply(groups((after, Position(DECISIONS, 0, 2)))).refused == []
