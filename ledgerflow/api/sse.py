"""Server-Sent Events framing (WHATWG HTML §9.2): data frames with ids, control frames without."""

from __future__ import annotations

import orjson


def data_frame(cursor: str, event: str, data: bytes) -> bytes:
    return b"id: " + cursor.encode() + b"\nevent: " + event.encode() + b"\ndata: " + data + b"\n\n"


def control_frame(event: str, data: dict[str, object] | None = None) -> bytes:
    """A frame with no ``id:``: a client's Last-Event-ID stays on the last data frame."""
    return b"event: " + event.encode() + b"\ndata: " + orjson.dumps(data or {}) + b"\n\n"


def retry_hint(milliseconds: int) -> bytes:
    return f"retry: {milliseconds}\n\n".encode()
