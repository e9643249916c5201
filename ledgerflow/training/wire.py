"""The training aggregate's events ↔ the ``training.audit`` records (Avro payloads).

Pure. The wire record keeps what an auditor needs to fold the log and check every
transition: version, actor, reason, expiry, and for a rejection ``"<code>: <message>"``.
"""

from __future__ import annotations

from ledgerflow.contracts import payloads
from ledgerflow.contracts.events import Event, new_event
from ledgerflow.training import records
from ledgerflow.training.aggregate import MICROS_PER_SECOND
from ledgerflow.versioned import CommandSource, command_fields, outcome_event_id

PRODUCER = "ledgerflow-training"
EXPIRY_ACTOR = "ledgerflow-training"


def command_of(event: Event, admin: bool = True) -> records.TrainingCommand:
    """The aggregate command of a ``training.commands`` record (an admin's: ``command_fields``)."""
    p = event.payload
    if isinstance(p, payloads.EnableTraining):
        fields = command_fields(event, admin)
        return records.EnableTraining(reason=p.reason, ttl_seconds=p.ttl_seconds, **fields)
    if isinstance(p, payloads.DisableTraining):
        return records.DisableTraining(reason=p.reason, **command_fields(event, admin))
    raise TypeError(f"{event.type} is not a training command")


def record_of(
    event: records.TrainingEvent, *, trace_id: str | None = None, source: CommandSource | None = None
) -> Event:
    """The unchained ``training.audit`` record of an aggregate event (deterministic id: from its
    command's id, or its position ``source`` when it has none, ``versioned.outcome_event_id``)."""
    if isinstance(event, records.TrainingEnabled):
        payload: object = payloads.TrainingEnabled(
            event.command_id, event.version, event.actor, event.reason, event.expires_at, None
        )
        ident = event.command_id
    elif isinstance(event, records.TrainingDisabled):
        payload = payloads.TrainingDisabled(
            event.command_id, event.version, event.actor, event.reason, None, None
        )
        ident = event.command_id
    elif isinstance(event, records.TrainingExpired):
        payload = payloads.TrainingExpired(
            None, event.version, EXPIRY_ACTOR, "the TTL elapsed", event.expires_at, None
        )
        ident = f"expiry-{event.version}"
    else:
        payload = payloads.TrainingRejected(
            event.command_id, event.version, event.actor, event.reason, None, f"{event.code}: {event.reason}"
        )
        ident = event.command_id
    kind = type(event).__name__
    return new_event(
        kind,
        tenant=event.tenant,
        subject=event.tenant,
        payload=payload,  # type: ignore[arg-type]
        producer=PRODUCER,
        occurred_at_micros=event.occurred_at,
        trace_id=trace_id,
        event_id=outcome_event_id(kind, event.tenant, ident, source),
    )


def event_of(record: Event) -> records.TrainingEvent:
    """The aggregate event a ``training.audit`` record stands for (for folding and audits)."""
    p = record.payload
    at = record.occurred_at
    if isinstance(p, payloads.TrainingEnabled):
        expires = p.expires_at if p.expires_at is not None else at
        return records.TrainingEnabled(
            tenant=record.tenant,
            version=p.version,
            command_id=p.command_id or "",
            actor=p.actor,
            reason=p.reason,
            ttl_seconds=(expires - at) // MICROS_PER_SECOND,
            occurred_at=at,
            expires_at=expires,
            issued_at=at,
        )
    if isinstance(p, payloads.TrainingDisabled):
        return records.TrainingDisabled(
            tenant=record.tenant,
            version=p.version,
            command_id=p.command_id or "",
            actor=p.actor,
            reason=p.reason,
            occurred_at=at,
            issued_at=at,
        )
    if isinstance(p, payloads.TrainingExpired):
        return records.TrainingExpired(
            tenant=record.tenant, version=p.version, expires_at=p.expires_at or at, occurred_at=at
        )
    if isinstance(p, payloads.TrainingRejected):
        code, _, message = (p.rejected_reason or "").partition(": ")
        return records.TrainingRejected(
            tenant=record.tenant,
            version=p.version,
            command_id=p.command_id or "",
            command_type="",
            actor=p.actor,
            code=code,
            reason=message or p.reason,
            occurred_at=at,
            issued_at=at,
        )
    raise TypeError(f"{record.type} is not a training.audit record")
