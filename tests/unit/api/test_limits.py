"""Edge limits as pure logic (token buckets, SSE slots, header limits) and the streaming
body limit through a pure Starlette app (no Kafka or Redis)."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace

import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route
from starlette.testclient import TestClient

from ledgerflow.api.consistency import Position, parse_token
from ledgerflow.api.edge_checks import refuse_client_producer
from ledgerflow.api.limits import (
    DEFAULT_BODY_TIMEOUT_S,
    DEFAULT_HEADER_TIMEOUT_S,
    DEFAULT_WRITE_TIMEOUT_S,
    LIMIT_NAMES,
    LIMITED,
    MAX_HEADER_BYTES,
    MAX_HEADERS,
    MAX_TARGET_BYTES,
    EdgeLimits,
    HeaderLimits,
    LimitExceeded,
    SseSlots,
    TokenBuckets,
    header_violation,
    target_violation,
)
from ledgerflow.api.problems import body_timeout_of, exception_handlers, problem_for, read_body, read_json
from ledgerflow.errors import ValidationError
from ledgerflow.limits import MAX_BODY_BYTES


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_token_bucket_grants_the_burst_then_refuses_with_the_wait_then_refills() -> None:
    clock = Clock()
    buckets = TokenBuckets(rate=2.0, burst=3.0, clock=clock)
    assert [buckets.take("acme") for _ in range(3)] == [None, None, None]
    assert buckets.take("acme") == pytest.approx(0.5)
    assert buckets.take("globex") is None  # per tenant
    clock.now += 0.5
    assert buckets.take("acme") is None


def test_token_buckets_forget_refilled_tenants() -> None:
    clock = Clock()
    buckets = TokenBuckets(rate=1000.0, burst=1.0, clock=clock)
    for i in range(5000):
        buckets.take(f"t{i}")
        clock.now += 0.01
    assert len(buckets) <= 4097


def test_rate_zero_disables_the_limit() -> None:
    assert all(TokenBuckets(rate=0, burst=0).take("a") is None for _ in range(10))


def test_sse_slots_refuse_over_the_limit_and_free_on_release() -> None:
    slots = SseSlots(2)
    before = LIMITED.labels("sse")._value.get()
    slots.acquire("acme")
    slots.acquire("acme")
    slots.acquire("globex")
    with pytest.raises(LimitExceeded) as refused:
        slots.acquire("acme")
    assert (refused.value.status, refused.value.retry_after) == (429, 5)
    assert LIMITED.labels("sse")._value.get() == before + 1
    slots.release("acme")
    slots.acquire("acme")
    for _ in range(3):
        slots.release("acme")
    assert slots.open("acme") == 0


def test_header_limits() -> None:
    assert header_violation([(b"a", b"b")] * MAX_HEADERS) is None
    assert "header fields" in str(header_violation([(b"a", b"b")] * (MAX_HEADERS + 1)))
    assert "bytes" in str(header_violation([(b"x-big", b"v" * MAX_HEADER_BYTES)]))


def test_target_limit_counts_path_question_mark_and_query_as_sent() -> None:
    path = b"/" + b"p" * (MAX_TARGET_BYTES - 1)
    assert target_violation({"raw_path": path, "query_string": b""}) is None
    assert "8193 bytes" in str(target_violation({"raw_path": path + b"p", "query_string": b""}))
    assert target_violation({"raw_path": b"/r", "query_string": b"q" * (MAX_TARGET_BYTES - 3)}) is None
    assert target_violation({"raw_path": b"/r", "query_string": b"q" * (MAX_TARGET_BYTES - 2)}) is not None
    assert target_violation({"path": "/" + "p" * MAX_TARGET_BYTES}) is not None  # no raw_path: the path


def test_limits_from_env_validate_values() -> None:
    assert EdgeLimits.from_env({"LEDGERFLOW_RATE_PER_TENANT": "5"}).rate_per_tenant == 5
    with pytest.raises(ValidationError, match="LEDGERFLOW_SSE_PER_TENANT"):
        EdgeLimits.from_env({"LEDGERFLOW_SSE_PER_TENANT": "many"})
    with pytest.raises(ValidationError):
        EdgeLimits.from_env({"LEDGERFLOW_RATE_BURST": "-1"})


def test_rule_pack_validations_are_limited_to_one_every_5_s_per_tenant_by_default() -> None:
    limits = EdgeLimits.from_env({})
    assert (limits.validate_rate_per_tenant, limits.validate_burst) == (0.2, 10.0)
    env = {"LEDGERFLOW_VALIDATE_RATE_PER_TENANT": "0", "LEDGERFLOW_VALIDATE_BURST": "3"}
    tuned = EdgeLimits.from_env(env)
    assert (tuned.validate_rate_per_tenant, tuned.validate_burst) == (0.0, 3.0)  # 0: no limit
    assert "validate" in LIMIT_NAMES


def test_rule_pack_publications_are_limited_to_one_a_minute_per_tenant_by_default() -> None:
    limits = EdgeLimits.from_env({})
    assert (limits.publish_rate_per_tenant * 60, limits.publish_burst) == (1.0, 10.0)
    tuned = EdgeLimits.from_env({"LEDGERFLOW_PUBLISH_RATE_PER_TENANT": "0", "LEDGERFLOW_PUBLISH_BURST": "3"})
    assert (tuned.publish_rate_per_tenant, tuned.publish_burst) == (0.0, 3.0)  # 0: no limit
    assert "publish" in LIMIT_NAMES
    with pytest.raises(ValidationError):
        EdgeLimits.from_env({"LEDGERFLOW_PUBLISH_BURST": "-1"})


def test_client_deadlines_from_env() -> None:
    assert EdgeLimits.from_env({}).header_timeout_s == DEFAULT_HEADER_TIMEOUT_S == 10
    assert EdgeLimits.from_env({}).body_timeout_s == DEFAULT_BODY_TIMEOUT_S == 10
    assert EdgeLimits.from_env({}).write_timeout_s == DEFAULT_WRITE_TIMEOUT_S == 30
    tuned = EdgeLimits.from_env(
        {
            "LEDGERFLOW_HEADER_TIMEOUT_S": "1.5",
            "LEDGERFLOW_BODY_TIMEOUT_S": "0.5",
            "LEDGERFLOW_WRITE_TIMEOUT_S": "2",
        }
    )
    assert (tuned.header_timeout_s, tuned.body_timeout_s, tuned.write_timeout_s) == (1.5, 0.5, 2)
    for name in ("LEDGERFLOW_HEADER_TIMEOUT_S", "LEDGERFLOW_BODY_TIMEOUT_S", "LEDGERFLOW_WRITE_TIMEOUT_S"):
        for bad in ("0", "-1", "nan", "inf", "soon", "86401"):  # no "off": a stalled client would stay
            with pytest.raises(ValidationError, match=f"^{name}='{bad}': seconds above 0 and at most 86400"):
                EdgeLimits.from_env({name: bad})


def test_the_deadlines_have_their_own_limit_labels() -> None:
    assert {"body_timeout", "header_timeout", "write_timeout"} <= set(LIMIT_NAMES)


def _trickling(chunks: int, every_s: float, headers: list[tuple[bytes, bytes]] | None = None) -> Request:
    """A request whose body arrives one byte every ``every_s`` seconds, ``chunks`` bytes in all."""
    sent = 0

    async def receive() -> dict:
        nonlocal sent
        await asyncio.sleep(every_s)
        sent += 1
        return {"type": "http.request", "body": b"1", "more_body": sent < chunks}

    scope = {"type": "http", "method": "POST", "path": "/", "headers": headers or []}
    return Request(scope, receive)


def test_a_body_not_received_within_the_deadline_is_408_with_connection_close() -> None:
    before = LIMITED.labels("body_timeout")._value.get()
    with pytest.raises(LimitExceeded) as refused:
        asyncio.run(read_body(_trickling(1000, 0.05, [(b"content-length", b"1000")]), timeout_s=0.3))
    assert (refused.value.status, refused.value.limit) == (408, "body_timeout")
    assert str(refused.value).startswith("request body not received within 0.3 s (")
    assert LIMITED.labels("body_timeout")._value.get() == before + 1
    response = problem_for(refused.value)
    assert response.status_code == 408 and response.headers["connection"] == "close"
    assert b'"title":"Request Timeout"' in response.body and b'"limit":"body_timeout"' in response.body


def test_a_slow_body_within_the_deadline_is_read_whole() -> None:
    assert asyncio.run(read_body(_trickling(5, 0.02), timeout_s=2)) == b"11111"


def test_the_body_deadline_is_the_edges_setting() -> None:
    request = _trickling(1, 0)
    assert body_timeout_of(request) == DEFAULT_BODY_TIMEOUT_S  # outside an edge: the default
    app = Starlette()
    app.state.ctx = SimpleNamespace(limits=EdgeLimits(body_timeout_s=2.5))
    assert body_timeout_of(Request({**request.scope, "app": app})) == 2.5


async def _echo(request: Request) -> JSONResponse:
    return JSONResponse({"keys": sorted(await read_json(request))})


def _client() -> TestClient:
    from starlette.middleware import Middleware

    app = Starlette(
        routes=[Route("/echo", _echo, methods=["POST"])],
        middleware=[Middleware(HeaderLimits)],
        exception_handlers=exception_handlers(),
    )
    return TestClient(app)


def test_body_over_the_limit_is_413_whether_declared_or_streamed() -> None:
    client = _client()
    big = b'{"a":"' + b"x" * MAX_BODY_BYTES + b'"}'
    declared = client.post("/echo", content=big, headers={"content-type": "application/json"})
    assert declared.status_code == 413 and declared.json()["limit"] == "body"
    assert declared.headers["content-type"] == "application/problem+json"

    def chunks():  # no Content-Length: chunked transfer
        for i in range(0, len(big), 8192):
            yield big[i : i + 8192]

    streamed = client.post("/echo", content=chunks(), headers={"content-type": "application/json"})
    assert streamed.status_code == 413
    assert client.post("/echo", json={"a": 1}).json() == {"keys": ["a"]}


def test_too_many_headers_are_431() -> None:
    headers = {f"x-h{i}": "v" for i in range(MAX_HEADERS + 1)}
    resp = _client().post("/echo", json={}, headers=headers)
    assert resp.status_code == 431 and resp.json()["limit"] == "headers"


def test_consistency_token_shapes() -> None:
    assert parse_token("3:41") == Position(3, 41)
    for bad in ["x", "1", ":1", "1:", "-1:2", "1:2:3", "１:2", "1:" + "9" * 20, " 1:2"]:
        with pytest.raises(ValidationError):
            parse_token(bad)


@pytest.mark.parametrize("producer", ["edge:alice", "ledgerflow-policy", "ledgerflow-training", None])
def test_a_client_supplied_producer_is_refused(producer: object) -> None:
    with pytest.raises(ValidationError, match="producer"):
        refuse_client_producer({"producer": producer})
    refuse_client_producer({"type": "x"})


def test_a_token_given_back_is_there_for_the_next_take_and_never_beyond_the_burst() -> None:
    now = [0.0]
    buckets = TokenBuckets(rate=1 / 60, burst=2.0, clock=lambda: now[0])
    assert buckets.take("acme") is None and buckets.take("acme") is None
    assert buckets.take("acme") is not None  # empty
    buckets.give_back("acme")  # the publication it paid for failed
    assert buckets.take("acme") is None
    buckets.give_back("acme")
    buckets.give_back("acme")
    buckets.give_back("acme")
    takes = [buckets.take("acme") for _ in range(3)]
    assert takes[:2] == [None, None] and takes[2] is not None  # capped at the burst
    buckets.give_back("globex")  # never took: nothing to give back, no bucket made
    assert "globex" not in buckets._buckets
