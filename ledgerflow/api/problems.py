"""RFC 9457 problem details: every error the edge returns is ``application/problem+json``.

| raised                              | status | extra                                   |
|-------------------------------------|--------|-----------------------------------------|
| ``starlette.HTTPException``         | its own| its headers (e.g. ``Allow`` on 405)     |
| ``BadRequest`` (malformed body)     | 400    |                                         |
| ``ClientDisconnect`` (body cut off) | 400    | logged at info only: no one reads it    |
| ``ValidationError``                 | 422    |                                         |
| ``LimitExceeded`` (api/limits.py)   | its own| 429: ``Retry-After``; 408: ``Connection: close`` |
| ``InFlight`` (api/idempotency.py)   | 409    | ``Retry-After: 1``                      |
| ``PreconditionFailed`` (constitution.py) | 412 | both hashes; ``Ledgerflow-Constitution`` |
| ``AuthError``                       | 401/403| ``WWW-Authenticate: Bearer ...``        |
| other ``DomainError``               | 409    |                                         |
| ``InfrastructureError``             | 503    | ``Retry-After: 5``; detail not leaked   |
| ``TopicsMissing`` (one of those)    | 503    | the same; the detail names the topics   |
| Redis/Kafka errors, ``TimeoutError``| 503    | the same: a dependency fault's one face |
| a Redis refusal (BUSY, MISCONF, …)  | 503    | the same (``redisclient.refusing``)     |
| anything else                       | 500    | logged with an ``error_id``; no details |
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Mapping
from http import HTTPStatus
from typing import Any

import orjson
import redis.exceptions
from aiokafka.errors import KafkaError
from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect, HTTPConnection, Request
from starlette.responses import Response

from ledgerflow.api.constitution import PreconditionFailed, header_of
from ledgerflow.api.idempotency import InFlight
from ledgerflow.api.limits import DEFAULT_BODY_TIMEOUT_S, EdgeLimits, LimitExceeded, check_content_length
from ledgerflow.auth.exceptions import MissingCredentials
from ledgerflow.errors import (
    AuthError,
    DomainError,
    InfrastructureError,
    TopicsMissing,
    ValidationError,
)
from ledgerflow.limits import MAX_BODY_BYTES
from ledgerflow.quoting import quoted
from ledgerflow.redisclient import REFUSING, UNAVAILABLE, refusing

log = logging.getLogger(__name__)

PROBLEM_JSON = "application/problem+json"
RETRY_AFTER_SECONDS = 5
REALM = "ledgerflow"
DEPENDENCY_FAULTS: tuple[type[BaseException], ...] = (
    redis.exceptions.ConnectionError,
    redis.exceptions.TimeoutError,
    *REFUSING,  # a Redis out of memory, read-only, loading
    *UNAVAILABLE,  # a Redis Cluster failing over
    KafkaError,
    TimeoutError,  # asyncio.timeout / wait_for around a dependency call
    ConnectionError,
)
"""Errors that mean "a dependency is down or slow": always 503 + Retry-After, never 500. So does
any Redis error reply that is a refusal (``redisclient.refusing``: BUSY, MISCONF, … are plain
ResponseErrors to redis-py, so they are told by their code, not their type)."""
_NO_BODY = frozenset({204, 205, 304})
_RESERVED = frozenset({"type"})
# RFC 9110 reason phrases where Python 3.11's http.HTTPStatus still has the RFC 7231 ones.
_RFC9110_TITLES = {
    413: "Content Too Large",
    414: "URI Too Long",
    416: "Range Not Satisfiable",
    422: "Unprocessable Content",
}


class BadRequest(ValidationError):
    """The request is malformed (not JSON, wrong content type): answered with 400."""


class ProblemResponse(Response):
    media_type = PROBLEM_JSON

    def render(self, content: Any) -> bytes:
        return orjson.dumps(content)


DEPENDENCY_DOWN = "a dependency of the service is unavailable; retry shortly"


def problem(
    status: int,
    title: str,
    detail: str,
    *,
    type_: str = "about:blank",
    headers: Mapping[str, str] | None = None,
    **extensions: Any,
) -> Response:
    """A problem+json response. ``extensions`` become extra members (RFC 9457 §3.2)."""
    clash = _RESERVED & extensions.keys()
    if clash:
        raise ValueError(f"extension member(s) {sorted(clash)} clash with RFC 9457 members")
    body: dict[str, Any] = {"type": type_, "title": title, "status": status, "detail": detail}
    body.update(extensions)
    return ProblemResponse(body, status_code=status, headers=dict(headers or {}))


def status_title(status: int) -> str:
    """The RFC 9110 reason phrase of ``status`` (the RFC 9457 title for ``about:blank``)."""
    if status in _RFC9110_TITLES:
        return _RFC9110_TITLES[status]
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "Error"


NO_ROUTE = "no operation at this path: the operations are listed at /openapi.json"
CLIENT_GONE = "client disconnected before sending the whole body"


def problem_for(exc: BaseException) -> Response:
    """The response for ``exc`` (see the module table). Logs 5xx causes."""
    if isinstance(exc, HTTPException):
        headers = dict(exc.headers or {})
        if exc.status_code in _NO_BODY or exc.status_code < 200:
            return Response(status_code=exc.status_code, headers=headers)
        detail = str(exc.detail)
        if exc.status_code == 404 and detail == status_title(404):  # the router's: no route matched
            detail = NO_ROUTE
        return problem(exc.status_code, status_title(exc.status_code), detail, headers=headers)
    if isinstance(exc, AuthError):
        status = exc.status if exc.status in (401, 403) else 401
        return problem(
            status,
            status_title(status),
            exc.detail,
            headers={"WWW-Authenticate": www_authenticate(exc)},
        )
    if isinstance(exc, LimitExceeded):
        headers = {"Retry-After": str(exc.retry_after)} if exc.retry_after is not None else {}
        if exc.status == 408:
            # RFC 9110 §15.5.9: the server closes the connection; the client's rest of the body is
            # not waited for (uvicorn would otherwise read and drop it for as long as it trickles in).
            headers["Connection"] = "close"
        return problem(exc.status, status_title(exc.status), str(exc), headers=headers, limit=exc.limit)
    if isinstance(exc, InFlight):
        return problem(409, status_title(409), str(exc), headers={"Retry-After": "1"})
    if isinstance(exc, PreconditionFailed):
        return problem(
            412,
            status_title(412),
            str(exc),
            headers=header_of(exc.in_force),
            required=[f"sha256={h}" for h in exc.required],
            in_force=f"sha256={exc.in_force.constitution_hash}",
            in_force_version=exc.in_force.version or 0,
        )
    if isinstance(exc, ClientDisconnect):
        # The client closed its connection while the edge read its body: not a server fault, so no
        # traceback and no 5xx. Nobody reads this answer (uvicorn drops it); the request metrics
        # count it as the 400 it is.
        log.info("answering 400: %s", CLIENT_GONE)
        return problem(400, status_title(400), CLIENT_GONE)
    if isinstance(exc, BadRequest):
        return problem(400, status_title(400), str(exc))
    if isinstance(exc, ValidationError):
        return problem(422, status_title(422), str(exc))
    if isinstance(exc, DomainError):
        return problem(409, status_title(409), str(exc))
    if isinstance(exc, (InfrastructureError, *DEPENDENCY_FAULTS)) or refusing(exc):
        log.warning("answering 503: %r", exc)
        return problem(
            503,
            status_title(503),
            str(exc) if isinstance(exc, TopicsMissing) else DEPENDENCY_DOWN,
            headers={"Retry-After": str(RETRY_AFTER_SECONDS)},
        )
    error_id = uuid.uuid4().hex[:16]
    log.error("unhandled error %s", error_id, exc_info=exc)
    return problem(
        500,
        status_title(500),
        f"internal error; operators can find it in the logs as error_id {error_id}",
        error_id=error_id,
        # Starlette re-raises after this answer and the server drops the connection: said here, a
        # client opens a new one instead of sending its next request into a reset (review).
        headers={"Connection": "close"},
    )


def www_authenticate(exc: AuthError) -> str:
    """The RFC 6750 ``WWW-Authenticate`` challenge for an ``AuthError``."""
    if isinstance(exc, MissingCredentials):
        return f'Bearer realm="{REALM}"'
    code = "insufficient_scope" if exc.status == 403 else "invalid_token"
    return f'Bearer realm="{REALM}", error="{code}", error_description="{_header_safe(exc.detail)}"'


def _header_safe(text: str, limit: int = 300) -> str:
    # RFC 6750 §3: error_description is %x20-21 / %x23-5B / %x5D-7E (no " or \).
    cleaned = "".join(
        "'" if ch == '"' else "/" if ch == "\\" else ch if " " <= ch <= "~" else "?" for ch in text
    )
    return cleaned if len(cleaned) <= limit else cleaned[: limit - 3] + "..."


async def handle_exception(request: HTTPConnection, exc: Exception) -> Response:
    """Starlette exception handler for every type in ``exception_handlers``."""
    return problem_for(exc)


async def handle_response_error(request: HTTPConnection, exc: Exception) -> Response:
    """A Redis error reply: a refusal (BUSY, MISCONF, …) is answered 503 like any dependency fault;
    any other (WRONGTYPE, a script's error) is raised on to the 500 of ``ServerErrorMiddleware``,
    traceback logged, as before."""
    if not refusing(exc):
        raise exc
    return problem_for(exc)


def exception_handlers() -> dict[Any, Any]:
    """Handlers for ``Starlette(exception_handlers=exception_handlers())``.

    ``Exception`` is served by Starlette's outermost ``ServerErrorMiddleware``, which
    answers with our 500 problem and then re-raises so the server logs it too. ``ClientDisconnect``
    (``request.stream()`` found the client gone) is listed on its own so that it is answered like
    the other 4xx, without reaching ``ServerErrorMiddleware`` and uvicorn's "Exception in ASGI
    application"; so is redis-py's ``ResponseError``, whose refusals (BUSY, MISCONF, …) are a 503
    (``handle_response_error``).
    """
    return {
        HTTPException: handle_exception,
        ClientDisconnect: handle_exception,
        AuthError: handle_exception,
        ValidationError: handle_exception,
        DomainError: handle_exception,
        InfrastructureError: handle_exception,
        redis.exceptions.ResponseError: handle_response_error,
        **{fault: handle_exception for fault in DEPENDENCY_FAULTS},
        Exception: handle_exception,
    }


async def read_body(request: Request, limit: int = MAX_BODY_BYTES, timeout_s: float | None = None) -> bytes:
    """The request body, refused with 413 as soon as it is known to exceed ``limit``: from
    ``Content-Length`` before reading anything, else while streaming (never read whole); and with
    408 if it is not all there within ``timeout_s`` (default: the edge's ``body_timeout_s``) of the
    first read, however slowly it trickles in. A client that disconnects before the body's end raises
    Starlette's ``ClientDisconnect``, which ``problem_for`` answers 400 (not an error of the edge)."""
    check_content_length(request.headers, limit)
    seconds = body_timeout_of(request) if timeout_s is None else timeout_s
    chunks: list[bytes] = []
    size = 0
    deadline = asyncio.timeout(seconds)
    try:
        async with deadline:
            async for chunk in request.stream():
                size += len(chunk)
                if size > limit:
                    raise LimitExceeded("body", 413, f"body exceeds the {limit}-byte limit")
                chunks.append(chunk)
    except TimeoutError:
        if not deadline.expired():
            raise
        raise LimitExceeded(
            "body_timeout", 408, f"request body not received within {seconds:g} s ({size} bytes arrived)"
        ) from None
    return b"".join(chunks)


def body_timeout_of(request: Request) -> float:
    """The edge's body deadline (``EdgeLimits.body_timeout_s``); the default outside an edge's lifespan."""
    ctx = getattr(request.app.state, "ctx", None) if "app" in request.scope else None
    limits: EdgeLimits | None = getattr(ctx, "limits", None)
    return DEFAULT_BODY_TIMEOUT_S if limits is None else limits.body_timeout_s


async def read_json(request: Request) -> dict[str, Any]:
    """The request body as a JSON object; ``BadRequest`` (400) saying what is wrong otherwise."""
    content_type = request.headers.get("content-type", "")
    media_type = content_type.split(";", 1)[0].strip().lower()
    if media_type and media_type != "application/json" and not media_type.endswith("+json"):
        raise BadRequest(f"expected Content-Type application/json, got {quoted(content_type, 80)}")
    body = await read_body(request)
    try:
        obj = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise BadRequest(f"request body is not valid JSON ({exc})") from None
    if not isinstance(obj, dict):
        raise BadRequest("request body must be a JSON object")
    return obj
