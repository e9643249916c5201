"""The current task's trace context and log fields (contextvars), and their way onto log
records and Kafka headers.

``install_log_fields()`` makes every ``LogRecord`` carry ``LOG_FIELDS`` (``trace_id``,
``tenant``, ``conversation``, ``topic``, ``partition``, ``offset``; None when not bound), so a
JSON log formatter (``ledgerflow/logformat.py``) reads them as plain attributes.
``bind(...)`` sets them for a block; asyncio copies contextvars into each task, so one
request's fields never leak into another's.
"""

from __future__ import annotations

import contextlib
import logging
import secrets
from collections.abc import Iterator, Mapping, Sequence
from contextvars import ContextVar
from typing import Any

from ledgerflow.contracts import codec
from ledgerflow.errors import LedgerflowError
from ledgerflow.tracing.context import TraceContext, clean_tracestate, parse_traceparent

TRACEPARENT = "traceparent"
TRACESTATE = "tracestate"
LOG_FIELDS = ("trace_id", "tenant", "conversation", "topic", "partition", "offset")

current_trace: ContextVar[TraceContext | None] = ContextVar("ledgerflow_trace", default=None)
_fields: ContextVar[dict[str, Any] | None] = ContextVar("ledgerflow_log_fields", default=None)
_message: ContextVar[Any] = ContextVar("ledgerflow_message", default=None)


def new_trace_id() -> str:
    return secrets.token_hex(16)


def new_span_id() -> str:
    return secrets.token_hex(8)


@contextlib.contextmanager
def bind(trace: TraceContext | None = None, **fields: Any) -> Iterator[None]:
    """Within the block: ``trace`` as the current context (when given) and ``fields`` on log records."""
    merged = {**(_fields.get() or {}), **fields}
    if trace is not None:
        merged["trace_id"] = trace.trace_id
    field_token = _fields.set(merged)
    trace_token = current_trace.set(trace) if trace is not None else None
    try:
        yield
    finally:
        _fields.reset(field_token)
        if trace_token is not None:
            current_trace.reset(trace_token)


def log_fields() -> dict[str, Any]:
    bound = _fields.get() or {}
    message = _message.get()
    if message is not None:
        bound = {**describe(message), **bound}
    return {name: bound.get(name) for name in LOG_FIELDS}


class about:  # used like a function: ``with about(message):``
    """Within the block, log records describe the Kafka record ``message`` an agent is handling.

    Only a reference is stored (one contextvar set and reset: cheap enough for every record);
    the record is described — its envelope decoded — only when a log line is actually emitted."""

    __slots__ = ("_message", "_token")

    def __init__(self, message: Any) -> None:
        self._message = message

    def __enter__(self) -> None:
        self._token = _message.set(self._message)

    def __exit__(self, *exc: object) -> None:
        _message.reset(self._token)


def describe(message: Any) -> dict[str, Any]:
    """``offset``, ``trace_id``, ``tenant`` and ``conversation`` of a consumed record (what decodes)."""
    found: dict[str, Any] = {name: getattr(message, name, None) for name in ("topic", "partition", "offset")}
    headers = getattr(message, "headers", None) or ()
    trace = from_headers(list(headers.items()) if isinstance(headers, Mapping) else list(headers))
    try:
        event = codec.decode(getattr(message, "value", None) or b"")
    except LedgerflowError:
        event = None
    if event is not None:
        found["tenant"] = event.tenant
        found["conversation"] = getattr(event.payload, "conversation_id", None) or event.subject
        trace = trace or parse_traceparent(event.trace_id)
    found["trace_id"] = None if trace is None else trace.trace_id
    return found


_installed = False


def install_log_fields() -> None:
    """Wrap the LogRecord factory once per process so every record carries ``LOG_FIELDS``."""
    global _installed
    if _installed:
        return
    previous = logging.getLogRecordFactory()

    def factory(*args: Any, **kwargs: Any) -> logging.LogRecord:
        record = previous(*args, **kwargs)
        for name, value in log_fields().items():
            if not hasattr(record, name):
                setattr(record, name, value)
        return record

    logging.setLogRecordFactory(factory)
    _installed = True


def kafka_headers(trace: TraceContext | None) -> list[tuple[str, bytes]]:
    """The ``traceparent``/``tracestate`` headers of a record produced within ``trace``."""
    if trace is None:
        return []
    out = [(TRACEPARENT, trace.traceparent.encode())]
    if trace.tracestate:
        out.append((TRACESTATE, trace.tracestate.encode()))
    return out


def from_headers(headers: Sequence[tuple[str, bytes | None]] | None) -> TraceContext | None:
    """The context a consumed record carries in its headers (None if absent or invalid)."""
    found = {
        k: (v or b"").decode("ascii", "replace") for k, v in headers or () if k in (TRACEPARENT, TRACESTATE)
    }
    parsed = parse_traceparent(found.get(TRACEPARENT))
    if parsed is None:
        return None
    return TraceContext(
        parsed.trace_id, parsed.span_id, parsed.flags, clean_tracestate(found.get(TRACESTATE))
    )
