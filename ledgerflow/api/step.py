"""``POST /v1/conversation/step``: publish a user turn and wait (bounded) for its decision.

1. With an ``Idempotency-Key``, claim it in Redis (SET NX): a retry reuses the first
   request's event id and publishes nothing new.
2. Subscribe to the conversation on the hub *before* publishing, so the decision cannot
   slip past, then publish the ``MessageSubmitted`` (first attempt only).
3. Wait up to ``wait`` seconds (default 2) for the decision — from the hub, or from the
   read model for a retry whose decision was made earlier. 200 with the decision, or
   202 with where to find it.
"""

from __future__ import annotations

import asyncio
import time
import uuid

import orjson
from starlette.requests import Request
from starlette.responses import JSONResponse

from ledgerflow.api.authentication import requires_role
from ledgerflow.api.context import EdgeContext
from ledgerflow.api.events import publish
from ledgerflow.api.problems import read_json
from ledgerflow.contracts.events import new_event
from ledgerflow.contracts.payloads import MessageSubmitted
from ledgerflow.errors import ValidationError
from ledgerflow.topics import CONVERSATION_EVENTS

DEFAULT_WAIT_S = 2.0
MAX_WAIT_S = 30.0
IDEMPOTENCY_TTL_S = 24 * 3600


async def step(request: Request) -> JSONResponse:
    principal = requires_role(request, "producer")
    ctx: EdgeContext = request.app.state.ctx
    body = await read_json(request)
    conversation_id, content = body.get("conversation_id"), body.get("content")
    if not isinstance(conversation_id, str) or not conversation_id.strip():
        raise ValidationError("conversation_id: a non-empty string is required")
    if not isinstance(content, str):
        raise ValidationError("content: a string is required")
    model = body.get("model") or "unspecified"
    wait = wait_seconds(request)
    tenant = principal.tenant
    event = new_event(
        "MessageSubmitted",
        tenant=tenant,
        subject=conversation_id,
        payload=MessageSubmitted(f"step-{uuid.uuid4().hex[:12]}", "user", content, str(model), None),
        producer=f"edge:{principal.sub}",
        occurred_at_micros=time.time_ns() // 1000,
    )
    # Step 1.
    key = request.headers.get("idempotency-key")
    idem = f"lf:{ctx.settings.topic_prefix}idem:{{{tenant}}}:{key[:200]}" if key else None
    first, event_id, token = True, event.event_id, None
    if idem is not None:
        first = bool(await ctx.redis.set(idem, event.event_id, nx=True, ex=IDEMPOTENCY_TTL_S))
        if not first:  # "<event id>" while the first request publishes, "<event id>|<token>" after
            event_id, _, token = (await ctx.redis.get(idem) or b"").decode().partition("|")
            token = token or None
    # Step 2.
    sub, _ = ctx.hub.subscribe(tenant, conversation_id, None)
    try:
        if first:
            try:
                meta = await publish(ctx, CONVERSATION_EVENTS, event)
            except Exception:
                if idem is not None:
                    await ctx.redis.delete(idem)
                raise
            token = f"{meta.partition}:{meta.offset}"
            if idem is not None:
                await ctx.redis.set(idem, f"{event_id}|{token}", keepttl=True)
        # Step 3. Subscribed before publishing, the first request cannot miss its decision on
        # the hub; a retry may have missed it there, so it also looks in the read model.
        decision = await _await_decision(ctx, sub, tenant, conversation_id, event_id, wait, retry=not first)
    finally:
        ctx.hub.unsubscribe(sub)
    location = f"/v1/conversations/{conversation_id}"
    if decision is None:
        return JSONResponse(
            {
                "event_id": event_id,
                "conversation_id": conversation_id,
                "status": "pending",
                "detail": f"no decision within {wait:g} s; it will appear in the conversation read model",
                "location": location,
                "consistency_token": token,
            },
            status_code=202,
            headers={"Location": location},
        )
    return JSONResponse(_shape(decision, event_id, conversation_id, token))


def wait_seconds(request: Request, default: float = DEFAULT_WAIT_S) -> float:
    """The ``?wait=`` bound in seconds (0 … 30), or ``default``."""
    raw = request.query_params.get("wait")
    if raw is None:
        return default
    try:
        value = float(raw)
    except ValueError:
        raise ValidationError(f"wait: a number of seconds is required, got {raw!r}") from None
    if not 0 <= value <= MAX_WAIT_S:
        raise ValidationError(f"wait: must be between 0 and {MAX_WAIT_S:g} seconds")
    return value


async def _await_decision(
    ctx: EdgeContext, sub, tenant: str, conversation_id: str, event_id: str, wait: float, *, retry: bool
) -> dict | None:
    deadline = asyncio.get_running_loop().time() + wait
    decisions_key = (await ctx.read_keys()).conversation_decisions(tenant, conversation_id)
    while True:
        if retry and (stored := await ctx.redis.hget(decisions_key, event_id)) is not None:
            return orjson.loads(stored)
        remaining = deadline - asyncio.get_running_loop().time()
        if remaining <= 0:
            return None
        try:
            frame = await asyncio.wait_for(sub.queue.get(), timeout=min(remaining, 0.25))
        except TimeoutError:
            continue
        if frame.event_type != "PolicyDecision":
            continue
        record = orjson.loads(frame.data)
        if record["payload"]["input_event_id"] == event_id:
            return {
                "event_id": record["event_id"],
                **record["payload"],
                "redactions": [[r["start"], r["end"]] for r in record["payload"]["redactions"]],
            }


def _shape(decision: dict, event_id: str, conversation_id: str, token: str | None) -> dict:
    return {
        "event_id": event_id,
        "decision_event_id": decision.get("event_id"),
        "conversation_id": conversation_id,
        "outcome": decision["outcome"],
        "score": decision["score"],
        "matched_rules": list(decision["matched_rules"]),
        "rule_pack_version": decision["rule_pack_version"],
        "constitution_hash": decision["constitution_hash"],
        "training_version": decision["training_version"],
        "redactions": [list(r) for r in decision["redactions"]],
        "consistency_token": token,
    }
