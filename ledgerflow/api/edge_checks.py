"""Checks the edge makes before it publishes anything: whatever could fail after the
publish (a header built from an id, an agent crashing on a value) fails before it, 4xx.

Envelope validation (contracts/events.py) runs too; these checks are explicit at the edge
so that the edge's promise does not depend on how strict the envelope is today.
"""

from __future__ import annotations

from typing import Any

from ledgerflow.contracts.events import Event
from ledgerflow.contracts.ids import check_id
from ledgerflow.contracts.payloads import MessageSubmitted
from ledgerflow.errors import ValidationError

__all__ = ["RESERVED_PRODUCER_PREFIX", "check_edge_event", "edge_producer", "refuse_client_producer"]

RESERVED_PRODUCER_PREFIX = "ledgerflow-"
"""Producer names of the system's own writers (agents); never taken from a client."""


def edge_producer(sub: str) -> str:
    """The producer of everything the edge writes for a caller: ``edge:<token subject>``."""
    return f"edge:{sub}"


def refuse_client_producer(body: dict[str, Any]) -> None:
    """Attribution is derived, never taken: a client-supplied ``producer`` is refused (422)."""
    if "producer" in body:
        claimed = str(body["producer"])[:60]
        reserved = (
            " (a name reserved for ledgerflow's own writers)"
            if claimed.startswith(RESERVED_PRODUCER_PREFIX)
            else ""
        )
        raise ValidationError(
            f"producer: {claimed!r}{reserved} cannot be set by a client; the edge records "
            "'edge:<subject of your token>'; omit the field"
        )


def check_edge_event(event: Event) -> Event:
    """Ids in the id grammar, counts in range, before publishing; ValidationError (422)."""
    check_id("tenant", event.tenant)
    check_id("subject", event.subject)
    if isinstance(event.payload, MessageSubmitted):
        check_id("payload.turn_id", event.payload.turn_id)
        if not isinstance(event.payload.model, str):
            raise ValidationError("payload.model: a string is required")
        tokens = event.payload.tokens
        if tokens is not None and not (isinstance(tokens, int) and 0 <= tokens < 2**31):
            raise ValidationError(f"payload.tokens: {tokens!r} must be a count from 0 to 2^31-1, or null")
    return event
