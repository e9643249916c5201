"""``/healthz`` (the process answers), ``/readyz`` (Kafka and Redis answer), ``/metrics``.

``/readyz`` is truthful within ``READY_WITHIN_S``: every call asks Redis (a small write with a
TTL, then its ``maxmemory-policy``) and Kafka (a ListOffsets round trip through the hub's
consumer, shared by concurrent callers and cached for ``Hub.PROBE_CACHE_S``) with a deadline
of ``DEPENDENCY_DEADLINE_S`` each, in parallel. A paused or stopped broker, a topic deleted
under the edge, a Redis that is down, silent, refuses writes (OOM, READONLY, MISCONF, BUSY) or
evicts keys turns it 503 naming ``kafka`` / ``redis`` in ``checks`` and in the detail. The
answer itself never takes much longer than one deadline.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from typing import Any, TypeVar

from aiokafka.errors import KafkaError
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from redis.exceptions import RedisError, ResponseError
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from ledgerflow import redispolicy
from ledgerflow.api.context import EdgeContext
from ledgerflow.api.hub import PROBE_CACHE_S
from ledgerflow.api.problems import problem
from ledgerflow.api.spec import INT, PUBLIC, STR, json_response, obj, operation, problems
from ledgerflow.errors import InfrastructureError
from ledgerflow.metrics import EDGE_REGISTRY, PROJECTION_LAG
from ledgerflow.redisclient import REFUSING, UNAVAILABLE, error_code, is_cluster_client
from ledgerflow.topics import CONVERSATION_EVENTS

T = TypeVar("T")

DEPENDENCY_DEADLINE_S = 2.0
"""Longest the edge waits for one Redis or Kafka call on a request path."""
READY_WITHIN_S = 5.0
"""A dependency fault shows in ``/readyz`` at most this long after it began (documented bound)."""
assert DEPENDENCY_DEADLINE_S + PROBE_CACHE_S <= READY_WITHIN_S
READY_RETRY_AFTER_S = 5
ERROR_REPLIES: tuple[type[Exception], ...] = (ResponseError, *REFUSING)
"""A Redis that answered with an error reply (OOM, READONLY, MISCONF, BUSY, LOADING, …)."""


async def within_deadline(
    call: Awaitable[T], what: str, timeout: float = DEPENDENCY_DEADLINE_S, *, raise_refusals: bool = False
) -> T:
    """Await a Redis or Kafka call for at most ``timeout`` seconds.

    Silence or a failure of the dependency becomes ``InfrastructureError`` naming
    ``what``, which the edge answers with 503 problem+json and ``Retry-After`` (never a
    500, never a hang). ``raise_refusals``: a Redis error reply (``ResponseError``: OOM,
    READONLY, …) is raised as it is, for a caller that reports its code.
    """
    try:
        async with asyncio.timeout(timeout):
            return await call
    except TimeoutError:
        raise InfrastructureError(f"{what}: no answer within {timeout:g} s") from None
    except (RedisError, *UNAVAILABLE, KafkaError, OSError) as exc:
        if raise_refusals and isinstance(exc, ERROR_REPLIES):
            raise
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


READINESS_KEY_TTL_MS = 5000
"""How long the readiness probe's key lives: a few probes' worth, never an accumulation."""


def readiness_key(topic_prefix: str) -> str:
    """The key ``/readyz`` writes to prove Redis takes writes (one per topic prefix, short-lived)."""
    return f"lf:{topic_prefix}edge:readyz"


def refusal_reason(exc: Exception) -> str:
    """``refuses writes: OOM`` for an error reply: its code, the reply's first word (OOM, READONLY,
    MISCONF, BUSY, LOADING, NOPERM, …; ``redisclient.error_code``)."""
    return f"refuses writes: {error_code(exc) or type(exc).__name__}"


async def redis_status(ctx: EdgeContext) -> str:
    """``ok`` when Redis took a small write (``SET`` with a TTL on ``readiness_key``) and does not
    evict keys, all within the deadline; else why not. A Redis that answers PING but refuses writes
    (OOM at ``maxmemory``, READONLY after a demotion, MISCONF after a failed snapshot, BUSY in a
    script) is not ready: every POST would answer 503. A ``maxmemory-policy`` changed to an
    evicting one at run time is named too (``redispolicy``); one that cannot be read is not."""

    async def probe() -> str:
        await ctx.redis.set(readiness_key(ctx.settings.topic_prefix), b"1", px=READINESS_KEY_TTL_MS)
        return redispolicy.readiness_reason(await _policies(ctx.redis)) or "ok"

    try:
        return await within_deadline(probe(), "redis", raise_refusals=True)
    except InfrastructureError as exc:
        return str(exc).removeprefix("redis: ")
    except ERROR_REPLIES as exc:
        return refusal_reason(exc)


async def _policies(redis: Any) -> list[redispolicy.PolicyReading]:
    """Every node's ``maxmemory-policy`` (one node unless ``redis`` is a cluster client)."""
    if not is_cluster_client(redis):
        return [await redispolicy.read_async(redis, "redis")]
    await redis.initialize()  # a no-op once the client has its slot map (the probe's write made it)
    nodes = redis.get_nodes()
    readings = await asyncio.gather(
        *(redispolicy.read_async(redis, node.name, target_nodes=node) for node in nodes),
        return_exceptions=True,
    )
    # A node out of reach (a replica down) is unknown, not a reason for every edge to leave the pool.
    return redispolicy.answered(readings, [node.name for node in nodes])


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
