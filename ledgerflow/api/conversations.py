"""``GET /v1/conversations/{id}``: the conversation read model, from Redis."""

from __future__ import annotations

import asyncio

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse

from ledgerflow.api.authentication import requires_any_role
from ledgerflow.api.consistency import check_token
from ledgerflow.api.context import EdgeContext
from ledgerflow.api.health import within_deadline
from ledgerflow.api.spec import AUTHED, STR, TENANT_PARAM, json_response, operation, problems, ref
from ledgerflow.contracts.ids import ID_CHARACTERS, MAX_ID_LENGTH, is_id
from ledgerflow.errors import InfrastructureError
from ledgerflow.projections.keys import Keys
from ledgerflow.projections.views import conversation_view
from ledgerflow.topics import CONVERSATION_EVENTS


@operation(
    "getConversation",
    summary="A conversation's read model (role subscriber, auditor or admin)",
    tags=["conversations"],
    parameters=[
        {"name": "conversation_id", "in": "path", "required": True, "schema": STR},
        TENANT_PARAM,
    ],
    responses={
        "200": json_response(ref("Conversation"), "The read model"),
        **problems(*AUTHED, 404),
    },
)
async def get_conversation(request: Request) -> JSONResponse:
    """The read model; 404 for an id no conversation can have; 503 + Retry-After when Redis fails.

    Every Redis call has ``DEPENDENCY_DEADLINE_S``: a silent or absent Redis is a 503
    within a few seconds, never a 500 or a hang.
    """
    principal = requires_any_role(request, "subscriber", "auditor", "admin")
    principal.require_tenant(request.query_params.get("tenant", principal.tenant))
    ctx: EdgeContext = request.app.state.ctx
    conv_id = request.path_params["conversation_id"]
    if not is_id(conv_id):
        # Nothing outside the id grammar can be written, so nothing outside it exists.
        raise HTTPException(
            404,
            f"no such conversation: {_quoted(conv_id)} is not an id "
            f"(ids are 1-{MAX_ID_LENGTH} {ID_CHARACTERS})",
        )
    keys = await within_deadline(ctx.read_keys(), "redis")
    token = request.query_params.get("consistency_token")
    if token:
        await wait_applied(ctx, keys, token)
    pipe = ctx.redis.pipeline(transaction=False)
    pipe.hgetall(keys.conversation(principal.tenant, conv_id))
    pipe.lrange(keys.conversation_turns(principal.tenant, conv_id), 0, -1)
    pipe.hgetall(keys.conversation_decisions(principal.tenant, conv_id))
    fields, turns, decisions = await within_deadline(pipe.execute(), "redis")
    if not fields:
        # Another tenant's conversation is indistinguishable from a missing one.
        raise HTTPException(404, f"conversation {conv_id!r} not found for tenant {principal.tenant!r}")
    return JSONResponse(conversation_view(fields, turns, decisions))


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
