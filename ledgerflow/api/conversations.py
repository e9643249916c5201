"""``GET /v1/conversations/{id}``: the conversation read model, from Redis."""

from __future__ import annotations

import orjson
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse

from ledgerflow.api.authentication import requires_any_role
from ledgerflow.api.context import EdgeContext
from ledgerflow.errors import InfrastructureError

_INT_FIELDS = ("turns", "tokens", "started_at", "updated_at")


async def get_conversation(request: Request) -> JSONResponse:
    principal = requires_any_role(request, "subscriber", "auditor", "admin")
    principal.require_tenant(request.query_params.get("tenant", principal.tenant))
    ctx: EdgeContext = request.app.state.ctx
    conv_id = request.path_params["conversation_id"]
    try:
        keys = await ctx.read_keys()
        pipe = ctx.redis.pipeline(transaction=False)
        pipe.hgetall(keys.conversation(principal.tenant, conv_id))
        pipe.lrange(keys.conversation_turns(principal.tenant, conv_id), 0, -1)
        pipe.hgetall(keys.conversation_decisions(principal.tenant, conv_id))
        fields, turns, decisions = await pipe.execute()
    except Exception as exc:  # noqa: BLE001
        raise InfrastructureError(f"Redis read failed: {exc!r}") from None
    if not fields:
        # Another tenant's conversation is indistinguishable from a missing one.
        raise HTTPException(404, f"conversation {conv_id!r} not found for tenant {principal.tenant!r}")
    view: dict[str, object] = {k.decode(): v.decode() for k, v in fields.items()}
    for name in _INT_FIELDS:
        if name in view:
            view[name] = int(view[name])  # type: ignore[arg-type]
    if "last_decision" in view:
        view["last_decision"] = orjson.loads(view["last_decision"])  # type: ignore[arg-type]
    by_event = {k.decode(): orjson.loads(v) for k, v in decisions.items()}
    view["turn_count"] = view.pop("turns", 0)
    view["turns"] = [
        {**turn, "decision": by_event.get(turn["event_id"])} for turn in map(orjson.loads, turns)
    ]
    return JSONResponse(view)
