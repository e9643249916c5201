"""Closed usage windows ↔ ``usage.windows`` records. Pure.

A record's id is derived from (tenant, model, window, revision, source partition), so
re-deriving the same window after a restart yields the same id and can be recognised.
``producer`` names the source partition: windows are folded per input partition, and
the read model keeps one total per (model, window, source) that a correction replaces.
"""

from __future__ import annotations

from ledgerflow.contracts.events import Event, derived_event_id, new_event
from ledgerflow.contracts.payloads import UsageWindow
from ledgerflow.usage.windows import LateUsage, WindowClosed

PRODUCER_PREFIX = "ledgerflow-usage/p"


def producer_of(partition: int) -> str:
    return f"{PRODUCER_PREFIX}{partition}"


def source_of(producer: str) -> int | None:
    """The source partition ``producer_of`` named, or None for another producer."""
    number = producer.removeprefix(PRODUCER_PREFIX)
    if number == producer or not (number.isascii() and number.isdigit()):
        return None
    return int(number)


def record_of(emitted: WindowClosed | LateUsage, partition: int, occurred_at: int) -> Event:
    revision = emitted.revision if isinstance(emitted, WindowClosed) else -1
    correction = emitted.correction if isinstance(emitted, WindowClosed) else True
    ident = derived_event_id(
        "UsageWindow",
        emitted.tenant,
        emitted.model,
        str(emitted.window_start),
        str(revision),
        str(partition),
        str(occurred_at) if revision < 0 else "",
    )
    payload = UsageWindow(
        emitted.model,
        emitted.window_start,
        emitted.window_end,
        emitted.tokens,
        emitted.events,
        emitted.estimated_tokens,
        correction,
        revision,
    )
    return new_event(
        "UsageWindow",
        tenant=emitted.tenant,
        subject=emitted.tenant,
        payload=payload,
        producer=producer_of(partition),
        occurred_at_micros=occurred_at,
        event_id=ident,
    )
