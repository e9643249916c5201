"""One turn is one connected OpenTelemetry trace across the edge, the agents and SSE delivery.

The edge runs in this process with the SDK's in-memory span exporter; the worker runs as its own
process exporting its spans as JSON lines (``LEDGERFLOW_TRACE_FILE``). Every span of the turn —
edge request, produce, decide, project, SSE fan-out — shares the caller's trace id, and each
one's parent is another span of the trace (or the caller's own span for the edge request)."""

from __future__ import annotations

import json
import time
import uuid
from pathlib import Path

import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from starlette.testclient import TestClient

from ledgerflow.api.app import create_app
from ledgerflow.config import Settings
from ledgerflow.tracing import spans
from tests.support.processes import start

TRACE = "0af7651916cd43dd8448eb211c80319c"
CALLER_SPAN = "b7ad6b7169203331"


@pytest.fixture
def memory() -> InMemorySpanExporter:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    spans.configure("ledgerflow-edge", provider)
    yield exporter
    spans.disable()


def _worker_spans(path: Path) -> list[dict]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def test_one_turn_is_one_connected_trace(
    settings: Settings, log_dir: Path, tokens, memory, tmp_path: Path
) -> None:
    trace_file = tmp_path / "worker-spans.jsonl"
    worker = start(
        settings, "worker", "worker", log_dir=log_dir, extra_env={"LEDGERFLOW_TRACE_FILE": str(trace_file)}
    )
    try:
        with TestClient(create_app(settings)) as client:
            conversation = f"c-{uuid.uuid4().hex[:8]}"
            resp = client.post(
                "/v1/conversation/step",
                json={"conversation_id": conversation, "content": "hello", "model": "slm-1"},
                headers={
                    "Authorization": f"Bearer {tokens('acme', 'producer')}",
                    "traceparent": f"00-{TRACE}-{CALLER_SPAN}-01",
                },
                params={"wait": 30},
            )
            assert resp.status_code == 200, resp.text
            deadline = time.monotonic() + 30
            while not any(
                s["attributes"].get("ledgerflow.stage") == "project"
                and s["attributes"].get("messaging.destination.name", "").endswith("policy.decisions")
                for s in _worker_spans(trace_file)
            ):
                assert time.monotonic() < deadline, _worker_spans(trace_file)
                time.sleep(0.3)
    finally:
        worker.stop()
    edge = [
        {
            "name": s.name,
            "trace": f"{s.context.trace_id:032x}",
            "span": f"{s.context.span_id:016x}",
            "parent": None if s.parent is None else f"{s.parent.span_id:016x}",
            "stage": (s.attributes or {}).get("ledgerflow.stage"),
        }
        for s in memory.get_finished_spans()
    ]
    work = [
        {
            "name": s["name"],
            "trace": s["context"]["trace_id"].removeprefix("0x"),
            "span": s["context"]["span_id"].removeprefix("0x"),
            "parent": None if s["parent_id"] is None else s["parent_id"].removeprefix("0x"),
            "stage": s["attributes"].get("ledgerflow.stage"),
        }
        for s in _worker_spans(trace_file)
    ]
    turn = [s for s in edge + work if s["trace"] == TRACE]
    names = {(s["name"].split(" ")[0], s["stage"]) for s in turn}
    assert {
        ("HTTP", None),
        ("send", None),
        ("process", "decide"),
        ("process", "project"),
        ("process", "sse"),
    } <= names, turn
    ids = {s["span"] for s in turn}
    for s in turn:  # connected: every parent is a span of this trace, or the caller's span
        assert s["parent"] in ids or (s["name"].startswith("HTTP") and s["parent"] == CALLER_SPAN), (s, turn)
    by_id = {s["span"]: s for s in turn}
    decide = next(s for s in turn if s["stage"] == "decide")
    assert by_id[decide["parent"]]["name"].startswith("send")  # linked across Kafka by the header
    sse = [s for s in turn if s["stage"] == "sse"]
    assert any(by_id[s["parent"]]["stage"] == "decide" for s in sse)
