"""Span hooks: a no-op when off; when on, a consumed record's span continues its header context
and stamps its own on what was produced inside it."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator

import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind

from ledgerflow.tracing import spans
from ledgerflow.tracing.context import TraceContext, parse_traceparent
from ledgerflow.tracing.current import from_headers

TRACE, SPAN = "4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7"


@dataclasses.dataclass(frozen=True)
class Record:
    topic: str = "conversation.events"
    partition: int = 2
    offset: int = 41
    headers: tuple[tuple[str, bytes], ...] = ()


@pytest.fixture
def memory() -> Iterator[InMemorySpanExporter]:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    spans.configure("test", provider)
    yield exporter
    spans.disable()


def test_off_by_default_every_hook_is_a_no_op(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(spans.ENDPOINT_ENV, raising=False)
    monkeypatch.delenv(spans.FILE_ENV, raising=False)
    assert spans.configure("test") is False and not spans.enabled()
    out = [Record()]
    with spans.consumed(Record(), "decide", out):
        out.append(Record(offset=42))
    assert out == [Record(), Record(offset=42)]  # nothing stamped
    spans.processed([Record()], "project", 0)
    with spans.span("x", SpanKind.INTERNAL, None) as ctx:
        assert ctx is None


def test_a_consumed_record_continues_its_header_and_stamps_its_outputs(memory: InMemorySpanExporter) -> None:
    incoming = Record(headers=(("traceparent", f"00-{TRACE}-{SPAN}-01".encode()), ("tracestate", b"congo=x")))
    out: list[Record] = [Record(offset=1)]
    with spans.consumed(incoming, "decide", out):
        out.append(Record(topic="policy.decisions", headers=(("lf-input", b"41"),)))
    (finished,) = memory.get_finished_spans()
    assert finished.name == "process conversation.events" and finished.kind is SpanKind.CONSUMER
    assert f"{finished.context.trace_id:032x}" == TRACE and f"{finished.parent.span_id:016x}" == SPAN
    attrs = dict(finished.attributes or {})
    assert attrs["messaging.system"] == "kafka" and attrs["messaging.kafka.offset"] == 41
    assert attrs["ledgerflow.stage"] == "decide"
    assert out[0] == Record(offset=1)  # produced before the span: untouched
    stamped = from_headers(list(out[1].headers))
    assert stamped == TraceContext(TRACE, f"{finished.context.span_id:016x}", "01", "congo=x")
    assert out[1].headers[0] == ("lf-input", b"41")


def test_a_record_without_context_starts_a_trace_and_processed_spans_follow_headers(
    memory: InMemorySpanExporter,
) -> None:
    with spans.consumed(Record(headers=(("traceparent", b"garbage"),)), "sse", []):
        pass
    spans.processed([Record(headers=(("traceparent", f"00-{TRACE}-{SPAN}-01".encode()),))], "project", 1)
    orphan, projected = memory.get_finished_spans()
    assert orphan.parent is None
    assert projected.parent is not None and f"{projected.parent.span_id:016x}" == SPAN
    assert projected.start_time == 1 and dict(projected.attributes or {})["ledgerflow.stage"] == "project"
    assert parse_traceparent(f"00-{TRACE}-{SPAN}-01") is not None
