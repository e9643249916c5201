"""The idempotency key space and claim judgement: pure, no Redis."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ledgerflow.api.idempotency import (
    REUSED,
    STALE_S,
    Claim,
    InFlight,
    event_key,
    fingerprint,
    judge,
    redis_key,
    released,
    step_event_id,
    step_key,
    undo_to,
)
from ledgerflow.errors import ValidationError

# Ids of the grammar, hostile text (separators, braces, colons, non-ASCII), and the hashes
# the encoding itself produces: every kind of component the key space must keep apart.
_ID = st.from_regex(r"[A-Za-z0-9][A-Za-z0-9._:@-]{0,20}", fullmatch=True)
_HOSTILE = st.text(alphabet=st.sampled_from("ab:}{/~|\\ \r\n会-."), min_size=0, max_size=8)
_COMPONENT = st.one_of(_ID, _HOSTILE, st.text(max_size=12))
_TRIPLE = st.tuples(_COMPONENT, _COMPONENT, _COMPONENT)


@settings(max_examples=300, deadline=None)
@given(_TRIPLE, _TRIPLE)
def test_distinct_tenant_subject_key_never_share_a_redis_key(a: tuple, b: tuple) -> None:
    if a != b:
        assert step_key("p.", *a) != step_key("p.", *b)
    else:
        assert step_key("p.", *a) == step_key("p.", *b)


@settings(max_examples=200, deadline=None)
@given(st.tuples(_COMPONENT, _COMPONENT), st.tuples(_COMPONENT, _COMPONENT))
def test_distinct_tenant_event_id_never_share_a_redis_key(a: tuple, b: tuple) -> None:
    assert (event_key("p.", *a) == event_key("p.", *b)) == (a == b)


def test_the_reported_collision_is_gone() -> None:
    # tenant X with key "a}:b" and tenant "X}:a" with key "b" used to share one key.
    assert step_key("", "X", "alice", "a}:b") != step_key("", "X}:a", "alice", "b")
    # two users of one tenant never share a key
    assert step_key("", "acme", "alice", "k") != step_key("", "acme", "bob", "k")


def test_a_hashed_component_cannot_pose_as_an_id() -> None:
    hostile = "not an id"
    hashed = redis_key("", "s", "acme", hostile).split("/")[-1]
    assert hashed.startswith("~")
    assert redis_key("", "s", "acme", hashed[1:]) != redis_key("", "s", "acme", hostile)


def test_keys_carry_the_tenant_hash_tag_and_no_client_text() -> None:
    key = step_key("t1.", "acme", "alice", "my key\r\n")
    assert key.startswith("lf:t1.idem:{acme}/alice/") and "my key" not in key and "\r" not in key


def test_fingerprint_ignores_key_order_but_not_values() -> None:
    assert fingerprint({"a": 1, "b": "x"}) == fingerprint({"b": "x", "a": 1})
    assert fingerprint({"a": 1, "b": "x"}) != fingerprint({"a": 1, "b": "y"})


def test_claim_round_trips() -> None:
    claim = Claim("f", "e", 12.5, "0:7")
    assert Claim.decode(claim.encode()) == claim


def test_judge() -> None:
    mine = Claim("f1", "new-id", 1000.0)
    published = Claim("f1", "old-id", 990.0, "2:41")
    assert judge(published, mine, 1000.0) == judge(published, mine, 1000.0)
    decision = judge(published, mine, 1000.0)
    assert (decision.publish, decision.event_id, decision.position) == (False, "old-id", "2:41")
    with pytest.raises(ValidationError, match=REUSED):
        judge(Claim("f2", "old-id", 990.0, "2:41"), mine, 1000.0)
    with pytest.raises(InFlight):
        judge(Claim("f1", "old-id", 999.0), mine, 1000.0)
    own = judge(Claim("f1", "new-id", 1000.0), mine, 1000.5)
    assert (own.publish, own.event_id) == (True, "new-id")  # our SET landed, its reply was lost
    stale = judge(Claim("f1", "old-id", 1000.0 - STALE_S - 1), mine, 1000.0)
    assert (stale.publish, stale.event_id) == (True, "old-id")  # same event id again, never a new one


def test_an_unconfirmed_takeover_puts_the_earlier_claim_back_and_an_own_claim_is_deleted() -> None:
    mine = Claim("f1", "new-id", 1000.0)
    stale = Claim("f1", "old-id", 1000.0 - STALE_S - 1)
    assert undo_to(stale, mine, stale.encode()) == stale.encode()  # a retry takes over old-id again
    assert undo_to(mine, mine, mine.encode()) is None  # our own first claim: gone, as if never made
    same_id_older = Claim("f1", "new-id", 990.0)  # another request's claim, even with our event id
    assert undo_to(same_id_older, mine, same_id_older.encode()) == same_id_older.encode()


def test_a_released_claim_is_taken_over_at_once_with_its_event_id_and_stays_bound_to_its_request() -> None:
    """A publish failed (or timed out, maybe landing anyway): the retry must publish the *same*
    event id at once, not a new one, and the key stays bound to what the first request asked."""
    held = Claim("f1", "first-id", 1000.0)
    retry = Claim("f1", "retry-id", 1000.2)  # a new request object, a new event id of its own
    after = judge(released(held), retry, 1000.2)
    assert (after.publish, after.event_id) == (True, "first-id")
    assert released(held).position is None
    with pytest.raises(ValidationError):  # another request under the same key: still 422
        judge(released(held), Claim("f2", "other-id", 1000.2), 1000.2)


@settings(max_examples=300, deadline=None)
@given(_TRIPLE, _TRIPLE, st.sampled_from(["a" * 64, "b" * 64]), st.sampled_from(["a" * 64, "b" * 64]))
def test_a_step_event_id_names_one_scope_and_request(a: tuple, b: tuple, fa: str, fb: str) -> None:
    """Derived, not drawn: a retry after Redis lost the claim publishes the same event id."""
    assert step_event_id(*a, fa) == step_event_id(*a, fa)
    assert (step_event_id(*a, fa) == step_event_id(*b, fb)) == (a == b and fa == fb)
