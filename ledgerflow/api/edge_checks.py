"""Checks the edge makes before it publishes anything: whatever could fail after the
publish (a header built from an id, an agent crashing on a value) fails before it, 4xx.

Envelope validation (contracts/events.py) runs too; these checks are explicit at the edge
so that the edge's promise does not depend on how strict the envelope is today.
"""

from __future__ import annotations

from typing import Any

from ledgerflow.contracts.events import Event
from ledgerflow.contracts.ids import check_id
from ledgerflow.contracts.payloads import ConversationStarted, MessageSubmitted
from ledgerflow.errors import ValidationError
from ledgerflow.models.aggregate import name_problem
from ledgerflow.projections.usage_fields import SEPARATOR
from ledgerflow.quoting import quoted

__all__ = [
    "RESERVED_PRODUCER_PREFIX",
    "check_edge_event",
    "check_model_name",
    "edge_producer",
    "refuse_client_producer",
]

RESERVED_PRODUCER_PREFIX = "ledgerflow-"
"""Producer names of the system's own writers (agents); never taken from a client."""


def edge_producer(sub: str) -> str:
    """The producer of everything the edge writes for a caller: ``edge:<token subject>``."""
    return f"edge:{sub}"


def refuse_client_producer(body: dict[str, Any]) -> None:
    """Attribution is derived, never taken: a client-supplied ``producer`` is refused (422)."""
    if "producer" in body:
        claimed = body["producer"]
        reserved = (
            " (a name reserved for ledgerflow's own writers)"
            if isinstance(claimed, str) and claimed.startswith(RESERVED_PRODUCER_PREFIX)
            else ""
        )
        raise ValidationError(
            f"producer: {quoted(claimed, 60)}{reserved} cannot be set by a client; the edge records "
            "'edge:<subject of your token>'; omit the field"
        )


def check_model_name(field: str, model: object) -> str:
    """A model name as the model registry takes one (``models.aggregate.name_problem``: 1..256
    printable characters) without ``|``, the separator of the usage read model's fields
    (``projections/usage_fields.py``); else ValidationError (422) naming ``field``."""
    if not isinstance(model, str):
        raise ValidationError(f"{field}: a string is required")
    problem = name_problem(field, model)
    if problem is not None:
        raise ValidationError(problem)
    if SEPARATOR in model:
        raise ValidationError(f"{field} {model[:40]!r} must not contain {SEPARATOR!r}")
    return model


def check_edge_event(event: Event) -> Event:
    """Ids in the id grammar, model names and counts in range, before publishing;
    ValidationError (422)."""
    check_id("tenant", event.tenant)
    check_id("subject", event.subject)
    if isinstance(event.payload, ConversationStarted):
        check_model_name("payload.model", event.payload.model)
    if isinstance(event.payload, MessageSubmitted):
        check_id("payload.turn_id", event.payload.turn_id)
        check_model_name("payload.model", event.payload.model)
        tokens = event.payload.tokens
        if tokens is not None and not (isinstance(tokens, int) and 0 <= tokens < 2**31):
            raise ValidationError(f"payload.tokens: {tokens!r} must be a count from 0 to 2^31-1, or null")
    return event
