"""The edge's write paths on the real edge, Kafka and Redis (issue 11): ingest idempotent by
event_id (case 6), every step validated before it is published (cases 5, 7, 10), limits
(body, headers, /v1/evaluate role) and made-up consistency tokens refused at once (case 10)."""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path

import httpx
import orjson
import pytest

from ledgerflow.api.limits import MAX_HEADER_BYTES, MAX_HEADERS
from ledgerflow.config import Settings
from ledgerflow.limits import MAX_BODY_BYTES
from tests.integration.edgekit import assert_problem, bearer, events_on_log, turn
from tests.support.processes import free_port, start, wait_http_ready

# --- issue 11 case 6: ingest is idempotent by event_id ----------------------------------


def test_a_retried_event_id_is_acknowledged_with_its_original_position_and_published_once(
    settings: Settings, edge: str
) -> None:
    conv = f"c-{uuid.uuid4().hex[:8]}"
    event = turn(conv) | {"event_id": str(uuid.uuid4())}
    headers = bearer(settings)
    acks = [httpx.post(f"{edge}/v1/events", json=event, headers=headers, timeout=10) for _ in range(3)]
    assert [a.status_code for a in acks] == [202, 202, 202], [a.text for a in acks]
    positions = {(a.json()["event_id"], a.json()["partition"], a.json()["offset"]) for a in acks}
    assert len(positions) == 1
    assert [a.json()["duplicate"] for a in acks] == [False, True, True]
    assert [e.event_id for e in events_on_log(settings)] == [event["event_id"]]


def test_a_different_event_under_a_used_event_id_is_422(settings: Settings, edge: str) -> None:
    conv = f"c-{uuid.uuid4().hex[:8]}"
    event_id = str(uuid.uuid4())
    headers = bearer(settings)
    first = httpx.post(
        f"{edge}/v1/events", json=turn(conv) | {"event_id": event_id}, headers=headers, timeout=10
    )
    assert first.status_code == 202, first.text
    other = turn(conv, content="not the same") | {"event_id": event_id}
    resp = httpx.post(f"{edge}/v1/events", json=other, headers=headers, timeout=10)
    assert "event_id reused" in assert_problem(resp, 422)["detail"]
    # another tenant's event id space is its own
    elsewhere = httpx.post(
        f"{edge}/v1/events", json=other, headers=bearer(settings, tenant="globex"), timeout=10
    )
    assert elsewhere.status_code == 202, elsewhere.text
    assert [(e.tenant, e.event_id) for e in events_on_log(settings)] == [
        ("acme", event_id),
        ("globex", event_id),
    ]


# --- issue 11 cases 5, 7, 10: validated before published --------------------------------


@pytest.mark.parametrize("conversation_id", ["会话-1", "c1\r\nX-Injected: 1", "a/b", "", " c1", "x" * 129])
def test_a_step_whose_id_cannot_be_a_header_is_refused_before_publishing(
    settings: Settings, edge: str, conversation_id: str
) -> None:
    resp = httpx.post(
        f"{edge}/v1/conversation/step",
        json={"conversation_id": conversation_id, "content": "x"},
        headers=bearer(settings),
        params={"wait": 0},
        timeout=10,
    )
    assert "conversation_id" in assert_problem(resp, 422)["detail"]
    events = httpx.post(f"{edge}/v1/events", json=turn(conversation_id), headers=bearer(settings), timeout=10)
    assert "subject" in assert_problem(events, 422)["detail"]
    assert events_on_log(settings) == []


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"model": {"name": "gpt"}}, "model"),
        ({"model": 7}, "model"),
        ({"content": {"text": "x"}}, "content"),
    ],
)
def test_a_step_with_fields_of_the_wrong_type_is_refused(
    settings: Settings, edge: str, body: dict, field: str
) -> None:
    resp = httpx.post(
        f"{edge}/v1/conversation/step",
        json={"conversation_id": "c1", "content": "x"} | body,
        headers=bearer(settings),
        params={"wait": 0},
        timeout=10,
    )
    assert field in assert_problem(resp, 422)["detail"]
    assert events_on_log(settings) == []


