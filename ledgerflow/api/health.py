"""``/healthz`` (the process answers), ``/readyz`` (Kafka and Redis answer), ``/metrics``.

``/readyz`` is truthful within ``READY_WITHIN_S``: every call asks Redis (PING) and Kafka
(a ListOffsets round trip through the hub's consumer, shared by concurrent callers and
cached for ``Hub.PROBE_CACHE_S``) with a deadline of ``DEPENDENCY_DEADLINE_S`` each, in
parallel. A paused or stopped broker, or a Redis that is down or silent, turns it 503
naming ``kafka`` / ``redis`` in ``checks`` and in the detail. The answer itself never
takes much longer than one deadline.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from typing import Any, TypeVar

from aiokafka.errors import KafkaError
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from redis.exceptions import RedisError
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from ledgerflow.api.context import EdgeContext
from ledgerflow.api.hub import PROBE_CACHE_S
from ledgerflow.api.problems import problem
from ledgerflow.api.spec import INT, PUBLIC, STR, json_response, obj, operation, problems
from ledgerflow.errors import InfrastructureError
from ledgerflow.metrics import EDGE_REGISTRY, PROJECTION_LAG
from ledgerflow.redisclient import UNAVAILABLE
from ledgerflow.topics import CONVERSATION_EVENTS

T = TypeVar("T")

DEPENDENCY_DEADLINE_S = 2.0
"""Longest the edge waits for one Redis or Kafka call on a request path."""
READY_WITHIN_S = 5.0
"""A dependency fault shows in ``/readyz`` at most this long after it began (documented bound)."""
assert DEPENDENCY_DEADLINE_S + PROBE_CACHE_S <= READY_WITHIN_S
READY_RETRY_AFTER_S = 5


async def within_deadline(call: Awaitable[T], what: str, timeout: float = DEPENDENCY_DEADLINE_S) -> T:
    """Await a Redis or Kafka call for at most ``timeout`` seconds.

    Silence or a failure of the dependency becomes ``InfrastructureError`` naming
    ``what``, which the edge answers with 503 problem+json and ``Retry-After`` (never a
    500, never a hang).
    """
    try:
        async with asyncio.timeout(timeout):
            return await call
    except TimeoutError:
        raise InfrastructureError(f"{what}: no answer within {timeout:g} s") from None
    except (RedisError, *UNAVAILABLE, KafkaError, OSError) as exc:
        raise InfrastructureError(f"{what}: {type(exc).__name__}") from None


@operation(
    "getHealth",
    summary="The process answers",
    tags=["operations"],
    security=PUBLIC,
    responses={"200": json_response(obj(["status"], status={"const": "ok"}), "Alive")},
)
async def healthz(request: Request) -> JSONResponse:
    return JSONResponse({"status": "ok"})


@operation(
    "getReadiness",
    summary="Kafka, Redis and the SSE hub's reader are healthy",
    tags=["operations"],
    security=PUBLIC,
    responses={
        "200": json_response(
            obj(
                ["status", "checks"],
                status={"const": "ready"},
                checks={"type": "object", "additionalProperties": STR},
                sse_subscribers=INT,
                projection_lag={"type": ["integer", "null"]},
            ),
            "Ready",
        ),
        **problems(503),
    },
)
async def readyz(request: Request) -> Response:
    ctx: EdgeContext = request.app.state.ctx
    redis_state, kafka_state, lag = await asyncio.gather(
        redis_status(ctx), ctx.hub.kafka_status(), projection_lag(ctx)
    )
    checks: dict[str, str] = {"redis": redis_state, "kafka": kafka_state}
    if lag is not None and lag > ctx.tuning.ready_max_lag:
        checks["projection"] = f"{lag} records behind (more than {ctx.tuning.ready_max_lag})"
    if ctx.closing.is_set():
        checks["edge"] = "shutting down"
    if all(v == "ok" for v in checks.values()):
        return JSONResponse(
            {
                "status": "ready",
                "checks": checks,
                "sse_subscribers": ctx.hub.subscribers,
                "projection_lag": lag,
            }
        )
    failing = ", ".join(f"{k} {v}" for k, v in checks.items() if v != "ok")
    return problem(
        503,
        "Service Unavailable",
        f"not ready: {failing}",
        headers={"Retry-After": str(READY_RETRY_AFTER_S)},
        checks=checks,
    )


async def redis_status(ctx: EdgeContext) -> str:
    """``ok`` when Redis answered PING within the deadline, else why not."""
    try:
        await within_deadline(ctx.redis.ping(), "redis")
    except InfrastructureError as exc:
        return str(exc).removeprefix("redis: ")
    return "ok"


@operation(
    "getMetrics",
    summary="Prometheus metrics",
    tags=["operations"],
    security=PUBLIC,
    responses={
        "200": {
            "description": "Prometheus text exposition format",
            "content": {"text/plain": {"schema": STR}},
        }
    },
)
async def metrics(request: Request) -> Response:
    ctx: EdgeContext | None = getattr(request.app.state, "ctx", None)
    if ctx is not None:
        await projection_lag(ctx)  # refresh the gauge for this scrape
    return Response(generate_latest(EDGE_REGISTRY), media_type=CONTENT_TYPE_LATEST)


async def projection_lag(ctx: EdgeContext) -> int | None:
    """Records of ``conversation.events`` the read models have not applied yet (None: unknown).

    The hub's read position is the log end as this edge sees it; the projection's
    checkpoint says how far it applied. Also sets ``ledgerflow_projection_lag_records``.
    Bounded by one dependency deadline; None when Redis does not answer in time.
    """
    topic = ctx.settings.topic(CONVERSATION_EVENTS)
    count = ctx.hub.partitions.get(topic)
    if not count:
        return None

    async def applied_offsets() -> dict[Any, Any]:
        keys = await ctx.read_keys()
        return await ctx.redis.hgetall(keys.checkpoint("read-models"))

    try:
        applied = await within_deadline(applied_offsets(), "redis")
    except InfrastructureError:
        return None
    ends = ctx.hub.live_positions([("e", p) for p in range(count)])
    lag = 0
    for (_, p), last in ends.items():
        done = int(applied.get(f"{topic}:{p}".encode(), -1))
        lag += max(last - done, 0)
    PROJECTION_LAG.labels("read-models").set(lag)
    return lag
