"""``project``: which fenced op groups each event type yields, and where they land."""

from __future__ import annotations

import orjson
import pytest

from ledgerflow.contracts.events import Event, new_event
from ledgerflow.contracts.payloads import (
    ConversationClosed,
    ConversationStarted,
    MessageSubmitted,
    PolicyDecision,
    Redaction,
    RulePackPublished,
    TrainingDisabled,
    TrainingEnabled,
    TrainingExpired,
    TrainingRejected,
    UsageWindow,
)
from ledgerflow.projections.conversations import RECENT_DENIALS, project
from ledgerflow.projections.keys import Keys
from ledgerflow.projections.ops import FencedOps, Position, RedisOp

KEYS = Keys("lf:unit:")
T0 = 1_700_000_000_000_000
EVENTS_AT = Position("conversation.events", 2, 41)
DECISIONS_AT = Position("policy.decisions", 0, 7)
EID = "00000000-0000-4000-8000-000000000001"
INPUT_EID = "00000000-0000-4000-8000-000000000002"


def hash_tag(key: str) -> str:
    """The part of ``key`` Redis Cluster hashes (its rule: first ``{`` to the next ``}``, if non-empty)."""
    start = key.find("{")
    if start == -1:
        return key
    end = key.find("}", start + 1)
    if end == -1 or end == start + 1:
        return key
    return key[start + 1 : end]


def keys_of(group: FencedOps) -> set[str]:
    return {group.fence_key} | {op.key for op in group.ops}


def event(payload: object, *, tenant: str = "acme", subject: str = "c1", event_id: str = EID) -> Event:
    return new_event(
        type(payload).__name__,
        tenant=tenant,
        subject=subject,
        payload=payload,  # type: ignore[arg-type]
        producer="unit",
        occurred_at_micros=T0,
        event_id=event_id,
    )


def decision(
    outcome: str, *, conversation_id: str = "c1", subject: str = "c1", signer_kid: str | None = None
) -> Event:
    payload = PolicyDecision(
        input_event_id=INPUT_EID,
        input_hash=None,
        conversation_id=conversation_id,
        outcome=outcome,  # type: ignore[arg-type]
        score=0.75,
        matched_rules=("secrets.aws",),
        rule_pack_version=3,
        constitution_hash="ab" * 32,
        training_version=2,
        training_enabled=False,
        redactions=(Redaction(4, 9),),
        signer_kid=signer_kid,
    )
    return event(payload, subject=subject)


def by_fence(groups: list[FencedOps]) -> dict[str, FencedOps]:
    return {g.fence_key: g for g in groups}


def assert_one_slot_per_group(groups: list[FencedOps]) -> None:
    for group in groups:
        tags = {hash_tag(k) for k in keys_of(group)}
        assert len(tags) == 1, f"keys of one fenced group span several slots: {sorted(keys_of(group))}"


def test_hash_tag_helper_follows_redis_cluster_rule() -> None:
    assert hash_tag("a{b}c{d}") == "b"
    assert hash_tag("a{}b") == "a{}b"  # empty tag: the whole key is hashed
    assert hash_tag("plain") == "plain"


def test_conversation_started_opens_conversation_and_counts_for_tenant() -> None:
    groups = project(event(ConversationStarted(actor="ana", model="slm-1")), EVENTS_AT, KEYS)

    conv_fence, tenant_fence = KEYS.conversation_fence("acme", "c1"), KEYS.tenant_fence("acme")
    assert [g.fence_key for g in groups] == [conv_fence, tenant_fence]
    conv, tenant = by_fence(groups)[conv_fence], by_fence(groups)[tenant_fence]
    assert conv.ops == (
        RedisOp(
            "HSET",
            KEYS.conversation("acme", "c1"),
            (
                "tenant",
                "acme",
                "conversation_id",
                "c1",
                "status",
                "open",
                "actor",
                "ana",
                "model",
                "slm-1",
                "started_at",
                T0,
                "updated_at",
                T0,
                "last_event_id",
                EID,
            ),
        ),
    )
    assert tenant.ops == (
        RedisOp("HINCRBY", KEYS.tenant("acme"), ("conversations_started", 1)),
        # the tenant's conversation index, by last activity
        RedisOp("ZADD", KEYS.tenant_conversations("acme"), (T0, "c1")),
    )
    assert all(g.position == EVENTS_AT for g in groups)
    assert_one_slot_per_group(groups)


