"""One flow end to end on the real stack: aiokafka producer → Kafka → faust worker →
Redis read model → edge (real uvicorn process) → SSE client on a real port."""

from __future__ import annotations

import asyncio
import re
import time
import uuid

import httpx
import orjson

from ledgerflow.config import Settings
from ledgerflow.contracts.events import Event, new_event
from ledgerflow.contracts.payloads import ConversationStarted, MessageSubmitted
from ledgerflow.sse_client import SseEvent, parse
from ledgerflow.traffic import Publisher
from tests.support.processes import Process

TIMEOUT_S = 60.0


def _events(conv: str, tenant: str = "acme") -> list[Event]:
    now = time.time_ns() // 1000
    return [
        new_event(
            "ConversationStarted",
            tenant=tenant,
            subject=conv,
            payload=ConversationStarted(actor="ana", model="slm-1"),
            producer="test",
            occurred_at_micros=now,
        ),
        new_event(
            "MessageSubmitted",
            tenant=tenant,
            subject=conv,
            payload=MessageSubmitted("t1", "user", "hello there", "slm-1", 7),
            producer="test",
            occurred_at_micros=now + 1,
        ),
    ]


async def _publish(settings: Settings, events: list[Event]) -> None:
    async with Publisher(settings) as pub:
        for event in events:
            await pub.send(event)
        await pub.flush()


async def _frames(resp: httpx.Response, count: int) -> list[SseEvent]:
    got: list[SseEvent] = []
    async for frame in parse(resp.aiter_lines()):
        if frame.id is not None:
            got.append(frame)
            if len(got) == count:
                break
    return got


def test_produced_events_reach_sse_subscriber_and_read_model(
    settings: Settings, worker: Process, edge: str, tokens
) -> None:
    conv = f"conv-{uuid.uuid4().hex[:8]}"
    events = _events(conv)
    token = tokens("acme", "subscriber")
    headers = {"Authorization": f"Bearer {token}"}

    async def scenario() -> tuple[list[SseEvent], list[SseEvent]]:
        async with httpx.AsyncClient(timeout=httpx.Timeout(10, read=None)) as client:
            url = f"{edge}/v1/conversation/stream?conversation_id={conv}"
            async with client.stream("GET", url, headers=headers) as resp:
                assert resp.status_code == 200, await resp.aread()
                assert resp.headers["content-type"].startswith("text/event-stream")
                await _publish(settings, events)  # subscribed: now produce
                live = await asyncio.wait_for(_frames(resp, 2), TIMEOUT_S)
            resume_headers = headers | {"Last-Event-ID": live[0].id}
            async with client.stream("GET", url, headers=resume_headers) as resp:
                resumed = await asyncio.wait_for(_frames(resp, 1), TIMEOUT_S)
        return live, resumed

    live, resumed = asyncio.run(scenario())
    assert [f.event for f in live] == ["ConversationStarted", "MessageSubmitted"]
    assert [orjson.loads(f.data)["event_id"] for f in live] == [e.event_id for e in events]
    assert orjson.loads(live[1].data)["payload"]["content"] == "hello there"
    assert live[0].id != live[1].id
    # Resuming after the first frame yields exactly the second: no gap, no duplicate.
    assert (resumed[0].id, resumed[0].data) == (live[1].id, live[1].data)

    deadline = time.monotonic() + TIMEOUT_S
    view: dict = {}
    while time.monotonic() < deadline:
        resp = httpx.get(f"{edge}/v1/conversations/{conv}", headers=headers, timeout=5)
        if resp.status_code == 200 and (view := resp.json())["turn_count"] == 1:
            break
        time.sleep(0.3)
    else:
        raise AssertionError(f"read model not projected within {TIMEOUT_S} s: {view}\n{worker.log_tail()}")
    assert view["status"] == "open"
    assert view["model"] == "slm-1"
    assert view["tokens"] == 7
    assert [t["content"] for t in view["turns"]] == ["hello there"]
    assert view["turns"][0]["event_id"] == events[1].event_id


