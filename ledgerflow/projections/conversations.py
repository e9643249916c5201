"""The conversation and tenant read models, as a pure function of one record.

``project(event, position, keys)`` returns the fenced Redis ops for the record: one group
for the conversation's keys and one for the tenant's, each applied at most once.
A conversation event is counted once per ``event_id`` and a decision once per input event
(``Once``: a producer writing Kafka directly may deliver one event twice), and a decision
or a training outcome is projected only if it links to its chain's last projected record
(``ChainLink``: a decision's chain is its conversation's, a training outcome's its tenant's).
Sources: ``conversation.events``, ``policy.decisions``, ``training.audit`` (training
status per tenant) and ``usage.windows`` (token usage per tenant, model and window).
The tenant's conversation index (``Keys.tenant_conversations``) is scored by the time of
each conversation's last *conversation event*: one conversation's events share one
partition, so a live projection and a rebuild apply them in the same order and agree.
"""

from __future__ import annotations

from functools import singledispatch

import orjson

from ledgerflow.contracts.events import Event
from ledgerflow.contracts.payloads import (
    ConversationClosed,
    ConversationStarted,
    MessageSubmitted,
    PolicyDecision,
    TrainingDisabled,
    TrainingEnabled,
    TrainingExpired,
    TrainingRejected,
    UsageWindow,
)
from ledgerflow.projections.keys import Keys
from ledgerflow.projections.ops import ChainLink, FencedOps, Once, Position, RedisOp
from ledgerflow.projections.usage_fields import LATE_SOURCE, usage_field
from ledgerflow.topics import CONVERSATION_EVENTS, POLICY_DECISIONS, TRAINING_AUDIT, USAGE_WINDOWS

RECENT_DENIALS = 50
TRAINING_OUTCOMES = (TrainingEnabled, TrainingDisabled, TrainingExpired, TrainingRejected)
"""The ``training.audit`` records: chained per tenant, projected only if they link (``_link``)."""
SOURCES = (CONVERSATION_EVENTS, POLICY_DECISIONS, TRAINING_AUDIT, USAGE_WINDOWS)


def project(event: Event, position: Position, keys: Keys) -> list[FencedOps]:
    conv_ops, tenant_ops = _ops(event.payload, event, keys)
    conv_id = _conversation_id(event)
    identity = identity_of(event)
    groups = []
    if conv_ops:
        fence = keys.conversation_fence(event.tenant, conv_id)
        once = Once(keys.conversation_seen(event.tenant, conv_id), identity) if identity else None
        link = _link(event, keys, "conversation")
        groups.append(FencedOps(fence, position, tuple(conv_ops), once, link))
    if tenant_ops:
        once = Once(keys.tenant_seen(event.tenant), identity) if identity else None
        link = _link(event, keys, "tenant")
        groups.append(FencedOps(keys.tenant_fence(event.tenant), position, tuple(tenant_ops), once, link))
    return groups


def identity_of(event: Event) -> str | None:
    """What makes two deliveries the same fact: a conversation event's ``event_id``, a
    decision's input event (one decision per turn), a ``LateUsage`` delta's ``event_id`` (its
    id names the turn it counts, ``usage/wire.py``); None for records not deduplicated (a
    window's revision sets its field: applied twice, the same)."""
    if isinstance(event.payload, PolicyDecision):
        return f"d:{event.payload.conversation_id}/{event.payload.input_event_id}"
    if isinstance(event.payload, (ConversationStarted, MessageSubmitted, ConversationClosed)):
        return f"e:{event.event_id}"
    if isinstance(event.payload, UsageWindow) and event.payload.revision < 0:
        return f"u:{event.event_id}"  # a LateUsage delta is added (HINCRBY), not set: once per id
    return None


