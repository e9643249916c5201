"""``GET /v1/forecast?model=&horizon=``: the next windows' expected tokens for the token's
tenant, from the usage read model, by Holt's linear trend (``ledgerflow.usage.forecast``), and
their cost when the model registry knows the model's prices (``ledgerflow.usage.cost``)."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping

from starlette.requests import Request
from starlette.responses import JSONResponse

from ledgerflow.api.authentication import require_query_tenant, requires_any_role
from ledgerflow.api.context import EdgeContext
from ledgerflow.api.health import within_deadline
from ledgerflow.api.paging import parse_limit
from ledgerflow.api.spec import AUTHED, TENANT_PARAM, json_response, operation, problems, query, ref
from ledgerflow.api.usage import readable_totals
from ledgerflow.errors import ValidationError
from ledgerflow.redisvalues import Reply
from ledgerflow.timefmt import rfc3339
from ledgerflow.usage.cost import cost_range
from ledgerflow.usage.forecast import forecast as holt_forecast

MAX_HORIZON = 60
DEFAULT_HORIZON = 5
DEFAULT_HISTORY = 1000
MAX_HISTORY = 10_000
"""History windows answered (the newest): the read model keeps every window for ever; the fit
takes them all."""


def series_of(fields: Mapping[Reply, Reply], model: str) -> tuple[list[int], list[float]]:
    """Window starts and token totals (summed over source partitions), in time order."""
    totals: dict[int, float] = defaultdict(float)
    for field, value in readable_totals(fields):
        if field.model == model:
            totals[field.window_start] += value
    starts = sorted(totals)
    return starts, [totals[s] for s in starts]


def parse_horizon(raw: str | None) -> int:
    """``horizon``: ASCII digits in ``1..MAX_HORIZON`` (``DEFAULT_HORIZON`` when absent), as
    every ``limit`` is read (``paging.parse_limit``): '٣', '1_0' or ' 3' are a 422, not 3 or 10."""
    return parse_limit(raw, default=DEFAULT_HORIZON, maximum=MAX_HORIZON, name="horizon")


@operation(
    "getForecast",
    summary="Expected token usage for the next windows (Holt's linear trend)",
    tags=["usage"],
    parameters=[
        query("model", {"type": "string", "minLength": 1}, "The model", required=True),
        query(
            "horizon",
            {"type": "integer", "minimum": 1, "maximum": MAX_HORIZON},
            f"Windows ahead (default {DEFAULT_HORIZON})",
        ),
        query(
            "history",
            {"type": "integer", "minimum": 1, "maximum": MAX_HISTORY},
            f"The newest history windows answered (default {DEFAULT_HISTORY}); the fit takes every window",
        ),
        TENANT_PARAM,
    ],
    responses={"200": json_response(ref("Forecast"), "The forecast"), **problems(*AUTHED, 422)},
)
async def forecast(request: Request) -> JSONResponse:
    principal = requires_any_role(request, "subscriber", "admin", "auditor")
    require_query_tenant(request, principal)
    ctx: EdgeContext = request.app.state.ctx
    model = request.query_params.get("model", "")
    if not model:
        raise ValidationError("model: query parameter required (e.g. ?model=slm-1)")
    horizon = parse_horizon(request.query_params.get("horizon"))
    shown = parse_limit(
        request.query_params.get("history"), default=DEFAULT_HISTORY, maximum=MAX_HISTORY, name="history"
    )
    keys = await within_deadline(ctx.read_keys(), "redis")
    fields = await within_deadline(ctx.redis.hgetall(keys.usage(principal.tenant)), "redis")
    starts, series = series_of(fields, model)
    points = holt_forecast(series, horizon)  # ValidationError (422) with fewer than 3 windows
    step = (starts[-1] - starts[-2]) if len(starts) >= 2 else 0
    settings = ctx.reference.registry_for(principal.tenant).models.get(model)
    prices = (None, None) if settings is None else (settings.input_price_per_1k, settings.output_price_per_1k)

    def cost(tokens: float) -> dict[str, float] | None:
        found = cost_range(max(tokens, 0.0), *prices)
        return None if found is None else found.to_json()

    return JSONResponse(
        {
            "tenant": principal.tenant,
            "model": model,
            "method": "holt-linear-trend",
            "prices": None
            if prices == (None, None)
            else {"input_per_1k": prices[0], "output_per_1k": prices[1]},
            "history_count": len(starts),
            "history": [
                {"window_start": rfc3339(s), "tokens": v, "cost": cost(v)}
                for s, v in zip(starts[-shown:], series[-shown:], strict=True)
            ],
            "forecast": [
                {
                    "window_start": rfc3339(starts[-1] + step * p.step),
                    "expected": p.expected,
                    "lower": p.lower,
                    "upper": p.upper,
                    "cost": cost(p.expected),
                }
                for p in points
            ],
        }
    )
