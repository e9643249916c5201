"""Problem responses, through a pure Starlette app (no Kafka or Redis)."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import orjson
import pytest
from redis.exceptions import ResponseError
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route
from starlette.testclient import TestClient

from ledgerflow.api.problems import (
    CLIENT_GONE,
    PROBLEM_JSON,
    BadRequest,
    exception_handlers,
    problem,
    read_json,
    status_title,
)
from ledgerflow.auth.exceptions import MissingCredentials
from ledgerflow.errors import AuthError, DomainError, InfrastructureError, TopicsMissing, ValidationError

SECRET = "redis://:hunter2@10.1.2.3:6379"
# Redis refusals redis-py has no class for (a plain ResponseError), and an error reply that is a bug.
BUSY = "BUSY Redis is busy running a script. You can only call SCRIPT KILL or SHUTDOWN NOSAVE."
MISCONF = "MISCONF Redis is configured to save RDB snapshots, but it's currently unable to persist to disk."
WRONGTYPE = "WRONGTYPE Operation against a key holding the wrong kind of value"


def raiser(exc: Exception):
    async def endpoint(request: Request) -> None:
        raise exc

    return endpoint


async def echo_json(request: Request) -> JSONResponse:
    return JSONResponse({"got": await read_json(request)})


app = Starlette(
    routes=[
        Route("/teapot", raiser(HTTPException(418, "short and stout"))),
        Route("/validation", raiser(ValidationError("field 'tenant' is required"))),
        Route("/bad", raiser(BadRequest("body is not JSON"))),
        Route("/unauth", raiser(AuthError('token expired "yesterday"\n'))),
        Route("/missing", raiser(MissingCredentials("missing bearer token"))),
        Route("/forbidden", raiser(AuthError("role 'admin' required", status=403))),
        Route("/conflict", raiser(DomainError("training already enabled"))),
        Route("/infra", raiser(InfrastructureError(f"Redis unreachable at {SECRET}"))),
        Route("/gone", raiser(TopicsMissing("Kafka topic t.conversation.events missing: retry later"))),
        Route("/boom", raiser(RuntimeError(f"connection string {SECRET}"))),
        Route("/busy", raiser(ResponseError(BUSY))),
        Route("/misconf", raiser(ResponseError(MISCONF))),
        Route("/wrongtype", raiser(ResponseError(WRONGTYPE))),
        Route("/echo", echo_json, methods=["POST"]),
    ],
    exception_handlers=exception_handlers(),
)
client = TestClient(app, raise_server_exceptions=False)


def assert_problem(response, status: int, title: str) -> dict:
    assert response.status_code == status
    assert response.headers["content-type"] == PROBLEM_JSON
    body = response.json()
    assert body["type"] == "about:blank"
    assert body["status"] == status
    assert body["title"] == title
    return body


def test_problem_builds_rfc9457_body_with_extensions() -> None:
    response = problem(409, "Conflict", "version 3 expected", expected_version=3, headers={"X-A": "1"})
    assert response.status_code == 409
    assert response.media_type == PROBLEM_JSON
    assert response.headers["x-a"] == "1"
    assert orjson.loads(response.body) == {
        "type": "about:blank",
        "title": "Conflict",
        "status": 409,
        "detail": "version 3 expected",
        "expected_version": 3,
    }


def test_problem_refuses_an_extension_named_type() -> None:
    with pytest.raises(ValueError, match="type"):
        problem(400, "Bad Request", "x", type="https://example.invalid/x")


def test_http_exception_becomes_a_problem() -> None:
    body = assert_problem(client.get("/teapot"), 418, "I'm a Teapot")
    assert body["detail"] == "short and stout"


def test_unknown_route_is_a_404_problem() -> None:
    body = assert_problem(client.get("/nowhere"), 404, "Not Found")
    assert body["detail"] == "no operation at this path: the operations are listed at /openapi.json"


def test_wrong_method_is_a_405_problem_with_allow_header() -> None:
    response = client.delete("/echo")
    assert_problem(response, 405, "Method Not Allowed")
    assert response.headers["allow"] == "POST"


def test_validation_error_is_422() -> None:
    body = assert_problem(client.get("/validation"), 422, "Unprocessable Content")
    assert body["detail"] == "field 'tenant' is required"


def test_bad_request_is_400() -> None:
    assert_problem(client.get("/bad"), 400, "Bad Request")


def test_malformed_json_body_is_400() -> None:
    response = client.post("/echo", content=b"{not json", headers={"content-type": "application/json"})
    assert "not valid JSON" in assert_problem(response, 400, "Bad Request")["detail"]


def test_wrong_content_type_is_400() -> None:
    response = client.post(
        "/echo", content=b"a=1", headers={"content-type": "application/x-www-form-urlencoded"}
    )
    assert "application/json" in assert_problem(response, 400, "Bad Request")["detail"]


def test_valid_json_body_is_read() -> None:
    assert client.post("/echo", json={"a": [1, 2]}).json() == {"got": {"a": [1, 2]}}


def test_a_client_gone_halfway_through_the_body_is_400_logged_at_info_only(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The server says ``http.disconnect`` after 10 of 1000 bytes: ``read_body`` raises Starlette's
    ``ClientDisconnect``, which the handlers answer 400 (what the request metrics count) without a
    traceback and without re-raising it to the server (before: a logged "unhandled error", a 500,
    and uvicorn's "Exception in ASGI application")."""
    incoming = iter(
        [{"type": "http.request", "body": b'{"type": "', "more_body": True}, {"type": "http.disconnect"}]
    )
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return next(incoming)

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    scope = {
        "type": "http",
        "asgi": {"version": "3.0", "spec_version": "2.3"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": "/echo",
        "raw_path": b"/echo",
        "root_path": "",
        "query_string": b"",
        "headers": [(b"host", b"edge"), (b"content-type", b"application/json"), (b"content-length", b"1000")],
        "client": ("127.0.0.1", 50000),
        "server": ("127.0.0.1", 8000),
    }
    with caplog.at_level(logging.DEBUG, logger="ledgerflow.api.problems"):
        asyncio.run(app(scope, receive, send))  # the old code raised ClientDisconnect out of the app
    assert sent[0]["type"] == "http.response.start" and sent[0]["status"] == 400, sent
    body = orjson.loads(b"".join(m.get("body", b"") for m in sent[1:]))
    assert body["title"] == "Bad Request" and body["detail"] == CLIENT_GONE, body
    assert [(r.levelno, r.exc_info) for r in caplog.records] == [(logging.INFO, None)], caplog.records
    assert CLIENT_GONE in caplog.records[0].getMessage()


def test_auth_error_is_401_with_an_rfc6750_challenge() -> None:
    response = client.get("/unauth")
    body = assert_problem(response, 401, "Unauthorized")
    assert body["detail"] == 'token expired "yesterday"\n'
    assert response.headers["www-authenticate"] == (
        'Bearer realm="ledgerflow", error="invalid_token", error_description="token expired \'yesterday\'?"'
    )


def test_missing_credentials_challenge_has_no_error_code() -> None:
    response = client.get("/missing")
    assert_problem(response, 401, "Unauthorized")
    assert response.headers["www-authenticate"] == 'Bearer realm="ledgerflow"'


def test_forbidden_is_403_with_insufficient_scope() -> None:
    response = client.get("/forbidden")
    assert_problem(response, 403, "Forbidden")
    assert 'error="insufficient_scope"' in response.headers["www-authenticate"]


def test_other_domain_error_is_409() -> None:
    assert assert_problem(client.get("/conflict"), 409, "Conflict")["detail"] == "training already enabled"


def test_infrastructure_error_is_503_with_retry_after_and_no_internals() -> None:
    response = client.get("/infra")
    assert_problem(response, 503, "Service Unavailable")
    assert response.headers["retry-after"] == "5"
    assert "hunter2" not in response.text


def test_topics_missing_is_503_with_retry_after_naming_the_topic() -> None:
    """Topics deleted under the edge: the client is told which one, in one line (a name is no secret)."""
    response = client.get("/gone")
    body = assert_problem(response, 503, "Service Unavailable")
    assert response.headers["retry-after"] == "5"
    assert body["detail"] == "Kafka topic t.conversation.events missing: retry later"


@pytest.mark.parametrize("path", ["/busy", "/misconf"])
def test_a_redis_refusal_that_escapes_is_503_with_retry_after(path: str) -> None:
    """A Redis that is BUSY (a long script) or MISCONF (a failed background save) is a dependency
    fault wherever its ResponseError escapes: 503 + Retry-After, not a 500 with a traceback."""
    response = client.get(path)
    assert_problem(response, 503, "Service Unavailable")
    assert response.headers["retry-after"] == "5"
    assert "connection" not in response.headers


def test_an_error_reply_that_is_not_a_refusal_is_still_a_500(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.ERROR, logger="ledgerflow.api.problems"):
        response = client.get("/wrongtype")
    assert_problem(response, 500, "Internal Server Error")
    assert any(record.exc_info and record.exc_info[0] is ResponseError for record in caplog.records)


def test_unhandled_error_is_500_logged_and_not_leaked(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.ERROR, logger="ledgerflow.api.problems"):
        response = client.get("/boom")
    body = assert_problem(response, 500, "Internal Server Error")
    assert "hunter2" not in response.text
    assert "RuntimeError" not in response.text
    assert body["error_id"] in body["detail"]
    assert any(body["error_id"] in record.getMessage() for record in caplog.records)
    assert any(record.exc_info and record.exc_info[0] is RuntimeError for record in caplog.records)
    # The server drops the connection after a 500 (Starlette re-raises): the client is told so.
    assert response.headers["connection"] == "close"


@pytest.mark.parametrize(
    ("status", "title"),
    [(413, "Content Too Large"), (422, "Unprocessable Content"), (404, "Not Found"), (599, "Error")],
)
def test_titles_are_rfc9110_reason_phrases(status: int, title: str) -> None:
    assert status_title(status) == title
