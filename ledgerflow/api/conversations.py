"""``GET /v1/conversations/{id}``: the conversation read model, from Redis, one page of turns.

A conversation's turns are a list that only grows (``projections/conversations.py`` appends
one per turn, never trims), so the answer holds one page of it: the newest ``turns_limit``
turns before position ``turns_before`` (default: the newest), oldest first, each with its
decision (``HMGET`` of the page's event ids, not the whole decisions hash). A page also stops
at ``MAX_PAGE_BYTES`` of stored turns (keeping at least one), so a conversation of large turns
is never read whole into the edge's memory. ``turns_next`` is where the page of older turns
ends: pass it back as ``turns_before``; null when the page starts at the first turn. Positions
count from 0, the first turn; the list only grows, so a position names the same turn on every
read.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass

from redis.asyncio import Redis
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse

from ledgerflow.api.authentication import require_query_tenant, requires_any_role
from ledgerflow.api.consistency import check_token
from ledgerflow.api.context import EdgeContext
from ledgerflow.api.health import within_deadline
from ledgerflow.api.paging import parse_limit, parse_position
from ledgerflow.api.spec import (
    AUTHED,
    STR,
    TENANT_PARAM,
    json_response,
    operation,
    problems,
    query,
    ref,
)
from ledgerflow.contracts.ids import ID_CHARACTERS, MAX_ID_LENGTH, is_id
from ledgerflow.errors import InfrastructureError
from ledgerflow.projections.keys import Keys
from ledgerflow.projections.views import conversation_view, decisions_by_event, parse_turns
from ledgerflow.redisvalues import Reply
from ledgerflow.topics import CONVERSATION_EVENTS

DEFAULT_TURNS_LIMIT = 200
MAX_TURNS_LIMIT = 1000
MAX_PAGE_BYTES = 8 * 1024 * 1024
"""Stored turns one answer holds at most (always at least one turn): 8 MiB."""
FETCH_CHUNK = 200
"""Turns read per ``LRANGE``: the page is read newest first in chunks until it is full."""


@dataclass(frozen=True, slots=True)
class TurnPage:
    """Positions ``start`` … ``start + len(turns) - 1`` of a conversation's turn list."""

    start: int
    turns: list[Reply]

    @property
    def next(self) -> int | None:
        """``turns_before`` of the page of older turns; None when this page starts at the first."""
        return self.start if self.start > 0 else None


def turn_range(length: int, before: int | None, limit: int) -> tuple[int, int]:
    """The positions ``[start, end)`` of the page: the ``limit`` turns before ``before`` (the
    list's end when None or past it)."""
    end = length if before is None else min(before, length)
    return max(0, end - limit), end


def newest_that_fit(sizes: Sequence[int], room: int, at_least_one: bool) -> int:
    """How many of the last ``sizes`` (bytes, oldest first) fit in ``room`` bytes, taken newest
    first; one even if it does not fit when ``at_least_one``."""
    taken = 0
    for size in reversed(sizes):
        if size > room and not (at_least_one and taken == 0):
            break
        room -= size
        taken += 1
    return taken


async def read_page(redis: Redis, key: str, start: int, end: int, budget: int = MAX_PAGE_BYTES) -> TurnPage:
    """The newest turns of positions ``[start, end)`` that fit ``budget`` bytes (at least one),
    read newest first in chunks of ``FETCH_CHUNK``: never more than a chunk past the budget."""
    page: list[Reply] = []
    room, first = budget, end
    while first > start:
        low = max(start, first - FETCH_CHUNK)
        chunk: list[Reply] = await within_deadline(redis.lrange(key, low, first - 1), "redis")
        if len(chunk) != first - low:  # the list cannot shrink; a vanished key (a switched generation) can
            break
        sizes = [len(entry) for entry in chunk]
        taken = newest_that_fit(sizes, room, at_least_one=not page)
        if taken:
            page[:0] = chunk[len(chunk) - taken :]
            room -= sum(sizes[len(sizes) - taken :])
            first -= taken
        if taken < len(chunk):
            break
    return TurnPage(first, page)