@pytest.mark.parametrize(
    ("payload", "field"), [({"tokens": -1}, "tokens"), ({"turn_id": "t 1\n"}, "turn_id")]
)
def test_an_event_an_agent_could_not_process_is_refused(
    settings: Settings, edge: str, payload: dict, field: str
) -> None:
    resp = httpx.post(f"{edge}/v1/events", json=turn("c1", **payload), headers=bearer(settings), timeout=10)
    assert field in assert_problem(resp, 422)["detail"]
    assert events_on_log(settings) == []


# --- issue 11: limits on the edge ----------------------------------------------------------


def test_a_body_over_the_limit_is_413_even_without_content_length(settings: Settings, edge: str) -> None:
    big = turn("c1", content="x" * (MAX_BODY_BYTES + 10))
    declared = httpx.post(f"{edge}/v1/events", json=big, headers=bearer(settings), timeout=10)
    assert assert_problem(declared, 413)["limit"] == "body"
    data = orjson.dumps(big)

    def chunks():  # chunked transfer encoding: no Content-Length to go by
        for i in range(0, len(data), 16384):
            yield data[i : i + 16384]

    streamed = httpx.post(
        f"{edge}/v1/events",
        content=chunks(),
        headers=bearer(settings) | {"content-type": "application/json"},
        timeout=10,
    )
    assert_problem(streamed, 413)
    assert events_on_log(settings) == []


def test_too_many_request_headers_are_431(settings: Settings, edge: str) -> None:
    many = {f"x-filler-{i}": "v" for i in range(MAX_HEADERS + 5)}
    resp = httpx.post(f"{edge}/v1/events", json=turn("c1"), headers=bearer(settings) | many, timeout=10)
    assert assert_problem(resp, 431)["limit"] == "headers"
    big = {"x-filler": "v" * MAX_HEADER_BYTES}
    resp = httpx.post(f"{edge}/v1/events", json=turn("c1"), headers=bearer(settings) | big, timeout=10)
    assert assert_problem(resp, 431)["limit"] == "headers"
    assert events_on_log(settings) == []
    metrics = httpx.get(f"{edge}/metrics", timeout=10).text
    assert 'ledgerflow_edge_limited_total{limit="headers"} 2.0' in metrics


def test_evaluate_needs_the_producer_or_admin_role(settings: Settings, edge: str) -> None:
    body = {"content": "hello"}
    for roles in ("subscriber", "auditor"):
        refused = httpx.post(
            f"{edge}/v1/evaluate", json=body, headers=bearer(settings, roles=roles), timeout=10
        )
        assert_problem(refused, 403)
    for roles in ("producer", "admin"):
        allowed = httpx.post(
            f"{edge}/v1/evaluate", json=body, headers=bearer(settings, roles=roles), timeout=10
        )
        assert allowed.status_code == 200, allowed.text


def test_evaluate_refuses_a_role_that_is_not_a_string(settings: Settings, edge: str) -> None:
    """A role that is not one of the role strings, whatever its JSON type, is a 422."""
    for role in (["user"], {"r": 1}, 7, "robot"):
        resp = httpx.post(
            f"{edge}/v1/evaluate", json={"content": "hi", "role": role}, headers=bearer(settings), timeout=10
        )
        assert "role: must be one of" in assert_problem(resp, 422)["detail"], (role, resp.text)


def test_a_made_up_consistency_token_is_refused_at_once(settings: Settings, edge: str) -> None:
    headers = bearer(settings)
    ack = httpx.post(f"{edge}/v1/events", json=turn("c1"), headers=headers, timeout=10).json()
    for made_up in (f"{ack['partition']}:{ack['offset'] + 1000}", "999:0", "0:99999999999999999999", "x"):
        resp = httpx.get(
            f"{edge}/v1/conversations/c1", params={"consistency_token": made_up}, headers=headers, timeout=10
        )
        assert "consistency_token" in assert_problem(resp, 422)["detail"], made_up


