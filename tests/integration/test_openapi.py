"""The OpenAPI document: checked in, complete, and true of a live edge (schemathesis).

schemathesis (PyPI) generates requests for every routed operation from ``document()``
and sends them, with a valid bearer token holding every role, to a real edge process
backed by a real worker; each response must not be a 5xx and must match the documented
status codes, content types and schemas. The SSE routes are checked by hand (a valid
request opens an endless stream), the rest are fuzzed with a small, bounded budget.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from ledgerflow.api.app import routes
from ledgerflow.api.openapi import document, documented_routes, render
from ledgerflow.config import Settings
from ledgerflow.kafka.admin import ensure_topics
from tests.integration import edgekit
from tests.support.processes import free_port, start, wait_http_ready

ROOT = Path(__file__).resolve().parents[2]
STREAMS = ("/v1/conversation/stream", "/v1/streams/tenant")
ROUTED = {route.path for route in documented_routes(routes())}
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]

schema = schemathesis.openapi.from_dict(document()).include(path=sorted(ROUTED - set(STREAMS)))


def test_checked_in_document_equals_the_generated_one() -> None:
    assert (ROOT / "docs" / "openapi.json").read_text() == render(), (
        "docs/openapi.json is stale: run `python -m ledgerflow.api.openapi > docs/openapi.json`"
    )


def test_document_and_route_table_describe_the_same_operations() -> None:
    routed = {
        (route.path, method.lower())
        for route in documented_routes(routes())
        for method in (route.methods or {"GET"}) - {"HEAD"}
    }
    documented = {(path, method) for path, item in document()["paths"].items() for method in item}
    assert not routed - documented, f"routes without an OpenAPI entry: {sorted(routed - documented)}"
    assert not documented - routed, f"documented operations nobody routes: {sorted(documented - routed)}"
    ids = [op["operationId"] for item in document()["paths"].values() for op in item.values()]
    assert len(ids) == len(set(ids)), f"operationIds must be unique: {sorted(ids)}"
    for path, item in document()["paths"].items():
        for method, op in item.items():
            for status, response in op["responses"].items():
                if int(status) >= 400:
                    assert "application/problem+json" in response["content"], (method, path, status)


@pytest.fixture(scope="module")
def target(stack: Settings, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, dict[str, str]]]:
    """One worker and one edge for the whole module, on their own topics."""
    settings = stack.with_overrides(topic_prefix=f"t{uuid.uuid4().hex[:10]}.")
    asyncio.run(ensure_topics(settings))
    log_dir = stack.state_dir / "test-logs" / "test_openapi"
    http = f"127.0.0.1:{free_port()}"
    worker = start(settings, "worker", "worker", log_dir=log_dir)
    edge = start(settings.with_overrides(http=http), "edge", "serve", log_dir=log_dir)
    try:
        wait_http_ready(edge, f"http://{http}")
        token = edgekit.token(stack, "schemathesis", roles="producer,subscriber,admin,auditor")
        yield f"http://{http}", {"Authorization": f"Bearer {token}"}
    finally:
        edge.stop()
        worker.stop()


@schema.parametrize()
@settings(
    max_examples=12,
    deadline=None,
    derandomize=True,
    suppress_health_check=[
        HealthCheck.function_scoped_fixture,
        HealthCheck.too_slow,
        HealthCheck.filter_too_much,
    ],
)
def test_api_conforms_to_its_document_and_never_answers_5xx(case, target) -> None:
    base, headers = target
    wait = (case.query or {}).get("wait")
    if isinstance(wait, int | float) and not isinstance(wait, bool) and wait > 0.5:
        case.query["wait"] = 0.5  # bounded: the decision arrives in time or the answer is 202
    case.call_and_validate(base_url=base, headers=headers, checks=CHECKS, timeout=15)


@pytest.mark.parametrize("path", STREAMS)
def test_stream_routes_answer_as_documented(edge: str, tokens, path: str) -> None:
    token = tokens("acme", "subscriber")
    url = f"{edge}{path}?conversation_id=c1"
    with httpx.stream("GET", url, headers={"Authorization": f"Bearer {token}"}, timeout=10) as resp:
        assert resp.status_code == 200
        assert resp.headers["content-type"].startswith("text/event-stream")
        assert next(resp.iter_lines()).startswith("retry:")
    unauthenticated = httpx.get(url, timeout=5)
    assert unauthenticated.status_code == 401
    assert unauthenticated.headers["content-type"] == "application/problem+json"
    if path == "/v1/conversation/stream":
        missing = httpx.get(f"{edge}{path}", headers={"Authorization": f"Bearer {token}"}, timeout=5)
        assert missing.status_code == 422 and "conversation_id" in missing.json()["detail"]
