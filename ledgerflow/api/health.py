"""``/healthz`` (the process answers), ``/readyz`` (Kafka and Redis answer), ``/metrics``."""

from __future__ import annotations

import asyncio
import os

from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from ledgerflow.api.context import EdgeContext
from ledgerflow.api.problems import problem
from ledgerflow.metrics import PROJECTION_LAG
from ledgerflow.topics import CONVERSATION_EVENTS


async def healthz(request: Request) -> JSONResponse:
    return JSONResponse({"status": "ok"})


async def readyz(request: Request) -> Response:
    ctx: EdgeContext = request.app.state.ctx
    checks: dict[str, str] = {}
    try:
        await asyncio.wait_for(ctx.redis.ping(), timeout=2.0)
        checks["redis"] = "ok"
    except Exception as exc:
        checks["redis"] = f"unreachable: {type(exc).__name__}"
    checks["kafka"] = "ok" if ctx.hub.healthy else "reader failing"
    lag = await projection_lag(ctx)
    if lag is not None and lag > MAX_READY_LAG:
        checks["projection"] = f"{lag} records behind (more than {MAX_READY_LAG})"
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
    return problem(
        503,
        "Service Unavailable",
        "not ready: " + ", ".join(f"{k} {v}" for k, v in checks.items()),
        headers={"Retry-After": "5"},
        checks=checks,
    )


async def metrics(request: Request) -> Response:
    ctx: EdgeContext | None = getattr(request.app.state, "ctx", None)
    if ctx is not None:
        await projection_lag(ctx)  # refresh the gauge for this scrape
    return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)


MAX_READY_LAG = int(os.environ.get("LEDGERFLOW_READY_MAX_LAG", "100000"))


async def projection_lag(ctx: EdgeContext) -> int | None:
    """Records of ``conversation.events`` the read models have not applied yet (None: unknown).

    The hub's read position is the log end as this edge sees it; the projection's
    checkpoint says how far it applied. Also sets ``ledgerflow_projection_lag_records``.
    """
    topic = ctx.settings.topic(CONVERSATION_EVENTS)
    count = ctx.hub.partitions.get(topic)
    if not count:
        return None
    try:
        keys = await ctx.read_keys()
        applied = await asyncio.wait_for(ctx.redis.hgetall(keys.checkpoint("read-models")), timeout=2.0)
    except Exception:
        return None
    ends = ctx.hub.live_positions([("e", p) for p in range(count)])
    lag = 0
    for (_, p), last in ends.items():
        done = int(applied.get(f"{topic}:{p}".encode(), -1))
        lag += max(last - done, 0)
    PROJECTION_LAG.labels("read-models").set(lag)
    return lag
