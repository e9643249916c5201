"""``/healthz`` (the process answers), ``/readyz`` (Kafka and Redis answer), ``/metrics``."""

from __future__ import annotations

import asyncio

from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from ledgerflow.api.context import EdgeContext
from ledgerflow.api.problems import problem


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
    if ctx.closing.is_set():
        checks["edge"] = "shutting down"
    if all(v == "ok" for v in checks.values()):
        return JSONResponse({"status": "ready", "checks": checks, "sse_subscribers": ctx.hub.subscribers})
    return problem(
        503,
        "Service Unavailable",
        "not ready: " + ", ".join(f"{k} {v}" for k, v in checks.items()),
        headers={"Retry-After": "5"},
        checks=checks,
    )


async def metrics(request: Request) -> Response:
    return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)