def test_per_tenant_rate_limits_answer_429_with_retry_after(settings: Settings, log_dir: Path) -> None:
    http = f"127.0.0.1:{free_port()}"
    env = {
        "LEDGERFLOW_RATE_PER_TENANT": "0.01",
        "LEDGERFLOW_RATE_BURST": "6",
        "LEDGERFLOW_EVALUATE_RATE_PER_TENANT": "0.01",
        "LEDGERFLOW_EVALUATE_BURST": "2",
    }
    proc = start(settings.with_overrides(http=http), "edge", "serve", log_dir=log_dir, extra_env=env)
    edge = f"http://{http}"
    try:
        wait_http_ready(proc, edge)
        acme = bearer(settings)
        evaluations = [
            httpx.post(f"{edge}/v1/evaluate", json={"content": "x"}, headers=acme, timeout=10)
            for _ in range(3)
        ]
        assert [r.status_code for r in evaluations] == [200, 200, 429]
        assert assert_problem(evaluations[2], 429)["limit"] == "evaluate"
        assert int(evaluations[2].headers["retry-after"]) >= 1
        answers = [
            httpx.post(f"{edge}/v1/events", json=turn("c1"), headers=acme, timeout=10) for _ in range(4)
        ]
        assert [r.status_code for r in answers] == [202, 202, 202, 429]  # 3 evaluations + 3 events = burst
        assert assert_problem(answers[3], 429)["limit"] == "rate"
        other = httpx.post(
            f"{edge}/v1/events", json=turn("c1"), headers=bearer(settings, tenant="globex"), timeout=10
        )
        assert other.status_code == 202, other.text  # one tenant's limit is not another's
        metrics = httpx.get(f"{edge}/metrics", timeout=10).text
        assert 'ledgerflow_edge_limited_total{limit="rate"} 1.0' in metrics
        assert 'ledgerflow_edge_limited_total{limit="evaluate"} 1.0' in metrics
        assert len(events_on_log(settings)) == 4
    finally:
        proc.stop()


def test_rule_pack_publications_are_limited_per_tenant(settings: Settings, log_dir: Path) -> None:
    """Every pack stays on ``policy.rules`` for ever and is read by every worker and edge at
    start-up: one tenant's admin publishing 81 big packs stopped them all from starting."""
    http = f"127.0.0.1:{free_port()}"
    env = {"LEDGERFLOW_PUBLISH_BURST": "2"}
    proc = start(settings.with_overrides(http=http), "edge", "serve", log_dir=log_dir, extra_env=env)
    edge = f"http://{http}"
    pack = {"rules": [{"id": "r", "when": {"keywords": ["x"]}, "action": "review", "weight": 1}]}
    try:
        wait_http_ready(proc, edge)
        admin = bearer(settings, roles="admin")
        bad = {"rules": [{"id": "r", "when": {"keywords": []}, "action": "nonsense", "weight": 1}]}
        refused = [
            httpx.put(f"{edge}/v1/policy/rules", json=bad, headers=admin, timeout=30) for _ in range(3)
        ]
        assert [r.status_code for r in refused] == [422] * 3, [r.text for r in refused]  # nothing published:
        puts = [httpx.put(f"{edge}/v1/policy/rules", json=pack, headers=admin, timeout=30) for _ in range(3)]
        # the refused attempts used none of the two publications the burst allows
        assert [r.status_code for r in puts] == [201, 201, 429], [r.text for r in puts]
        assert assert_problem(puts[2], 429)["limit"] == "publish"
        assert int(puts[2].headers["retry-after"]) >= 1
        other = httpx.put(
            f"{edge}/v1/policy/rules",
            json=pack,
            headers=bearer(settings, tenant="globex", roles="admin"),
            timeout=30,
        )
        assert other.status_code == 201, other.text  # one tenant's limit is not another's
        metrics = httpx.get(f"{edge}/metrics", timeout=10).text
        assert 'ledgerflow_edge_limited_total{limit="publish"} 1.0' in metrics
    finally:
        proc.stop()


