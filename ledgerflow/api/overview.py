"""``GET /v1/overview``: health, the tenant's counters, consumer lag and projection lag, in one poll.

Sources: ``/readyz``'s checks (Redis PING, the hub's Kafka probe); the tenant's read-model
hash (turns and decisions by outcome, ``projections/conversations.py``); the dead-letter
topics' record counts (all tenants: a poison record may have no readable tenant); the
worker group's committed offsets against the logs' end offsets (Kafka admin); the
projection lag of ``/readyz``. The console computes rates from successive polls.
Every call is bounded: Redis or Kafka failing is a 503 with ``Retry-After``.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterable, Mapping
from dataclasses import asdict
from typing import Any

from aiokafka import TopicPartition
from starlette.requests import Request
from starlette.responses import JSONResponse

from ledgerflow.api.authentication import requires_tenant_role
from ledgerflow.api.context import EdgeContext
from ledgerflow.api.health import projection_lag, redis_status, within_deadline
from ledgerflow.api.paging import rfc3339
from ledgerflow.api.spec import AUTHED, INT, STR, TIME, json_response, nullable, obj, operation, problems
from ledgerflow.consumer_lag import Lag, lag_rows
from ledgerflow.errors import InfrastructureError
from ledgerflow.redisvalues import Reply, int_map
from ledgerflow.topics import DLQ_TOPICS, WORKER_GROUP

OUTCOMES = ("allow", "redact", "review", "deny")
KAFKA_DEADLINE_S = 5.0


def counters(tenant_hash: Mapping[Reply, Reply], dead_letters: int) -> dict[str, Any]:
    """The tenant's counters from its read-model hash (absent counters are 0)."""
    values = int_map(tenant_hash)
    return {
        "turns": values.get("turns", 0),
        "decisions": {o: values.get(f"decisions_{o}", 0) for o in OUTCOMES},
        "dead_letters": dead_letters,
    }


def worker_state(groups: Iterable[Any]) -> str:
    """``ok`` when the worker group is ``Stable`` with members, else ``unknown``
    (``groups``: aiokafka's raw DescribeGroups answers)."""
    for response in groups:
        for described in getattr(response, "groups", ()):
            state, members = described[2], described[5]
            if state == "Stable" and members:
                return "ok"
    return "unknown"


async def _group_view(ctx: EdgeContext, group: str) -> tuple[str, dict[TopicPartition, int]]:
    if ctx.admin is None:
        raise InfrastructureError("the edge has no Kafka admin client")
    async with ctx.admin.client() as admin:
        described = await admin.describe_consumer_groups([group])
        offsets = await admin.list_consumer_group_offsets(group)
    prefix = ctx.settings.topic_prefix
    committed = {tp: m.offset for tp, m in offsets.items() if m.offset >= 0 and tp.topic.startswith(prefix)}
    return worker_state(described), committed


async def _kafka_part(ctx: EdgeContext) -> tuple[str, list[Lag], int]:
    """Worker state, lag rows and the dead-letter count (one bounded Kafka conversation)."""
    if ctx.offsets is None:
        raise InfrastructureError("the edge has no offsets consumer")
    group = ctx.settings.topic_prefix + WORKER_GROUP
    worker, committed = await _group_view(ctx, group)
    dlq = [TopicPartition(ctx.settings.topic(t.base), 0) for t in DLQ_TOPICS]
    ends = await ctx.offsets.end_offsets([*committed, *dlq])
    starts = await ctx.offsets.beginning_offsets(dlq)
    dead = sum(ends[tp] - starts[tp] for tp in dlq)
    return worker, lag_rows(group, committed, ends), dead


async def _health(ctx: EdgeContext) -> tuple[str, str]:
    return await ctx.hub.kafka_status(), await redis_status(ctx)


async def _tenant_hash(ctx: EdgeContext, tenant: str) -> dict[Reply, Reply]:
    keys = await ctx.read_keys()
    return await ctx.redis.hgetall(keys.tenant(tenant))


@operation(
    "getOverview",
    summary="Health, the tenant's counters, consumer lag and projection lag (any role of the tenant)",
    tags=["operations"],
    responses={
        "200": json_response(
            obj(
                ["health", "counters", "lag", "projection_lag", "at"],
                health=obj(["kafka", "redis", "worker"], kafka=STR, redis=STR, worker=STR),
                counters=obj(
                    ["turns", "decisions", "dead_letters"],
                    turns=INT,
                    decisions=obj(list(OUTCOMES), **{o: INT for o in OUTCOMES}),
                    dead_letters=INT,
                ),
                lag={
                    "type": "array",
                    "items": obj(
                        ["group", "topic", "partition", "committed", "end", "lag"],
                        group=STR,
                        topic=STR,
                        partition=INT,
                        committed=INT,
                        end=INT,
                        lag=INT,
                    ),
                },
                projection_lag=nullable("integer"),
                at=TIME,
            ),
            "The overview",
        ),
        **problems(*AUTHED),
    },
)
async def overview(request: Request) -> JSONResponse:
    principal = requires_tenant_role(request)
    ctx: EdgeContext = request.app.state.ctx
    at = time.time_ns() // 1000
    # Concurrently, so a silent dependency costs one deadline, not one per call:
    # health (each check reports, none raises); the tenant's counters (Redis) and the Kafka
    # side (each bounded; a fault is a 503).
    (kafka, redis), tenant_hash, (worker, lag, dead) = await asyncio.gather(
        _health(ctx),
        within_deadline(_tenant_hash(ctx, principal.tenant), "redis"),
        within_deadline(_kafka_part(ctx), "kafka", KAFKA_DEADLINE_S),
    )
    return JSONResponse(
        {
            "health": {"kafka": kafka, "redis": redis, "worker": worker},
            "counters": counters(tenant_hash, dead),
            "lag": [asdict(row) for row in lag],
            "projection_lag": await projection_lag(ctx),
            "at": rfc3339(at),
        }
    )