def test_message_with_tokens_appends_turn_and_adds_tokens_to_conversation_and_tenant() -> None:
    msg = MessageSubmitted("t1a", "assistant", "Sure.", "slm-1", 123)
    groups = by_fence(project(event(msg), EVENTS_AT, KEYS))

    conv_key, turns_key = KEYS.conversation("acme", "c1"), KEYS.conversation_turns("acme", "c1")
    conv_ops = groups[KEYS.conversation_fence("acme", "c1")].ops
    assert conv_ops[:3] == (
        RedisOp(
            "HSET",
            conv_key,
            ("tenant", "acme", "conversation_id", "c1", "updated_at", T0, "last_event_id", EID),
        ),
        RedisOp("HINCRBY", conv_key, ("turns", 1)),
        RedisOp("HINCRBY", conv_key, ("tokens", 123)),
    )
    push = conv_ops[3]
    assert (push.command, push.key) == ("RPUSH", turns_key)
    assert orjson.loads(push.args[0]) == {  # type: ignore[arg-type]
        "event_id": EID,
        "turn_id": "t1a",
        "role": "assistant",
        "content": "Sure.",
        "model": "slm-1",
        "tokens": 123,
        "occurred_at": T0,
    }
    assert groups[KEYS.tenant_fence("acme")].ops == (
        RedisOp("HINCRBY", KEYS.tenant("acme"), ("turns", 1)),
        RedisOp("HINCRBY", KEYS.tenant("acme"), ("tokens", 123)),
        RedisOp("ZADD", KEYS.tenant_conversations("acme"), (T0, "c1")),
    )
    assert_one_slot_per_group(list(groups.values()))


def test_message_without_tokens_counts_zero_tokens_and_keeps_null_in_turn() -> None:
    msg = MessageSubmitted("t1u", "user", "hello", "slm-1", None)
    groups = by_fence(project(event(msg), EVENTS_AT, KEYS))

    conv_ops = groups[KEYS.conversation_fence("acme", "c1")].ops
    assert RedisOp("HINCRBY", KEYS.conversation("acme", "c1"), ("tokens", 0)) in conv_ops
    assert orjson.loads(conv_ops[-1].args[0])["tokens"] is None  # type: ignore[arg-type]
    assert RedisOp("HINCRBY", KEYS.tenant("acme"), ("tokens", 0)) in groups[KEYS.tenant_fence("acme")].ops


def test_conversation_closed_sets_status_and_reason_and_counts_for_tenant() -> None:
    groups = by_fence(project(event(ConversationClosed("user-ended")), EVENTS_AT, KEYS))

    assert groups[KEYS.conversation_fence("acme", "c1")].ops == (
        RedisOp(
            "HSET",
            KEYS.conversation("acme", "c1"),
            (
                "tenant",
                "acme",
                "conversation_id",
                "c1",
                "status",
                "closed",
                "closed_reason",
                "user-ended",
                "updated_at",
                T0,
                "last_event_id",
                EID,
            ),
        ),
    )
    assert groups[KEYS.tenant_fence("acme")].ops == (
        RedisOp("HINCRBY", KEYS.tenant("acme"), ("conversations_closed", 1)),
        RedisOp("ZADD", KEYS.tenant_conversations("acme"), (T0, "c1")),
    )


def test_allow_decision_is_stored_by_input_event_and_counted_but_not_listed_as_denial() -> None:
    groups = by_fence(project(decision("allow"), DECISIONS_AT, KEYS))

    conv_ops = groups[KEYS.conversation_fence("acme", "c1")].ops
    assert [(op.command, op.key) for op in conv_ops] == [
        ("HSET", KEYS.conversation("acme", "c1")),
        ("HSET", KEYS.conversation_decisions("acme", "c1")),
    ]
    assert conv_ops[0].args[0] == "last_decision"
    assert conv_ops[1].args[0] == INPUT_EID
    assert conv_ops[0].args[1] == conv_ops[1].args[1]
    assert orjson.loads(conv_ops[1].args[1]) == {  # type: ignore[arg-type]
        "event_id": EID,
        "input_event_id": INPUT_EID,
        "outcome": "allow",
        "score": 0.75,
        "matched_rules": ["secrets.aws"],
        "rule_pack_version": 3,
        "constitution_hash": "ab" * 32,
        "training_version": 2,
        "redactions": [[4, 9]],
        "signer_kid": None,
    }
    assert groups[KEYS.tenant_fence("acme")].ops == (
        RedisOp("HINCRBY", KEYS.tenant("acme"), ("decisions_allow", 1)),
    )
    assert all(g.position == DECISIONS_AT for g in groups.values())


