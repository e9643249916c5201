"""Trace context through the real edge and worker: a turn's traceparent is continued into its
record (envelope and Kafka headers) and its decision; an invalid one is replaced and counted."""

from __future__ import annotations

import asyncio
import json
import uuid

import httpx

from ledgerflow.config import Settings
from ledgerflow.contracts import codec
from ledgerflow.kafka.logs import read_all
from ledgerflow.sse_client import follow
from ledgerflow.tracing.context import parse_traceparent, trace_id_of
from ledgerflow.tracing.current import from_headers
from tests.support.processes import Process

TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"


def _step(edge: str, token: str, headers: dict[str, str]) -> httpx.Response:
    body = {"conversation_id": f"c-{uuid.uuid4().hex[:8]}", "content": "hello", "model": "slm-1"}
    return httpx.post(
        f"{edge}/v1/conversation/step",
        json=body,
        headers={"Authorization": f"Bearer {token}", **headers},
        params={"wait": 20},
        timeout=30,
    )


def _replaced(edge: str) -> float:
    text = httpx.get(f"{edge}/metrics", timeout=10).text
    lines = [
        line for line in text.splitlines() if line.startswith("ledgerflow_trace_context_replaced_total{")
    ]
    return sum(float(line.rsplit(" ", 1)[1]) for line in lines)


def test_a_turn_carries_its_trace_into_kafka_and_its_decision(
    settings: Settings, worker: Process, edge: str, tokens
) -> None:
    producer = tokens("acme", "producer")
    traced = _step(
        edge, producer, {"traceparent": f"00-{TRACE}-00f067aa0ba902b7-01", "tracestate": "congo=x"}
    )
    assert traced.status_code == 200, traced.text
    assert trace_id_of(traced.headers["traceparent"]) == TRACE
    before = _replaced(edge)
    invalid = _step(edge, producer, {"traceparent": "00-not-a-trace"})
    assert invalid.status_code == 200, invalid.text  # never rejected
    new_trace = trace_id_of(invalid.headers["traceparent"])
    assert new_trace is not None and new_trace != TRACE
    assert _replaced(edge) == before + 1

    turns = asyncio.run(read_all(settings, settings.topic("conversation.events")))
    by_event = {codec.decode(r.value).event_id: r for r in turns}
    first = by_event[traced.json()["event_id"]]
    envelope = codec.decode(first.value).trace_id
    assert trace_id_of(envelope) == TRACE
    header = from_headers(list(first.headers))
    assert header is not None and (header.trace_id, header.tracestate) == (TRACE, "congo=x")
    assert parse_traceparent(envelope) == parse_traceparent(header.traceparent)
    decisions = [
        codec.decode(r.value) for r in asyncio.run(read_all(settings, settings.topic("policy.decisions")))
    ]
    traces = {d.payload.input_event_id: trace_id_of(d.trace_id) for d in decisions}  # type: ignore[union-attr]
    assert traces[traced.json()["event_id"]] == TRACE
    assert traces[invalid.json()["event_id"]] == new_trace

    async def decision_frame() -> dict:
        """Subscribe to a new conversation, step a traced turn into it, read its decision's frame."""
        conversation = f"c-{uuid.uuid4().hex[:8]}"
        url = f"{edge}/v1/conversation/stream?conversation_id={conversation}"
        body = {"conversation_id": conversation, "content": "hello", "model": "slm-1"}
        headers = {"Authorization": f"Bearer {producer}", "traceparent": f"00-{TRACE}-00f067aa0ba902b7-01"}
        async with httpx.AsyncClient() as client:
            frames = follow(client, url, tokens("acme", "subscriber"), checkpoints=True)
            await anext(frames)  # the opening checkpoint: subscribed
            step = await client.post(f"{edge}/v1/conversation/step", json=body, headers=headers, timeout=30)
            assert step.status_code in (200, 202), step.text
            async for frame in frames:
                if frame.event == "PolicyDecision":
                    return dict(json.loads(frame.data))
        raise AssertionError("the stream ended without the decision")

    frame = asyncio.run(asyncio.wait_for(decision_frame(), 30))
    assert trace_id_of(frame["trace_id"]) == TRACE
