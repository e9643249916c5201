"""The traffic generator: reproducible for a seed, well-formed conversations, every policy outcome."""

from __future__ import annotations

import dataclasses
import random
from collections import Counter, defaultdict

import pytest

from ledgerflow.contracts.events import Event
from ledgerflow.contracts.payloads import ConversationClosed, ConversationStarted, MessageSubmitted
from ledgerflow.traffic import ALLOW, DENY, REDACT, REVIEW, Mix, interleaved, script

T0 = 1_700_000_000_000_000
POOLS = {"allow": ALLOW, "review": REVIEW, "redact": REDACT, "deny": DENY}


def outcome_of(content: str) -> str:
    return next(name for name, pool in POOLS.items() if content in pool)


def without_ids(events: list[Event]) -> list[Event]:
    return [dataclasses.replace(e, event_id="-") for e in events]


def run(seed: int, conversations: int = 40) -> list[Event]:
    return list(interleaved(random.Random(seed), ["acme", "globex", "initech"], conversations, T0))


def test_same_seed_gives_the_same_traffic_apart_from_event_ids() -> None:
    assert without_ids(run(7)) == without_ids(run(7))
    assert without_ids(script(random.Random(3), "acme", "c1", T0)) == without_ids(
        script(random.Random(3), "acme", "c1", T0)
    )


def test_different_seeds_give_different_traffic() -> None:
    assert without_ids(run(7)) != without_ids(run(8))


def test_same_seed_gives_the_same_event_ids() -> None:
    assert [e.event_id for e in run(7, 3)] == [e.event_id for e in run(7, 3)]


def test_script_is_started_turns_then_closed_with_rising_timestamps() -> None:
    events = script(random.Random(1), "acme", "c1", T0, turns=3)
    assert [type(e.payload) for e in events] == (
        [ConversationStarted] + [MessageSubmitted] * 6 + [ConversationClosed]
    )
    roles = [e.payload.role for e in events[1:-1]]  # type: ignore[union-attr]
    assert roles == ["user", "assistant"] * 3
    assert [e.payload.turn_id for e in events[1:-1]] == ["t1u", "t1a", "t2u", "t2a", "t3u", "t3a"]  # type: ignore[union-attr]
    times = [e.occurred_at for e in events]
    assert times[0] == T0 and times == sorted(times) and len(set(times)) == len(times)
    assert {(e.tenant, e.subject) for e in events} == {("acme", "c1")}


def test_only_assistant_turns_carry_tokens() -> None:
    turns = [
        e.payload
        for e in script(random.Random(2), "acme", "c1", T0, turns=4)
        if isinstance(e.payload, MessageSubmitted)
    ]
    assert all(t.tokens is None for t in turns if t.role == "user")
    assert all(t.tokens is not None and 20 <= t.tokens <= 400 for t in turns if t.role == "assistant")


def test_interleaving_keeps_each_conversation_whole_and_in_order() -> None:
    events = run(11, conversations=30)
    per_conv: dict[str, list[Event]] = defaultdict(list)
    for e in events:
        per_conv[e.subject].append(e)
    assert len(per_conv) == 30
    for conv, evs in per_conv.items():
        assert isinstance(evs[0].payload, ConversationStarted), conv
        assert isinstance(evs[-1].payload, ConversationClosed), conv
        assert not any(isinstance(e.payload, (ConversationStarted, ConversationClosed)) for e in evs[1:-1])
        assert [e.occurred_at for e in evs] == sorted(e.occurred_at for e in evs), conv
        assert len({e.tenant for e in evs}) == 1
    # Really interleaved: some conversation starts before an earlier one has closed.
    order = [e.subject for e in events]
    assert order != sorted(order, key=lambda s: order.index(s))


def test_interleaving_spreads_conversations_over_tenants_round_robin() -> None:
    starts = [e for e in run(5, conversations=9) if isinstance(e.payload, ConversationStarted)]
    assert Counter(e.tenant for e in starts) == {"acme": 3, "globex": 3, "initech": 3}


def test_interleaving_never_opens_more_than_the_limit_at_once() -> None:
    open_now, most = set(), 0
    for e in interleaved(random.Random(4), ["acme"], 50, T0, open_at_once=3):
        if isinstance(e.payload, ConversationStarted):
            open_now.add(e.subject)
        most = max(most, len(open_now))
        if isinstance(e.payload, ConversationClosed):
            open_now.discard(e.subject)
    assert most == 3


def test_run_id_names_the_conversations() -> None:
    subjects = {e.subject for e in interleaved(random.Random(1), ["acme"], 3, T0, run_id="r1")}
    assert subjects == {"conv-r1-0", "conv-r1-1", "conv-r1-2"}


def test_default_mix_yields_every_outcome_class_in_roughly_its_share() -> None:
    rng, mix = random.Random(99), Mix()
    counts = Counter(outcome_of(mix.pick(rng)) for _ in range(5000))
    assert set(counts) == {"allow", "review", "redact", "deny"}
    for name, share in (
        ("allow", mix.allow),
        ("review", mix.review),
        ("redact", mix.redact),
        ("deny", mix.deny),
    ):
        assert abs(counts[name] / 5000 - share) < 0.03, (name, counts)


def test_generated_user_turns_cover_every_outcome_class() -> None:
    user_turns = [
        e.payload.content
        for e in run(21, conversations=200)  # type: ignore[union-attr]
        if isinstance(e.payload, MessageSubmitted) and e.payload.role == "user"
    ]
    assert {outcome_of(c) for c in user_turns} == {"allow", "review", "redact", "deny"}


@pytest.mark.parametrize("only", ["allow", "review", "redact", "deny"])
def test_a_mix_with_one_class_only_yields_that_class(only: str) -> None:
    mix = Mix(**{name: 1.0 if name == only else 0.0 for name in POOLS})
    rng = random.Random(0)
    assert {outcome_of(mix.pick(rng)) for _ in range(300)} == {only}