def test_a_decision_keeps_the_key_that_signed_its_pack() -> None:
    """A step retried with its Idempotency-Key is answered from the stored decision: it must name
    the signer as the first answer (from the log) did."""
    groups = by_fence(project(decision("deny", signer_kid="k-2026"), DECISIONS_AT, KEYS))
    stored = [op.args[1] for g in groups.values() for op in g.ops if op.command in ("HSET", "ZADD")]
    assert stored and all(orjson.loads(s)["signer_kid"] == "k-2026" for s in stored)  # type: ignore[arg-type]


def test_deny_decision_adds_recent_denial_by_event_time_and_keeps_only_the_newest() -> None:
    groups = by_fence(project(decision("deny"), DECISIONS_AT, KEYS))

    tenant_ops = groups[KEYS.tenant_fence("acme")].ops
    denials = KEYS.tenant_denials("acme")
    assert tenant_ops[0] == RedisOp("HINCRBY", KEYS.tenant("acme"), ("decisions_deny", 1))
    assert (tenant_ops[1].command, tenant_ops[1].key, tenant_ops[1].args[0]) == ("ZADD", denials, T0)
    assert orjson.loads(tenant_ops[1].args[1])["outcome"] == "deny"  # type: ignore[arg-type]
    # Drops every rank below the newest RECENT_DENIALS (ranks 0 .. -(N+1)).
    assert tenant_ops[2] == RedisOp("ZREMRANGEBYRANK", denials, (0, -RECENT_DENIALS - 1))
    assert len(tenant_ops) == 3
    assert_one_slot_per_group(list(groups.values()))


@pytest.mark.parametrize("outcome", ["allow", "review", "redact"])
def test_only_deny_touches_recent_denials(outcome: str) -> None:
    groups = project(decision(outcome), DECISIONS_AT, KEYS)
    assert KEYS.tenant_denials("acme") not in {op.key for g in groups for op in g.ops}


def test_decision_is_filed_under_payload_conversation_not_envelope_subject() -> None:
    groups = project(decision("allow", conversation_id="c9", subject="something-else"), DECISIONS_AT, KEYS)
    assert groups[0].fence_key == KEYS.conversation_fence("acme", "c9")
    assert {op.key for op in groups[0].ops} == {
        KEYS.conversation("acme", "c9"),
        KEYS.conversation_decisions("acme", "c9"),
    }


def test_event_types_without_a_read_model_project_to_nothing() -> None:
    pack = RulePackPublished(version=1, constitution_hash="ab" * 32, document="{}")
    assert project(event(pack, subject="default"), EVENTS_AT, KEYS) == []


def test_usage_window_sets_one_field_per_model_window_and_source_in_the_tenant_slot() -> None:
    usage = UsageWindow(
        model="slm-1",
        window_start=T0,
        window_end=T0 + 60_000_000,
        tokens=5,
        events=1,
        estimated_tokens=0,
        correction=False,
        revision=1,
    )
    groups = project(event(usage, subject="slm-1"), EVENTS_AT, KEYS)
    assert [g.fence_key for g in groups] == [KEYS.tenant_fence("acme")]
    window = f"slm-1|{T0}|{T0 + 60_000_000}|unit"
    assert groups[0].ops == (
        RedisOp("HSET", KEYS.usage("acme"), (window, 5)),
        RedisOp("HSET", KEYS.usage_turns("acme"), (window, 1)),
    )
    assert_one_slot_per_group(groups)


@pytest.mark.parametrize(
    ("payload", "state"),
    [
        (
            TrainingEnabled(command_id="k1", version=3, actor="admin-1", reason="pilot", expires_at=T0 + 5),
            "enabled",
        ),
        (TrainingDisabled(command_id="k2", version=4, actor="admin-1", reason="done"), "disabled"),
        (TrainingExpired(command_id=None, version=5, actor="system", reason="ttl"), "disabled"),
    ],
)
def test_training_outcome_sets_tenant_training_status_and_counts_it(payload: object, state: str) -> None:
    groups = project(event(payload), EVENTS_AT, KEYS)
    assert [g.fence_key for g in groups] == [KEYS.tenant_fence("acme")]
    hset, count = groups[0].ops
    fields = dict(zip(hset.args[::2], hset.args[1::2]))
    assert (hset.command, hset.key) == ("HSET", KEYS.training("acme"))
    assert fields["state"] == state and fields["version"] == payload.version  # type: ignore[attr-defined]
    assert fields["expires_at"] == (T0 + 5 if state == "enabled" else "")
    assert count == RedisOp("HINCRBY", KEYS.training("acme"), (f"count_{type(payload).__name__}", 1))
    assert_one_slot_per_group(groups)


