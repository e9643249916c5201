"""``GET /v1/usage?limit=``: the models seen in the tenant's traffic and its token usage windows.

From the usage read model (``Keys.usage`` and ``Keys.usage_turns``: one field per model,
window and source partition; see docs/usage.md), summed over source partitions. Redis
calls are bounded: a dead Redis is a 503 with ``Retry-After``.

The read model keeps every window for ever (a field per minute per model and source partition),
so the answer holds the newest ``limit`` windows (``DEFAULT_LIMIT``, at most ``MAX_LIMIT``) with
``window_count``, the number of all, and each model's ``totals`` over all of them. The edge
still reads the whole hash per request; only what it answers is bounded.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Mapping
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse

from ledgerflow.api.context import EdgeContext
from ledgerflow.api.health import within_deadline
from ledgerflow.api.paging import parse_limit, rfc3339
from ledgerflow.api.spec import INT, NUM, STR, TIME, limit_query, obj
from ledgerflow.api.tenant_reads import reader_of, tenant_read
from ledgerflow.models import ModelSettings
from ledgerflow.projections.usage_fields import UsageField, usage_totals
from ledgerflow.redisvalues import Reply
from ledgerflow.usage.cost import cost_range

log = logging.getLogger(__name__)

DEFAULT_LIMIT = 1000
MAX_LIMIT = 10_000


def windows(
    tokens: Mapping[Reply, Reply],
    turns: Mapping[Reply, Reply],
    prices: Mapping[str, ModelSettings] | None = None,
    limit: int | None = None,
) -> dict[str, Any]:
    """Models (sorted), each model's totals, and the newest ``limit`` windows (all when None; by
    start, then model), totals summed over source partitions; each window's cost when the model
    registry knows its prices (``usage/cost.py``), else null; ``window_count`` counts them all."""
    prices = prices or {}
    totals: dict[tuple[int, str, int], list[int]] = defaultdict(lambda: [0, 0])
    for column, source in ((0, tokens), (1, turns)):
        for field, value in readable_totals(source):
            totals[(field.window_start, field.model, field.window_end)][column] += value
    per_model: dict[str, list[int]] = defaultdict(lambda: [0, 0, 0])
    for (_, model, _), (window_tokens, window_turns) in totals.items():
        per_model[model][0] += 1
        per_model[model][1] += window_tokens
        per_model[model][2] += window_turns
    ordered = sorted(totals)
    newest = ordered if limit is None else ordered[max(0, len(ordered) - limit) :]
    return {
        "models": sorted(per_model),
        "totals": [
            {"model": model, "windows": n, "tokens": sum_tokens, "turns": sum_turns}
            for model, (n, sum_tokens, sum_turns) in sorted(per_model.items())
        ],
        "window_count": len(ordered),
        "windows": [
            {
                "model": model,
                "window_start": rfc3339(start),
                "window_end": rfc3339(end),
                "tokens": totals[(start, model, end)][0],
                "turns": totals[(start, model, end)][1],
                "cost": _cost(totals[(start, model, end)][0], prices.get(model)),
            }
            for start, model, end in newest
        ],
    }


_warned = False


def readable_totals(reply: Mapping[Reply, Reply]) -> list[tuple[UsageField, int]]:
    """The (field, count) pairs of a usage hash (``projections/usage_fields.py``); a field no
    reader can take apart (a record written to Kafka directly) is skipped, never a 500, and
    logged once per process with the count skipped."""
    global _warned
    totals, skipped = usage_totals(reply)
    if skipped and not _warned:
        _warned = True
        log.warning(
            "usage read model: %d field(s) skipped that are not model|start|end|producer, e.g. %r "
            "(logged once per process)",
            len(skipped),
            skipped[0][:200],
        )
    return totals


def _cost(tokens: float, settings: ModelSettings | None) -> dict[str, float] | None:
    if settings is None:
        return None
    cost = cost_range(tokens, settings.input_price_per_1k, settings.output_price_per_1k)
    return None if cost is None else cost.to_json()


COST = {
    "oneOf": [{"type": "null"}, obj(["low", "high"], low=NUM, high=NUM)],
    "description": "Cost at the model's registered prices: every token at the lower to every token at "
    "the higher of its input/output price (windows do not split input from output); null when unknown",
}


@tenant_read(
    "getUsage",
    "Models seen in the tenant's traffic and its token usage windows (any role of the tenant)",
    "usage",
    obj(
        ["models", "totals", "window_count", "windows"],
        models={"type": "array", "items": STR},
        totals={
            "type": "array",
            "description": "Each model's windows, tokens and turns over all its windows",
            "items": obj(
                ["model", "windows", "tokens", "turns"], model=STR, windows=INT, tokens=INT, turns=INT
            ),
        },
        window_count={
            "type": "integer",
            "description": "All the tenant's windows; `windows` holds the newest",
        },
        windows={
            "type": "array",
            "items": obj(
                ["model", "window_start", "window_end", "tokens", "turns"],
                model=STR,
                window_start=TIME,
                window_end=TIME,
                tokens=INT,
                turns=INT,
                cost=COST,
            ),
        },
    ),
    "Usage",
    parameters=(limit_query(MAX_LIMIT, DEFAULT_LIMIT, "The newest windows answered"),),
)
async def usage(request: Request) -> JSONResponse:
    principal = reader_of(request)
    limit = parse_limit(request.query_params.get("limit"), default=DEFAULT_LIMIT, maximum=MAX_LIMIT)
    ctx: EdgeContext = request.app.state.ctx
    keys = await within_deadline(ctx.read_keys(), "redis")
    pipe = ctx.redis.pipeline(transaction=False)
    pipe.hgetall(keys.usage(principal.tenant))
    pipe.hgetall(keys.usage_turns(principal.tenant))
    tokens, turns = await within_deadline(pipe.execute(), "redis")
    prices = ctx.reference.registry_for(principal.tenant).models
    return JSONResponse(windows(tokens, turns, prices, limit))
