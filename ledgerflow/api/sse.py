"""Server-Sent Events framing (WHATWG HTML §9.2): data frames with ids, control frames without.

A client's ``Last-Event-ID`` is the ``id:`` of the last block that carried one. Data
frames carry the cursor after their record. Control frames (heartbeat, reset, ...) carry
none: an id there would move a client's resume point to where no record was delivered.
A checkpoint is a block with only an ``id:``: no event is dispatched (it has no data),
but ``EventSource`` still adopts the id (WHATWG "dispatch the event", step 1), so a client
that has not received a data frame yet resumes from where its stream started.
"""

from __future__ import annotations

import orjson

CONTROL_EVENTS = frozenset({"heartbeat", "reset", "overflow", "reauth", "expired", "shutdown", "unavailable"})


def data_frame(cursor: str, event: str, data: bytes) -> bytes:
    """One record: ``data`` must be a single line (orjson output is)."""
    return b"id: " + cursor.encode() + b"\nevent: " + event.encode() + b"\ndata: " + data + b"\n\n"


def checkpoint(cursor: str) -> bytes:
    """An id-only block: sets the client's Last-Event-ID to ``cursor``, dispatches nothing."""
    return b"id: " + cursor.encode() + b"\n\n"


def control_frame(event: str, data: dict[str, object] | None = None, *, retry_ms: int | None = None) -> bytes:
    """A frame with no ``id:`` (and optionally a ``retry:`` reconnection delay)."""
    if event not in CONTROL_EVENTS:
        raise ValueError(f"{event!r} is not a control event; add it to CONTROL_EVENTS and docs/sse.md")
    retry = b"" if retry_ms is None else b"retry: %d\n" % retry_ms
    return retry + b"event: " + event.encode() + b"\ndata: " + orjson.dumps(data or {}) + b"\n\n"


def retry_hint(milliseconds: int) -> bytes:
    """A frame that only sets the client's reconnection delay."""
    return b"retry: %d\n\n" % milliseconds