def test_training_rejection_records_the_reason_without_changing_state() -> None:
    rejected = TrainingRejected(
        command_id="k3", version=4, actor="bob", reason="try", rejected_reason="not an admin"
    )
    (group,) = project(event(rejected), EVENTS_AT, KEYS)
    assert group.ops[0] == RedisOp(
        "HSET", KEYS.training("acme"), ("tenant", "acme", "last_rejection", "not an admin")
    )
    assert "state" not in group.ops[0].args


@pytest.mark.parametrize(
    "payload",
    [
        ConversationStarted(actor="ana", model="slm-1"),
        MessageSubmitted("t1", "user", "hi", "slm-1", 3),
        ConversationClosed("timeout"),
    ],
)
def test_every_group_of_a_record_lives_in_one_slot_and_is_fenced_in_that_slot(payload: object) -> None:
    groups = project(event(payload, tenant="globex", subject="conv-7"), EVENTS_AT, KEYS)
    assert_one_slot_per_group(groups)
    tags = [hash_tag(g.fence_key) for g in groups]
    assert tags == ["globex/conv-7", "globex"]


def test_late_usage_deltas_are_added_in_a_field_of_their_own_and_readers_sum_them_with_the_window() -> None:
    """A LateUsage delta (revision -1) was set into its window's field: the window's total became
    the one late turn's tokens. Now each delta is added to the source's ``+late`` field, which
    ``GET /v1/usage`` sums with the window's latest revision (the contract of docs/usage.md)."""
    from ledgerflow.api.usage import windows
    from ledgerflow.projections.model import MemorySpace

    def record(tokens: int, events: int, revision: int, offset: int) -> list[FencedOps]:
        return usage_record(
            tokens, events, revision, offset, f"00000000-0000-4000-8000-0000000001{offset:02d}"
        )

    space = MemorySpace()
    for offset, (tokens, events, revision) in enumerate([(100, 4, 0), (5, 1, -1), (7, 1, -1), (120, 5, 1)]):
        for group in record(tokens, events, revision, offset):
            space.apply([group])
    usage, turns = space.data[KEYS.usage("acme")], space.data[KEYS.usage_turns("acme")]
    (window,) = windows(usage, turns)["windows"]
    assert (window["tokens"], window["turns"]) == (120 + 5 + 7, 5 + 2), (usage, turns)


def test_a_late_usage_delta_delivered_twice_is_added_once() -> None:
    """A delta is added, not set: the same record (one ``event_id``) at two offsets was added
    twice, where the audit (``audit/usage.py``) and docs/usage.md count each delta once."""
    from ledgerflow.api.usage import windows
    from ledgerflow.projections.model import MemorySpace

    space = MemorySpace()
    for offset, (tokens, events, revision, eid) in enumerate(
        [(100, 4, 0, EID), (5, 1, -1, INPUT_EID), (5, 1, -1, INPUT_EID), (120, 5, 1, EID), (120, 5, 1, EID)]
    ):
        for group in usage_record(tokens, events, revision, offset, eid):
            space.apply([group])
    usage, turns = space.data[KEYS.usage("acme")], space.data[KEYS.usage_turns("acme")]
    (window,) = windows(usage, turns)["windows"]
    assert (window["tokens"], window["turns"]) == (120 + 5, 5 + 1), (usage, turns)


def usage_record(tokens: int, events: int, revision: int, offset: int, event_id: str) -> list[FencedOps]:
    """A ``usage.windows`` record of window [T0, T0 + 60 s) of slm-1 (revision -1: a LateUsage delta)."""
    payload = UsageWindow(
        model="slm-1",
        window_start=T0,
        window_end=T0 + 60_000_000,
        tokens=tokens,
        events=events,
        estimated_tokens=0,
        correction=revision != 0,
        revision=revision,
    )
    return project(
        event(payload, subject="slm-1", event_id=event_id), Position("usage.windows", 0, offset), KEYS
    )
