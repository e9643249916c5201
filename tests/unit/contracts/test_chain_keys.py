"""Decision chains are keyed by (tenant, conversation): ``decision_chain_key`` and
``chain_key_of`` (docs/hash-chains.md, "Rule: conversation ids may repeat across tenants")."""

from __future__ import annotations

import re
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ledgerflow.contracts.chain import (
    ZERO_HASH,
    Located,
    chain_key_of,
    decision_chain_key,
    head_of,
    link,
    verify,
)
from ledgerflow.contracts.ids import is_id
from ledgerflow.errors import ValidationError
from ledgerflow.projections.keys import Keys

IDS = st.from_regex(r"[A-Za-z0-9][A-Za-z0-9._:-]{0,20}", fullmatch=True).filter(is_id)


def decision(tenant: str, subject: str, n: int) -> dict[str, Any]:
    return {"type": "PolicyDecision", "tenant": tenant, "subject": subject, "payload": {"n": n}}


def test_the_decision_chain_key_is_tenant_slash_subject() -> None:
    assert decision_chain_key("acme", "c-2") == "acme/c-2"
    assert decision_chain_key("acme", "c-2") != decision_chain_key("globex", "c-2")


def test_ids_never_contain_the_separator() -> None:
    assert not is_id("a/b")


@settings(max_examples=50, deadline=None)
@given(IDS, IDS, IDS, IDS)
def test_two_different_pairs_of_ids_never_share_a_key(t1: str, s1: str, t2: str, s2: str) -> None:
    assert (decision_chain_key(t1, s1) == decision_chain_key(t2, s2)) == ((t1, s1) == (t2, s2))


def test_a_decision_is_chained_per_tenant_and_subject_every_other_record_per_subject() -> None:
    assert chain_key_of(decision("acme", "c-2", 1)) == "acme/c-2"
    assert chain_key_of({"type": "UsageWindow", "tenant": "acme", "subject": "acme"}) == "acme"
    assert chain_key_of({"type": "TrainingStateChanged", "tenant": "acme", "subject": "acme"}) == "acme"
    assert chain_key_of({"type": "PolicyDecision", "tenant": "acme"}) is None


def test_the_head_of_a_decision_is_keyed_by_its_chain_key() -> None:
    first = link(decision("acme", "c-2", 1), None)
    assert head_of(first).key == "acme/c-2"
    assert link(decision("acme", "c-2", 2), head_of(first))["sequence"] == 2


def test_link_refuses_the_head_of_another_tenants_chain_with_the_same_conversation_id() -> None:
    theirs = head_of(link(decision("acme", "c-2", 1), None))
    with pytest.raises(ValidationError, match=re.escape("'globex/c-2' is not the head's key 'acme/c-2'")):
        link(decision("globex", "c-2", 1), theirs)


def test_two_tenants_interleaved_on_one_partition_each_verify_from_sequence_one() -> None:
    heads: dict[str, Any] = {}
    stream = []
    for offset, (tenant, n) in enumerate((t, n) for n in range(3) for t in ("acme", "globex")):
        record = link(decision(tenant, "c-2", n), heads.get(tenant))
        heads[tenant] = head_of(record)
        stream.append(Located("policy.decisions", 0, offset, chain_key_of(record) or "", record))
    assert [r.record["sequence"] for r in stream] == [1, 1, 2, 2, 3, 3]
    assert stream[0].record["prev_hash"] == stream[1].record["prev_hash"] == ZERO_HASH
    assert verify(stream) == []
    # Keyed by the conversation id alone, the same records break (the old, shared chain).
    by_subject = [Located(r.topic, r.partition, r.offset, "c-2", r.record) for r in stream]
    assert verify(by_subject) != []


def test_the_projected_chain_lives_in_its_conversations_slot_and_is_per_tenant() -> None:
    keys = Keys()

    def tag(key: str) -> str:
        return key[key.index("{") + 1 : key.index("}")]

    assert tag(keys.decision_chain("acme", "c-2")) == tag(keys.conversation("acme", "c-2"))
    assert keys.decision_chain("acme", "c-2") != keys.decision_chain("globex", "c-2")
