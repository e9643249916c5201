"""Auth at the edge, on a real uvicorn process: refusals are 401/403 problem+json."""

from __future__ import annotations

import time

import httpx
import pytest

PROBLEM = "application/problem+json"


def _assert_problem(resp: httpx.Response, status: int) -> dict:
    assert resp.status_code == status, resp.text
    assert resp.headers["content-type"].startswith(PROBLEM), resp.headers
    body = resp.json()
    assert body["status"] == status and body["detail"]
    return body


@pytest.mark.parametrize(
    "path", ["/v1/conversations/c1", "/v1/conversation/stream?conversation_id=c1", "/v1/streams/tenant"]
)
def test_request_without_token_is_refused_with_401(edge: str, path: str) -> None:
    body = _assert_problem(httpx.get(edge + path, timeout=5), 401)
    assert "bearer" in body["detail"].lower()


def test_expired_token_is_refused_with_401(edge: str, tokens) -> None:
    token = tokens("acme", "subscriber", ttl_seconds=60, now=time.time() - 3600)
    resp = httpx.get(f"{edge}/v1/conversations/c1", headers={"Authorization": f"Bearer {token}"}, timeout=5)
    body = _assert_problem(resp, 401)
    assert "expired" in body["detail"]
    assert resp.headers["www-authenticate"].startswith("Bearer")


@pytest.mark.parametrize(
    "path",
    [
        "/v1/conversations/c1?tenant=acme",
        "/v1/conversation/stream?conversation_id=c1&tenant=acme",
        "/v1/streams/tenant?tenant=acme",
    ],
)
def test_another_tenants_token_is_refused_with_403(edge: str, tokens, path: str) -> None:
    token = tokens("globex", "subscriber,producer")
    resp = httpx.get(edge + path, headers={"Authorization": f"Bearer {token}"}, timeout=5)
    body = _assert_problem(resp, 403)
    assert "globex" in body["detail"] and "acme" in body["detail"]


TENANT_PARAM_PATHS = [  # every operation documented with the optional `tenant` query parameter
    "/v1/conversations?",
    "/v1/conversations/c1?",
    "/v1/conversation/stream?conversation_id=c1&",
    "/v1/streams/tenant?",
    "/v1/usage?",
    "/v1/forecast?model=m&",
    "/v1/models?",
]


def test_a_repeated_tenant_parameter_naming_another_tenant_is_refused_with_403(edge: str, tokens) -> None:
    """``?tenant=acme&tenant=globex`` with globex's token: the handlers read only the last value
    (Starlette's ``get``), so it was answered with globex's data (200, or a stream) although one
    value names another tenant; a proxy or WAF judging the first value saw a cross-tenant read."""
    headers = {"Authorization": f"Bearer {tokens('globex', 'subscriber,producer')}"}
    for path in TENANT_PARAM_PATHS:
        resp = httpx.get(f"{edge}{path}tenant=acme&tenant=globex", headers=headers, timeout=5)
        body = _assert_problem(resp, 403)
        assert "'acme'" in body["detail"], (path, body)


def test_ingest_for_another_tenant_is_refused_with_403(edge: str, tokens) -> None:
    token = tokens("globex", "producer")
    event = {"type": "ConversationClosed", "tenant": "acme", "subject": "c1", "payload": {"reason": "x"}}
    resp = httpx.post(
        f"{edge}/v1/events", json=event, headers={"Authorization": f"Bearer {token}"}, timeout=5
    )
    _assert_problem(resp, 403)


def test_missing_role_is_refused_with_403(edge: str, tokens) -> None:
    token = tokens("acme", "subscriber")
    event = {"type": "ConversationClosed", "subject": "c1", "payload": {"reason": "x"}}
    resp = httpx.post(
        f"{edge}/v1/events", json=event, headers={"Authorization": f"Bearer {token}"}, timeout=5
    )
    assert "producer" in _assert_problem(resp, 403)["detail"]


def test_bad_ingest_bodies_get_4xx_problems_naming_the_fault(edge: str, tokens) -> None:
    headers = {"Authorization": f"Bearer {tokens('acme', 'producer')}"}
    not_json = httpx.post(
        f"{edge}/v1/events", content=b"{nope", headers=headers | {"content-type": "application/json"}
    )
    assert "JSON" in _assert_problem(not_json, 400)["detail"]
    bad_role = {
        "type": "MessageSubmitted",
        "subject": "c1",
        "payload": {"turn_id": "t", "role": "wizard", "content": "x", "model": "m", "tokens": None},
    }
    assert (
        "role"
        in _assert_problem(httpx.post(f"{edge}/v1/events", json=bad_role, headers=headers), 422)["detail"]
    )


def test_health_is_public_and_ready_checks_dependencies(edge: str) -> None:
    assert httpx.get(f"{edge}/healthz").json() == {"status": "ok"}
    ready = httpx.get(f"{edge}/readyz").json()
    assert ready["checks"] == {"redis": "ok", "kafka": "ok"}
    assert "ledgerflow_http_requests_total" in httpx.get(f"{edge}/metrics").text