def _link(event: Event, keys: Keys, copy: str) -> ChainLink | None:
    """The chain condition of a decision or training outcome that carries chain fields (other
    records are not chained). A training outcome is chained per tenant (its subject): its one
    group, the tenant's, checks the tenant's training chain head."""
    if event.sequence is None or event.prev_hash is None or event.hash is None:
        return None
    if isinstance(event.payload, TRAINING_OUTCOMES):
        head, quarantine = keys.training_chain(event.tenant), keys.training_quarantine(event.tenant)
        return ChainLink(head, copy, event.sequence, event.prev_hash, event.hash, quarantine)
    if not isinstance(event.payload, PolicyDecision):
        return None
    if copy == "tenant":  # every key of a group in its entity's slot (one Lua call on a Redis Cluster)
        head, field = keys.tenant_chain(event.tenant, event.subject), copy
        quarantine = keys.tenant_chain_quarantine(event.tenant, event.subject)
    else:
        head, field = keys.decision_chain(event.tenant, event.subject), copy
        quarantine = keys.conversation_quarantine(event.tenant, event.payload.conversation_id)
    return ChainLink(head, field, event.sequence, event.prev_hash, event.hash, quarantine)


def _conversation_id(event: Event) -> str:
    payload = event.payload
    return payload.conversation_id if isinstance(payload, PolicyDecision) else event.subject


@singledispatch
def _ops(payload: object, event: Event, keys: Keys) -> tuple[list[RedisOp], list[RedisOp]]:
    return [], []


def _touch(event: Event, keys: Keys, **fields: str | int) -> RedisOp:
    """HSET of the conversation hash: identity, last activity, and ``fields``."""
    values: dict[str, str | int] = {
        "tenant": event.tenant,
        "conversation_id": event.subject,
        **fields,
        "updated_at": event.occurred_at,
        "last_event_id": event.event_id,
    }
    return RedisOp(
        "HSET", keys.conversation(event.tenant, event.subject), tuple(x for kv in values.items() for x in kv)
    )


@_ops.register
def _(payload: ConversationStarted, event: Event, keys: Keys) -> tuple[list[RedisOp], list[RedisOp]]:
    started = _touch(
        event, keys, status="open", actor=payload.actor, model=payload.model, started_at=event.occurred_at
    )
    return [started], [
        RedisOp("HINCRBY", keys.tenant(event.tenant), ("conversations_started", 1)),
        _activity(event, keys),
    ]


def _activity(event: Event, keys: Keys) -> RedisOp:
    """The conversation's place in its tenant's index: the time of its latest event."""
    return RedisOp("ZADD", keys.tenant_conversations(event.tenant), (event.occurred_at, event.subject))


def turn_entry(event: Event, payload: MessageSubmitted) -> str:
    """A turn as the conversation's turn list holds it (JSON)."""
    return orjson.dumps(
        {
            "event_id": event.event_id,
            "turn_id": payload.turn_id,
            "role": payload.role,
            "content": payload.content,
            "model": payload.model,
            "tokens": payload.tokens,
            "occurred_at": event.occurred_at,
        }
    ).decode()


def decision_entry(event: Event, payload: PolicyDecision) -> str:
    """A decision as the conversation's decisions and the tenant's denials hold it (JSON)."""
    return orjson.dumps(
        {
            "event_id": event.event_id,
            "input_event_id": payload.input_event_id,
            "outcome": payload.outcome,
            "score": payload.score,
            "matched_rules": list(payload.matched_rules),
            "rule_pack_version": payload.rule_pack_version,
            "constitution_hash": payload.constitution_hash,
            "training_version": payload.training_version,
            "redactions": [[r.start, r.end] for r in payload.redactions],
            # a step retried with its Idempotency-Key is answered from here: the same as the first
            "signer_kid": payload.signer_kid,
        }
    ).decode()


@_ops.register
def _(payload: MessageSubmitted, event: Event, keys: Keys) -> tuple[list[RedisOp], list[RedisOp]]:
    conv = keys.conversation(event.tenant, event.subject)
    tokens = payload.tokens or 0
    turn = turn_entry(event, payload)
    conv_ops = [
        _touch(event, keys),
        RedisOp("HINCRBY", conv, ("turns", 1)),
        RedisOp("HINCRBY", conv, ("tokens", tokens)),
        RedisOp("RPUSH", keys.conversation_turns(event.tenant, event.subject), (turn,)),
    ]
    tenant = keys.tenant(event.tenant)
    return conv_ops, [
        RedisOp("HINCRBY", tenant, ("turns", 1)),
        RedisOp("HINCRBY", tenant, ("tokens", tokens)),
        _activity(event, keys),
    ]


