"""Closed usage windows ↔ ``usage.windows`` records. Pure.

A record's id is derived from (tenant, model, window, revision, source partition), so
re-deriving the same window after a restart yields the same id and can be recognised. A
``LateUsage`` delta is one input turn's tokens, so its id also names that turn (its
``event_id``): two late turns of one window are two records even in the same microsecond, and a
replay re-derives each one's id. Deltas written before that were named by the turn's
``occurred_at`` instead (``legacy_late_id``): a replay recognises those too, so the upgrade
writes no delta twice.
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


def record_of(emitted: WindowClosed | LateUsage, partition: int, occurred_at: int, cause: str = "") -> Event:
    """``cause``: the ``event_id`` of the turn a ``LateUsage`` counts (a delta of that turn alone)."""
    revision = emitted.revision if isinstance(emitted, WindowClosed) else -1
    correction = emitted.correction if isinstance(emitted, WindowClosed) else True
    if revision < 0 and not cause:
        raise ValueError("a LateUsage record needs the event_id of the turn it counts")
    if revision < 0:
        ident = late_id(emitted.tenant, emitted.model, emitted.window_start, partition, occurred_at, cause)
    else:
        ident = _window_id(
            emitted.tenant, emitted.model, emitted.window_start, revision, partition, occurred_at
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


def late_id(tenant: str, model: str, window_start: int, partition: int, occurred_at: int, cause: str) -> str:
    """The id of the ``LateUsage`` delta of turn ``cause`` (its ``event_id``), of ``occurred_at``."""
    return derived_event_id(
        "LateUsage", legacy_id(tenant, model, window_start, partition, occurred_at), cause
    )


def legacy_id(tenant: str, model: str, window_start: int, partition: int, occurred_at: int) -> str:
    """The id a ``LateUsage`` delta of ``occurred_at`` had before ids named its turn (see
    ``legacy_late_id``)."""
    return _window_id(tenant, model, window_start, -1, partition, occurred_at)


def _window_id(tenant: str, model: str, start: int, revision: int, partition: int, occurred_at: int) -> str:
    late = str(occurred_at) if revision < 0 else ""
    return derived_event_id("UsageWindow", tenant, model, str(start), str(revision), str(partition), late)


def legacy_late_id(record: Event) -> str | None:
    """The id a ``LateUsage`` record had before ids named its turn (tenant, model, window, source
    partition and ``occurred_at`` only: two late turns in one microsecond collided), or None for
    another record."""
    payload = record.payload
    source = source_of(record.producer)
    if not isinstance(payload, UsageWindow) or payload.revision >= 0 or source is None:
        return None
    return legacy_id(record.tenant, payload.model, payload.window_start, source, record.occurred_at)
