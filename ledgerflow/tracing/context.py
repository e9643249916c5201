"""W3C Trace Context (https://www.w3.org/TR/trace-context/) values: pure parsing and validation.

``traceparent`` is ``version-trace_id-parent_id-flags`` in lowercase hex. Version ``00`` is
exactly 55 characters; a higher version (not ``ff``) may append fields after a ``-``, which are
ignored, as the specification asks. An all-zero trace or parent id is invalid. ``tracestate``
is at most 32 comma-separated ``key=value`` members, 512 characters in all; an invalid one is
dropped (never passed on), never an error: the edge replaces invalid context and counts it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

_HEX = re.compile(r"^[0-9a-f]+$")
_KEY = re.compile(r"^(?:[a-z][a-z0-9_\-*/]{0,255}|[a-z0-9][a-z0-9_\-*/]{0,240}@[a-z][a-z0-9_\-*/]{0,13})$")
_VALUE = re.compile(r"^[\x20-\x2b\x2d-\x3c\x3e-\x7e]{0,255}[\x21-\x2b\x2d-\x3c\x3e-\x7e]$")
MAX_TRACESTATE_MEMBERS = 32
MAX_TRACESTATE_CHARS = 512


@dataclass(frozen=True, slots=True)
class TraceContext:
    trace_id: str
    span_id: str
    flags: str = "01"
    tracestate: str | None = None

    @property
    def traceparent(self) -> str:
        return f"00-{self.trace_id}-{self.span_id}-{self.flags}"

    def child(self, span_id: str) -> TraceContext:
        """The context a callee continues with: same trace, ``span_id`` as its parent."""
        return TraceContext(self.trace_id, span_id, self.flags, self.tracestate)


def _hex(value: str, length: int) -> bool:
    return len(value) == length and _HEX.match(value) is not None and value != "0" * length


def parse_traceparent(value: str | None) -> TraceContext | None:
    """The context of a valid ``traceparent``; None for a missing or invalid one."""
    if value is None:
        return None
    value = value.strip()
    parts = value.split("-")
    if len(parts) < 4 or len(parts[0]) != 2 or _HEX.match(parts[0]) is None or parts[0] == "ff":
        return None
    version, trace_id, span_id, flags = parts[:4]
    if version == "00" and (len(parts) != 4 or len(value) != 55):
        return None
    if not (_hex(trace_id, 32) and _hex(span_id, 16) and len(flags) == 2 and _HEX.match(flags)):
        return None
    return TraceContext(trace_id, span_id, flags)


def clean_tracestate(value: str | None) -> str | None:
    """``tracestate`` when it is valid (members re-joined without blanks); None otherwise."""
    if value is None or len(value) > MAX_TRACESTATE_CHARS:
        return None
    members = [m.strip() for m in value.split(",") if m.strip()]
    if not members or len(members) > MAX_TRACESTATE_MEMBERS:
        return None
    keys = set()
    for member in members:
        key, eq, val = member.partition("=")
        if not eq or _KEY.match(key) is None or _VALUE.match(val) is None or key in keys:
            return None
        keys.add(key)
    return ",".join(members)


@dataclass(frozen=True, slots=True)
class Accepted:
    """What the edge continues with, and why it started a new trace (None: it did not)."""

    context: TraceContext
    replaced: str | None


def accept(traceparent: str | None, tracestate: str | None, trace_id: str, span_id: str) -> Accepted:
    """The incoming context, continued with the edge's own ``span_id``; a missing or invalid
    ``traceparent`` starts trace ``trace_id`` instead (``replaced`` = "missing" / "invalid").
    An invalid ``tracestate`` is dropped; a new trace carries none."""
    incoming = parse_traceparent(traceparent)
    if incoming is None:
        return Accepted(TraceContext(trace_id, span_id), "missing" if traceparent is None else "invalid")
    return Accepted(
        TraceContext(incoming.trace_id, span_id, incoming.flags, clean_tracestate(tracestate)), None
    )


def trace_id_of(traceparent: str | None) -> str | None:
    """The 32-hex trace id of a record's ``trace_id`` envelope field (a traceparent), else None."""
    parsed = parse_traceparent(traceparent)
    return None if parsed is None else parsed.trace_id
