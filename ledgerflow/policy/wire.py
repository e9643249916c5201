"""From a conversation event to its chained decision record: pure, so an auditor can
re-derive every decision record bit for bit from its inputs.

The decision's ``event_id`` is derived from the input's, its ``occurred_at`` is the
input's, and its chain fields come from the conversation's previous decision: given the
same input bytes, rule pack, training state and chain head, the same record results.
"""

from __future__ import annotations

import hashlib

from ledgerflow.contracts.chain import (
    DECISION_TYPE,
    USAGE_TYPE,
    ChainHead,
    decision_chain_key,
    usage_chain_key,
)
from ledgerflow.contracts.eventhash import link_event
from ledgerflow.contracts.events import Event, derived_event_id, new_event
from ledgerflow.contracts.payloads import MessageSubmitted, Outcome, PolicyDecision, Redaction
from ledgerflow.policy import (
    NO_MODELS,
    Action,
    Decision,
    ModelCatalog,
    RulePack,
    TrainingState,
    Turn,
    evaluate,
)

PRODUCER = "ledgerflow-policy"
DECISION_V1 = 1
"""PolicyDecision schema of decisions without ``models_version``."""

# The policy core's action → the wire's outcome literal (the same words).
OUTCOMES: dict[Action, Outcome] = {
    Action.ALLOW: "allow",
    Action.REVIEW: "review",
    Action.REDACT: "redact",
    Action.DENY: "deny",
}


def input_hash(value: bytes) -> str:
    """SHA-256 of the input record's exact bytes on the wire."""
    return hashlib.sha256(value).hexdigest()


def turn_of(event: Event) -> Turn | None:
    """The turn to evaluate, or None for events that get no decision."""
    payload = event.payload
    if not isinstance(payload, MessageSubmitted):
        return None
    return Turn(event.event_id, event.tenant, event.subject, payload.role, payload.content, payload.model)


def decision_payload(
    event: Event, value_hash: str, decision: Decision, signer_kid: str | None = None
) -> PolicyDecision:
    return PolicyDecision(
        input_event_id=event.event_id,
        input_hash=value_hash,
        conversation_id=event.subject,
        outcome=OUTCOMES[decision.outcome],
        score=decision.score,
        matched_rules=tuple(decision.matched_rules),
        rule_pack_version=decision.rule_pack_version or 0,
        constitution_hash=decision.constitution_hash,
        training_version=decision.training_version,
        training_enabled=decision.training_enabled,
        redactions=tuple(Redaction(s, e) for s, e in decision.redactions),
        signer_kid=signer_kid,
        models_version=decision.models_version,
    )


def decide(
    event: Event,
    value: bytes,
    pack: RulePack,
    training: TrainingState,
    head: ChainHead | None,
    models: ModelCatalog = NO_MODELS,
) -> Event | None:
    """The chained PolicyDecision record for ``event``, or None if it needs no decision.

    A decision that read no model registry (its pack has no model rule) is written with
    schema v1, as before v2 added ``models_version``: its bytes stay what they always were.
    """
    turn = turn_of(event)
    if turn is None:
        return None
    payload = decision_payload(
        event, input_hash(value), evaluate(turn, pack, training, models=models), pack.signer_kid
    )
    record = new_event(
        "PolicyDecision",
        tenant=event.tenant,
        subject=event.subject,
        payload=payload,
        producer=PRODUCER,
        occurred_at_micros=event.occurred_at,
        event_id=derived_event_id("PolicyDecision", event.event_id),
        trace_id=event.trace_id,
        schema_version=DECISION_V1 if payload.models_version is None and payload.signer_kid is None else None,
    )
    return chain(record, head)


def chain(record: Event, head: ChainHead | None) -> Event:
    return link_event(record, head)


def chain_key(record: Event) -> str:
    """The chain ``record`` belongs to: (tenant, conversation) for decisions, (tenant, writer)
    for usage windows, else its subject (``contracts.chain.chain_key_of`` on the wire form)."""
    if record.type == DECISION_TYPE:
        return decision_chain_key(record.tenant, record.subject)
    if record.type == USAGE_TYPE:
        return usage_chain_key(record.tenant, record.producer)
    return record.subject


def head_after(record: Event) -> ChainHead:
    assert record.sequence is not None and record.hash is not None
    return ChainHead(chain_key(record), record.sequence, record.hash)
