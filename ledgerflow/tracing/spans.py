"""OpenTelemetry spans of a turn: edge request → produce → decide → project → SSE delivery.

Off by default: until ``configure`` installs a tracer provider (an OTLP endpoint in
``LEDGERFLOW_OTLP_ENDPOINT``, a JSON-lines file in ``LEDGERFLOW_TRACE_FILE``, or a provider a
test passes), every hook here returns at its first line and nothing of the SDK runs.

Across Kafka the spans follow the messaging semantic conventions: the edge's ``send <topic>``
span (kind PRODUCER) is the context the record carries in its ``traceparent`` header; each
agent's ``process <topic>`` span (kind CONSUMER) continues the context of the record it
consumed, and the records it writes carry the process span's context in turn. So one turn is
one trace: the edge request, the produce, the decision, and the projection and SSE delivery
of the decision.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import time
from collections.abc import Iterator, Mapping, Sequence
from typing import IO, Any

from opentelemetry import trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import (
    BatchSpanProcessor,
    SimpleSpanProcessor,
    SpanExporter,
    SpanExportResult,
)
from opentelemetry.trace import NonRecordingSpan, SpanContext, SpanKind, TraceFlags, TraceState

from ledgerflow.tracing.context import TraceContext
from ledgerflow.tracing.current import about, from_headers, kafka_headers

ENDPOINT_ENV = "LEDGERFLOW_OTLP_ENDPOINT"
FILE_ENV = "LEDGERFLOW_TRACE_FILE"
INSTRUMENTATION = "ledgerflow"
STAGE = "ledgerflow.stage"
"""Span attribute naming the step of the pipeline: decide, project, sse."""

_tracer: trace.Tracer | None = None
_provider: TracerProvider | None = None


def enabled() -> bool:
    return _tracer is not None


def configure(service: str, provider: TracerProvider | None = None) -> bool:
    """Turn spans on for this process when configured (env) or given a provider; True if on."""
    global _tracer, _provider
    if provider is None:
        endpoint, path = os.environ.get(ENDPOINT_ENV, ""), os.environ.get(FILE_ENV, "")
        if not endpoint and not path:
            return False
        provider = TracerProvider(resource=Resource.create({"service.name": service}))
        if endpoint:  # the exporter package is imported only when it is wanted
            from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

            provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(endpoint=endpoint)))
        if path:
            out = open(path, "a", buffering=1)  # noqa: SIM115  # the exporter owns it until shutdown
            provider.add_span_processor(SimpleSpanProcessor(JsonLinesExporter(out)))
    _provider, _tracer = provider, provider.get_tracer(INSTRUMENTATION)
    return True


def disable() -> None:
    """Spans off again (tests; the provider is flushed and shut down)."""
    global _tracer, _provider
    if _provider is not None:
        _provider.shutdown()
    _tracer = _provider = None


class JsonLinesExporter(SpanExporter):
    """Each finished span as one JSON line (the SDK's own JSON form): for local inspection and
    for tests that follow one trace across processes."""

    def __init__(self, out: IO[str]) -> None:
        self._out = out

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        for span in spans:
            self._out.write(span.to_json(indent=None) + "\n")
        return SpanExportResult.SUCCESS

    def shutdown(self) -> None:
        self._out.close()


def _parent(context: TraceContext | None) -> Any:
    if context is None:
        return None
    state = TraceState.from_header([context.tracestate]) if context.tracestate else None
    remote = SpanContext(
        int(context.trace_id, 16),
        int(context.span_id, 16),
        is_remote=True,
        trace_flags=TraceFlags(int(context.flags, 16)),
        trace_state=state,
    )
    return trace.set_span_in_context(NonRecordingSpan(remote))


def context_of(span: trace.Span, tracestate: str | None = None) -> TraceContext:
    ctx = span.get_span_context()
    return TraceContext(
        f"{ctx.trace_id:032x}", f"{ctx.span_id:016x}", f"{int(ctx.trace_flags):02x}", tracestate
    )


@contextlib.contextmanager
def span(
    name: str, kind: SpanKind, parent: TraceContext | None, attributes: Mapping[str, Any] | None = None
) -> Iterator[TraceContext | None]:
    """A span continuing ``parent``; yields its context (None when spans are off)."""
    if _tracer is None:
        yield None
        return
    with _tracer.start_as_current_span(name, context=_parent(parent), kind=kind, attributes=attributes) as s:
        yield context_of(s, None if parent is None else parent.tracestate)


def kafka_attributes(
    topic: str, operation: str, partition: int | None = None, offset: int | None = None
) -> dict[str, Any]:
    """Messaging semantic-convention attributes of a Kafka span."""
    found: dict[str, Any] = {
        "messaging.system": "kafka",
        "messaging.destination.name": topic,
        "messaging.operation.type": operation,
    }
    if partition is not None:
        found["messaging.destination.partition.id"] = str(partition)
    if offset is not None:
        found["messaging.kafka.offset"] = offset
    return found


def headers_of(message: Any) -> list[tuple[str, bytes | None]]:
    """A consumed record's headers (aiokafka: a sequence of pairs; faust: pairs or a mapping)."""
    raw = getattr(message, "headers", None) or ()
    return list(raw.items()) if isinstance(raw, Mapping) else list(raw)


def consumed(message: Any, stage: str, out: list[Any]) -> contextlib.AbstractContextManager[Any]:
    """The agent hook around handling one consumed record: a ``process <topic>`` span continuing
    the record's ``traceparent`` header; records appended to ``out`` inside it (dataclasses with a
    ``headers`` field) get the span's context in their headers. With spans off it only lets log
    records describe the record (``current.about``)."""
    if _tracer is None:
        return about(message)
    return _consumed(message, stage, out)


def _process_attributes(message: Any, stage: str) -> dict[str, Any]:
    found = kafka_attributes(message.topic, "process", message.partition, message.offset)
    found[STAGE] = stage
    return found


@contextlib.contextmanager
def _consumed(message: Any, stage: str, out: list[Any]) -> Iterator[None]:
    before = len(out)
    parent, attributes = from_headers(headers_of(message)), _process_attributes(message, stage)
    with about(message), span(f"process {message.topic}", SpanKind.CONSUMER, parent, attributes) as ctx:
        yield
        stamp = tuple(kafka_headers(ctx))
        for index in range(before, len(out)):
            out[index] = dataclasses.replace(out[index], headers=tuple(out[index].headers) + stamp)


def processed(messages: Sequence[Any], stage: str, started_ns: int) -> None:
    """The projector's hook after a batch is written: one ``process <topic>`` span per record,
    from the batch's start to now, each continuing its record's ``traceparent`` header."""
    if _tracer is None:
        return
    end = time.time_ns()
    for message in messages:
        parent = from_headers(headers_of(message))
        name, attributes = f"process {message.topic}", _process_attributes(message, stage)
        s = _tracer.start_span(name, _parent(parent), SpanKind.CONSUMER, attributes, start_time=started_ns)
        s.end(end_time=end)