@_ops.register
def _(payload: ConversationClosed, event: Event, keys: Keys) -> tuple[list[RedisOp], list[RedisOp]]:
    closed = _touch(event, keys, status="closed", closed_reason=payload.reason)
    return [closed], [
        RedisOp("HINCRBY", keys.tenant(event.tenant), ("conversations_closed", 1)),
        _activity(event, keys),
    ]


@_ops.register
def _(payload: PolicyDecision, event: Event, keys: Keys) -> tuple[list[RedisOp], list[RedisOp]]:
    conv_id = payload.conversation_id
    decision = decision_entry(event, payload)
    conv_ops = [
        RedisOp("HSET", keys.conversation(event.tenant, conv_id), ("last_decision", decision)),
        RedisOp(
            "HSET", keys.conversation_decisions(event.tenant, conv_id), (payload.input_event_id, decision)
        ),
    ]
    tenant = keys.tenant(event.tenant)
    tenant_ops = [RedisOp("HINCRBY", tenant, (f"decisions_{payload.outcome}", 1))]
    if payload.outcome == "deny":
        # A sorted set by event time: the same final state whatever order partitions interleave in.
        denials = keys.tenant_denials(event.tenant)
        tenant_ops += [
            RedisOp("ZADD", denials, (event.occurred_at, decision)),
            RedisOp("ZREMRANGEBYRANK", denials, (0, -RECENT_DENIALS - 1)),
        ]
    return conv_ops, tenant_ops


@_ops.register(TrainingEnabled)
@_ops.register(TrainingDisabled)
@_ops.register(TrainingExpired)
def _(payload: TrainingEnabled, event: Event, keys: Keys) -> tuple[list[RedisOp], list[RedisOp]]:
    status = keys.training(event.tenant)
    fields: tuple[str | int, ...] = (
        "tenant",
        event.tenant,
        "state",
        "enabled" if event.type == "TrainingEnabled" else "disabled",
        "version",
        payload.version,
        "owner",
        payload.actor,
        "reason",
        payload.reason,
        "expires_at",
        payload.expires_at if event.type == "TrainingEnabled" and payload.expires_at else "",
        "changed_at",
        event.occurred_at,
        "last_event",
        event.type,
    )
    return [], [RedisOp("HSET", status, fields), RedisOp("HINCRBY", status, (f"count_{event.type}", 1))]


@_ops.register
def _(payload: TrainingRejected, event: Event, keys: Keys) -> tuple[list[RedisOp], list[RedisOp]]:
    status = keys.training(event.tenant)
    return [], [
        RedisOp("HSET", status, ("tenant", event.tenant, "last_rejection", payload.rejected_reason or "")),
        RedisOp("HINCRBY", status, ("count_TrainingRejected", 1)),
    ]


@_ops.register
def _(payload: UsageWindow, event: Event, keys: Keys) -> tuple[list[RedisOp], list[RedisOp]]:
    if payload.revision < 0:
        # A LateUsage delta (a turn for a window past retention): added to a field of its own,
        # which readers sum with the window's (latest revision + every delta); set into the
        # window's field, it replaced the window's total with the one late turn's.
        field = usage_field(
            payload.model, payload.window_start, payload.window_end, event.producer + LATE_SOURCE
        )
        return [], [
            RedisOp("HINCRBY", keys.usage(event.tenant), (field, payload.tokens)),
            RedisOp("HINCRBY", keys.usage_turns(event.tenant), (field, payload.events)),
        ]
    # One field per (model, window, source partition): a correction replaces its window's total.
    field = usage_field(payload.model, payload.window_start, payload.window_end, event.producer)
    return [], [
        RedisOp("HSET", keys.usage(event.tenant), (field, payload.tokens)),
        RedisOp("HSET", keys.usage_turns(event.tenant), (field, payload.events)),
    ]
