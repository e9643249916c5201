"""``GET /v1/conversations?limit=&cursor=``: the tenant's conversations, newest activity first.

Reads the tenant's conversation index (``Keys.tenant_conversations``: a sorted set scored by
the time of each conversation's last event), then each listed conversation's hash and the
size of its decisions hash, in one pipelined round trip per page. Every Redis call is bounded
(``within_deadline``): a dead Redis is a 503 with ``Retry-After``.

A page after a cursor reads only its own entries (``ranked_after``): from the rank of the
cursor's conversation while it still has the cursor's score (one script: score, rank and range
together). Ties share a score, and anyone who writes Kafka sets the times of their events: read
by score, a page after a cursor read every conversation tied with it (100,000 of them, 100,000
entries per page). Only when the cursor's conversation moved on (new activity) or is gone does a
page read by score, ties and all.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, cast

import orjson
from redis.asyncio import Redis
from starlette.requests import Request
from starlette.responses import JSONResponse

from ledgerflow.api import spec
from ledgerflow.api.authentication import require_query_tenant, requires_tenant_role
from ledgerflow.api.context import EdgeContext
from ledgerflow.api.health import within_deadline
from ledgerflow.api.paging import Cursor, parse_limit, rfc3339
from ledgerflow.redisvalues import Reply, text

DEFAULT_LIMIT = 50
MAX_LIMIT = 200
OUTCOMES = ("allow", "redact", "review", "deny")


@dataclass(frozen=True, slots=True)
class Entry:
    """One conversation of the index with its activity score (µs)."""

    conversation_id: str
    last_activity: int


def page_after(ranked: Sequence[tuple[Reply, float]], after: Cursor | None, limit: int) -> list[Entry]:
    """Up to ``limit`` entries of ``ranked`` (newest first, as ZREVRANGEBYSCORE answers: ties by
    member descending) that come strictly after ``after``."""
    out: list[Entry] = []
    for member, score in ranked:
        entry = Entry(text(member), int(score))
        if after is not None and (entry.last_activity, entry.conversation_id) >= (after.score, after.member):
            continue
        out.append(entry)
        if len(out) == limit:
            break
    return out


_AFTER_RANK = """
local score = redis.call('ZSCORE', KEYS[1], ARGV[1])
if (not score) or tonumber(score) ~= tonumber(ARGV[2]) then return false end
local rank = redis.call('ZREVRANK', KEYS[1], ARGV[1])
return redis.call('ZREVRANGE', KEYS[1], rank + 1, rank + tonumber(ARGV[3]), 'WITHSCORES')
"""


def pairs(flat: Sequence[Reply]) -> list[tuple[Reply, float]]:
    """``[member, score, member, score, …]`` (a script's WITHSCORES reply) as (member, score) pairs."""
    return [(flat[i], float(flat[i + 1])) for i in range(0, len(flat) - 1, 2)]


async def ranked_after(
    redis: Redis, index: str, after: Cursor | None, count: int
) -> list[tuple[Reply, float]]:
    """Up to ``count`` entries of ``index`` after ``after`` (newest first; the first ones when None),
    reading ``count`` entries when the cursor's conversation still has its score, else every entry
    tied with the cursor's score too (``page_after`` then skips what is not after it)."""
    if after is None:
        return cast(
            list[tuple[Reply, float]],
            await within_deadline(
                redis.zrevrangebyscore(index, "+inf", "-inf", start=0, num=count, withscores=True), "redis"
            ),
        )
    flat = await within_deadline(redis.eval(_AFTER_RANK, 1, index, after.member, after.score, count), "redis")
    if flat is not None:
        return pairs(cast(list[Reply], flat))
    ties = await within_deadline(redis.zcount(index, after.score, after.score), "redis")
    return cast(
        list[tuple[Reply, float]],
        await within_deadline(
            redis.zrevrangebyscore(index, after.score, "-inf", start=0, num=ties + count, withscores=True),
            "redis",
        ),
    )


def item(entry: Entry, fields: Mapping[Reply, Reply], decisions: int) -> dict[str, Any]:
    """The list item of one conversation from its read-model hash."""
    view = {text(k): text(v) for k, v in fields.items()}
    outcome = None
    if "last_decision" in view:
        found = orjson.loads(view["last_decision"]).get("outcome")
        outcome = found if found in OUTCOMES else None
    return {
        "conversation_id": entry.conversation_id,
        "last_activity": rfc3339(entry.last_activity),
        "turns": int(view.get("turns", 0)),
        "decisions": decisions,
        "last_outcome": outcome,
    }


ITEM = spec.obj(
    ["conversation_id", "last_activity", "turns", "decisions", "last_outcome"],
    conversation_id=spec.STR,
    last_activity=spec.TIME,
    turns=spec.INT,
    decisions=spec.INT,
    last_outcome={"enum": [*OUTCOMES, None]},
)


@spec.operation(
    "listConversations",
    summary="The tenant's conversations, newest activity first (any role of the tenant)",
    tags=["conversations"],
    parameters=[
        spec.limit_query(MAX_LIMIT, DEFAULT_LIMIT, "Page size"),
        spec.query("cursor", spec.STR, "The `next` of the previous page"),
        spec.TENANT_PARAM,
    ],
    responses={
        "200": spec.json_response(
            spec.obj(["items", "next"], items={"type": "array", "items": ITEM}, next=spec.nullable("string")),
            "A page; `next` is null on the last page",
        ),
        **spec.problems(*spec.AUTHED, 422),
    },
)
async def list_conversations(request: Request) -> JSONResponse:
    principal = requires_tenant_role(request)
    require_query_tenant(request, principal)
    limit = parse_limit(request.query_params.get("limit"), default=DEFAULT_LIMIT, maximum=MAX_LIMIT)
    raw_cursor = request.query_params.get("cursor")
    after = Cursor.decode(raw_cursor) if raw_cursor is not None else None
    ctx: EdgeContext = request.app.state.ctx
    keys = await within_deadline(ctx.read_keys(), "redis")
    index = keys.tenant_conversations(principal.tenant)
    # Step 1. The page (one more entry: is there a next page?).
    ranked = await ranked_after(ctx.redis, index, after, limit + 1)
    entries = page_after(ranked, after, limit + 1)
    more, entries = len(entries) > limit, entries[:limit]
    # Step 2. Each conversation's hash and decision count, one round trip.
    pipe = ctx.redis.pipeline(transaction=False)
    for entry in entries:
        pipe.hgetall(keys.conversation(principal.tenant, entry.conversation_id))
        pipe.hlen(keys.conversation_decisions(principal.tenant, entry.conversation_id))
    replies = await within_deadline(pipe.execute(), "redis") if entries else []
    items = [item(e, replies[2 * i], int(replies[2 * i + 1])) for i, e in enumerate(entries)]
    nxt = Cursor(entries[-1].last_activity, entries[-1].conversation_id).encode() if more else None
    return JSONResponse({"items": items, "next": nxt})
