"""The model-registry aggregate ↔ the ``models.commands`` / ``models.audit`` records. Pure."""

from __future__ import annotations

from dataclasses import fields
from typing import Any

from ledgerflow.contracts import payloads as wire
from ledgerflow.contracts.events import Event, new_event
from ledgerflow.models.records import (
    ModelCommand,
    ModelDisabled,
    ModelEnabled,
    ModelEvent,
    ModelRegistered,
    ModelRejected,
    ModelSettings,
    RegisterModel,
    SetModelEnabled,
)
from ledgerflow.versioned import CommandSource, command_fields, outcome_event_id

PRODUCER = "ledgerflow-models"


def command_of(event: Event, admin: bool = True) -> ModelCommand:
    """The aggregate command of a ``models.commands`` record (an admin's: ``command_fields``)."""
    p = event.payload
    if isinstance(p, wire.RegisterModel):
        return RegisterModel(model=p.model, settings=_settings_of(p), **command_fields(event, admin))
    if isinstance(p, wire.SetModelEnabled):
        return SetModelEnabled(model=p.model, enabled=p.enabled, **command_fields(event, admin))
    raise TypeError(f"{event.type} is not a model-registry command")


def record_of(
    event: ModelEvent, *, trace_id: str | None = None, source: CommandSource | None = None
) -> Event:
    """The unchained ``models.audit`` record of an aggregate event (id derived from the command's
    id, or from its position ``source`` when it has none: ``versioned.outcome_event_id``)."""
    head = (event.command_id, event.version, event.actor, event.model)
    payload: wire.Payload
    if isinstance(event, ModelRegistered):
        s = event.settings
        payload = wire.ModelRegistered(
            *head, s.provider, s.context_window, s.input_price_per_1k, s.output_price_per_1k, s.enabled
        )
    elif isinstance(event, ModelEnabled):
        payload = wire.ModelEnabled(*head)
    elif isinstance(event, ModelDisabled):
        payload = wire.ModelDisabled(*head)
    else:
        payload = wire.ModelRejected(*head, f"{event.code}: {event.reason}")
    kind = type(event).__name__
    return new_event(
        kind,
        tenant=event.tenant,
        subject=event.tenant,
        payload=payload,
        producer=PRODUCER,
        occurred_at_micros=event.occurred_at,
        trace_id=trace_id,
        event_id=outcome_event_id(kind, event.tenant, event.command_id, source),
    )


def event_of(record: Event) -> ModelEvent:
    """The aggregate event a ``models.audit`` record stands for (folding, audits, reference data)."""
    p = record.payload
    common: dict[str, Any] = {
        "tenant": record.tenant,
        "command_id": getattr(p, "command_id", ""),
        "version": getattr(p, "version", 0),
        "actor": getattr(p, "actor", ""),
        "model": getattr(p, "model", ""),
        "occurred_at": record.occurred_at,
    }
    if isinstance(p, wire.ModelRegistered):
        return ModelRegistered(settings=_settings_of(p), **common)
    if isinstance(p, wire.ModelEnabled):
        return ModelEnabled(**common)
    if isinstance(p, wire.ModelDisabled):
        return ModelDisabled(**common)
    if isinstance(p, wire.ModelRejected):
        code, _, message = p.rejected_reason.partition(": ")
        return ModelRejected(code=code, reason=message, **common)
    raise TypeError(f"{record.type} is not a models.audit record")


def _settings_of(p: wire.RegisterModel | wire.ModelRegistered) -> ModelSettings:
    """The settings a command asks for, or an outcome registered: both records carry every field
    of ``ModelSettings`` under its name."""
    return ModelSettings(**{f.name: getattr(p, f.name) for f in fields(ModelSettings)})