def test_http_ingest_is_acknowledged_after_kafka_and_projected(
    settings: Settings, worker: Process, edge: str, tokens
) -> None:
    conv = f"conv-{uuid.uuid4().hex[:8]}"
    headers = {"Authorization": f"Bearer {tokens('acme', 'producer,subscriber')}"}
    started = {"type": "ConversationStarted", "subject": conv, "payload": {"actor": "bo", "model": "slm-2"}}
    turn = {
        "type": "MessageSubmitted",
        "subject": conv,
        "payload": {"turn_id": "t1", "role": "user", "content": "hi", "model": "slm-2", "tokens": None},
    }
    for body in (started, turn):
        resp = httpx.post(f"{edge}/v1/events", json=body, headers=headers, timeout=10)
        assert resp.status_code == 202, resp.text
        ack = resp.json()
        assert ack["topic"] == settings.topic("conversation.events")
        assert ack["offset"] >= 0
    deadline = time.monotonic() + TIMEOUT_S
    while time.monotonic() < deadline:
        resp = httpx.get(f"{edge}/v1/conversations/{conv}", headers=headers, timeout=5)
        if resp.status_code == 200 and resp.json()["turn_count"] == 1:
            break
        time.sleep(0.3)
    else:
        raise AssertionError(f"ingested events not projected: {resp.text}\n{worker.log_tail()}")
    view = resp.json()
    assert view["turns"][0]["content"] == "hi"
    # One time format on every JSON surface: RFC 3339 with microseconds, never integer µs.
    for when in (view["updated_at"], view["turns"][0]["occurred_at"]):
        assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z", when), when


def test_consistency_token_gives_read_your_writes(
    settings: Settings, worker: Process, edge: str, tokens
) -> None:
    conv = f"conv-{uuid.uuid4().hex[:8]}"
    headers = {"Authorization": f"Bearer {tokens('acme', 'producer,subscriber')}"}
    body = {"type": "ConversationStarted", "subject": conv, "payload": {"actor": "bo", "model": "slm-2"}}
    httpx.get(f"{edge}/healthz")
    # The worker may still be joining its group on the first tries (on a Redis Cluster it also
    # makes the new space's guard copies first, a few seconds on a loaded machine).
    for attempt in range(6):
        ack = httpx.post(f"{edge}/v1/events", json=body, headers=headers, timeout=10).json()
        resp = httpx.get(
            f"{edge}/v1/conversations/{conv}",
            params={"consistency_token": ack["consistency_token"]},
            headers=headers,
            timeout=10,
        )
        if resp.status_code != 503:
            break
    assert resp.status_code == 200, resp.text  # no polling: the read waited for the projection
    assert resp.json()["status"] == "open"
    bad = httpx.get(f"{edge}/v1/conversations/{conv}", params={"consistency_token": "x"}, headers=headers)
    assert bad.status_code == 422


def test_readyz_reports_projection_lag_and_metrics_export_it(
    settings: Settings, worker: Process, edge: str, tokens
) -> None:
    headers = {"Authorization": f"Bearer {tokens('acme', 'producer')}"}
    for n in range(5):
        body = {"type": "ConversationStarted", "subject": f"lag-{n}", "payload": {"actor": "a", "model": "m"}}
        assert httpx.post(f"{edge}/v1/events", json=body, headers=headers, timeout=10).status_code == 202
    deadline = time.monotonic() + TIMEOUT_S
    while (lag := httpx.get(f"{edge}/readyz").json().get("projection_lag")) != 0:
        assert time.monotonic() < deadline, f"projection lag stayed at {lag}\n{worker.log_tail()}"
        time.sleep(0.3)
    assert (
        'ledgerflow_projection_lag_records{projection="read-models"} 0.0' in httpx.get(f"{edge}/metrics").text
    )