@operation(
    "getConversation",
    summary="A conversation's read model with one page of its turns (role subscriber, auditor or admin)",
    tags=["conversations"],
    description="`turns` is one page, oldest first: the newest `turns_limit` turns before position "
    "`turns_before` (positions count from 0, the first turn; default: the newest turns), fewer when "
    f"they are large (a page holds at most {MAX_PAGE_BYTES // (1024 * 1024)} MiB of turns, at least "
    "one turn). `turns_start` is the position of the page's first turn; `turns_next` is the "
    "`turns_before` of the page of older turns, null when the page starts at the first turn. "
    "`turn_count` counts every turn.",
    parameters=[
        {"name": "conversation_id", "in": "path", "required": True, "schema": STR},
        query(
            "turns_limit",
            {"type": "integer", "minimum": 1, "maximum": MAX_TURNS_LIMIT},
            f"Turns in the page, at most (default {DEFAULT_TURNS_LIMIT})",
        ),
        query(
            "turns_before",
            {"type": "integer", "minimum": 0},
            "The page ends before this position: the `turns_next` of the previous page (default: "
            "after the newest turn)",
        ),
        TENANT_PARAM,
    ],
    responses={
        "200": json_response(ref("Conversation"), "The read model"),
        **problems(*AUTHED, 404, 422),
    },
)
async def get_conversation(request: Request) -> JSONResponse:
    """The read model; 404 for an id no conversation can have; 503 + Retry-After when Redis fails.

    Every Redis call has ``DEPENDENCY_DEADLINE_S``: a silent or absent Redis is a 503
    within a few seconds, never a 500 or a hang.
    """
    principal = requires_any_role(request, "subscriber", "auditor", "admin")
    require_query_tenant(request, principal)
    ctx: EdgeContext = request.app.state.ctx
    conv_id = request.path_params["conversation_id"]
    if not is_id(conv_id):
        # Nothing outside the id grammar can be written, so nothing outside it exists.
        raise HTTPException(
            404,
            f"no such conversation: {_quoted(conv_id)} is not an id "
            f"(ids are 1-{MAX_ID_LENGTH} {ID_CHARACTERS})",
        )
    params = request.query_params
    limit = parse_limit(
        params.get("turns_limit"), default=DEFAULT_TURNS_LIMIT, maximum=MAX_TURNS_LIMIT, name="turns_limit"
    )
    before = parse_position(params.get("turns_before"), name="turns_before")
    keys = await within_deadline(ctx.read_keys(), "redis")
    token = params.get("consistency_token")
    if token:
        await wait_applied(ctx, keys, token)
    turns_key = keys.conversation_turns(principal.tenant, conv_id)
    pipe = ctx.redis.pipeline(transaction=False)
    pipe.hgetall(keys.conversation(principal.tenant, conv_id))
    pipe.llen(turns_key)
    fields, length = await within_deadline(pipe.execute(), "redis")
    if not fields:
        # Another tenant's conversation is indistinguishable from a missing one.
        raise HTTPException(404, f"conversation {conv_id!r} not found for tenant {principal.tenant!r}")
    page = await read_page(ctx.redis, turns_key, *turn_range(int(length), before, limit))
    turns = parse_turns(page.turns)
    event_ids = [turn["event_id"] for turn in turns]
    decisions = (
        await within_deadline(
            ctx.redis.hmget(keys.conversation_decisions(principal.tenant, conv_id), event_ids), "redis"
        )
        if event_ids
        else []
    )
    view = conversation_view(fields, turns, decisions_by_event(event_ids, decisions))
    return JSONResponse(view | {"turns_start": page.start, "turns_next": page.next})


def _quoted(value: str) -> str:
    text = repr(value)
    return text if len(text) <= 42 else text[:39] + "..."


CONSISTENCY_WAIT_S = 2.0


async def wait_applied(ctx: EdgeContext, keys: Keys, token: str) -> None:
    """Read-your-writes: wait (bounded) until the projection applied ``partition:offset``.

    The token comes from ``POST /v1/events`` or ``POST /v1/conversation/step``. If the
    projection is still behind after the bound, answer 503 with Retry-After rather than
    a stale read.
    """
    position = await check_token(ctx, token)  # made-up tokens: 422 at once, no wait
    partition, offset = position.partition, position.offset
    field = f"{ctx.settings.topic(CONVERSATION_EVENTS)}:{partition}"
    deadline = asyncio.get_running_loop().time() + CONSISTENCY_WAIT_S
    while True:
        applied = await within_deadline(ctx.redis.hget(keys.checkpoint("read-models"), field), "redis")
        if applied is not None and int(applied) >= int(offset):
            return
        if asyncio.get_running_loop().time() > deadline:
            raise InfrastructureError(f"projection has not applied {token} within {CONSISTENCY_WAIT_S:g} s")
        await asyncio.sleep(0.05)