def test_rule_pack_validations_are_limited_per_tenant(settings: Settings, log_dir: Path) -> None:
    """Validating compiles the pack (up to about a second of CPU) and any role may ask: 30
    validations at once from one subscriber held another tenant's requests 1-3 s."""
    http = f"127.0.0.1:{free_port()}"
    proc = start(
        settings.with_overrides(http=http),
        "edge",
        "serve",
        log_dir=log_dir,
        extra_env={"LEDGERFLOW_VALIDATE_BURST": "2"},
    )
    edge = f"http://{http}"
    pack = {"rules": [{"id": "r", "when": {"keywords": ["x"]}, "action": "review", "weight": 1}]}
    try:
        wait_http_ready(proc, edge)
        viewer = bearer(settings, roles="subscriber")
        answers = [
            httpx.post(f"{edge}/v1/policy/validate", json=pack, headers=viewer, timeout=30) for _ in range(3)
        ]
        assert [r.status_code for r in answers] == [200, 200, 429], [r.text for r in answers]
        assert assert_problem(answers[2], 429)["limit"] == "validate"
        assert int(answers[2].headers["retry-after"]) >= 1
        other = httpx.post(
            f"{edge}/v1/policy/validate",
            json=pack,
            headers=bearer(settings, tenant="globex", roles="subscriber"),
            timeout=30,
        )
        assert other.status_code == 200, other.text  # one tenant's limit is not another's
    finally:
        proc.stop()


def test_per_tenant_sse_streams_are_limited_and_a_closed_stream_frees_its_slot(
    settings: Settings, log_dir: Path
) -> None:
    http = f"127.0.0.1:{free_port()}"
    env = {"LEDGERFLOW_SSE_PER_TENANT": "2"}
    proc = start(settings.with_overrides(http=http), "edge", "serve", log_dir=log_dir, extra_env=env)
    edge = f"http://{http}"
    url = f"{edge}/v1/conversation/stream?conversation_id=c1"

    async def scenario() -> tuple[list[int], int, int]:
        acme = bearer(settings)
        async with httpx.AsyncClient(timeout=10) as client:
            first = await client.send(client.build_request("GET", url, headers=acme), stream=True)
            second = await client.send(client.build_request("GET", url, headers=acme), stream=True)
            third = await client.get(url, headers=acme)  # the tenant is full: answered at once
            assert_problem(third, 429)
            assert int(third.headers["retry-after"]) >= 1
            other = await client.send(
                client.build_request("GET", url, headers=bearer(settings, tenant="globex")), stream=True
            )
            other_status = other.status_code  # one tenant's limit is not another's
            await other.aclose()
            await first.aclose()
            for _ in range(50):  # the edge notices the closed stream and frees its slot
                again = await client.send(client.build_request("GET", url, headers=acme), stream=True)
                if again.status_code == 200:
                    await again.aclose()
                    break
                await again.aclose()
                await asyncio.sleep(0.1)
            await second.aclose()
            return [first.status_code, second.status_code, third.status_code], other_status, again.status_code

    try:
        wait_http_ready(proc, edge)
        statuses, other_status, freed = asyncio.run(scenario())
        assert statuses == [200, 200, 429]
        assert other_status == 200
        assert freed == 200, "a closed stream must give its slot back"
        metrics = httpx.get(f"{edge}/metrics", timeout=10).text
        assert 'ledgerflow_edge_limited_total{limit="sse"}' in metrics
    finally:
        proc.stop()


def test_a_model_name_with_the_usage_separator_is_refused_before_publishing(
    settings: Settings, edge: str
) -> None:
    """A ``|`` in a model name used to reach the usage read model's fields and make every later
    ``GET /v1/usage`` and ``GET /v1/forecast`` a 500."""
    event = turn(f"c-{uuid.uuid4().hex[:8]}", model="evil|model")
    resp = httpx.post(f"{edge}/v1/events", json=event, headers=bearer(settings), timeout=10)
    assert "must not contain '|'" in assert_problem(resp, 422)["detail"]
    started = {"type": "ConversationStarted", "subject": "c1", "payload": {"actor": "bo", "model": "a|b"}}
    resp = httpx.post(f"{edge}/v1/events", json=started, headers=bearer(settings), timeout=10)
    assert "payload.model" in assert_problem(resp, 422)["detail"]
    resp = httpx.post(
        f"{edge}/v1/conversation/step",
        json={"conversation_id": "c1", "content": "x", "model": "a|b"},
        headers=bearer(settings),
        params={"wait": 0},
        timeout=10,
    )
    assert "model 'a|b' must not contain '|'" in assert_problem(resp, 422)["detail"]
    assert events_on_log(settings) == []
