"""``POST /v1/events``: HTTP ingest of conversation events, acknowledged once Kafka has them."""

from __future__ import annotations

import time

from starlette.requests import Request
from starlette.responses import JSONResponse

from ledgerflow.api.authentication import requires_role
from ledgerflow.api.context import EdgeContext
from ledgerflow.api.problems import read_json
from ledgerflow.contracts import codec
from ledgerflow.contracts.events import Event
from ledgerflow.errors import AuthError, InfrastructureError, ValidationError
from ledgerflow.metrics import EVENTS_INGESTED
from ledgerflow.topics import CONVERSATION_EVENTS

CONVERSATION_TYPES = frozenset({"ConversationStarted", "MessageSubmitted", "ConversationClosed"})


async def ingest(request: Request) -> JSONResponse:
    principal = requires_role(request, "producer")
    ctx: EdgeContext = request.app.state.ctx
    obj = await read_json(request)
    tenant = obj.get("tenant", principal.tenant)
    if tenant != principal.tenant:
        raise AuthError(
            f"tenant {tenant!r} does not match the token's tenant {principal.tenant!r}", status=403
        )
    obj["tenant"] = principal.tenant
    event = Event.from_json(obj, now_micros=time.time_ns() // 1000, default_producer=f"edge:{principal.sub}")
    if event.type not in CONVERSATION_TYPES:
        raise ValidationError(
            f"type: {event.type} cannot be ingested here; use one of {sorted(CONVERSATION_TYPES)}"
        )
    meta = await publish(ctx, CONVERSATION_EVENTS, event)
    EVENTS_INGESTED.labels(event.type).inc()
    return JSONResponse(
        {
            "event_id": event.event_id,
            "topic": meta.topic,
            "partition": meta.partition,
            "offset": meta.offset,
            "consistency_token": f"{meta.partition}:{meta.offset}",
        },
        status_code=202,
    )


async def publish(ctx: EdgeContext, base_topic: str, event: Event):
    value = codec.encode(event)
    try:
        return await ctx.producer.send_and_wait(
            ctx.settings.topic(base_topic), value=value, key=event.subject.encode()
        )
    except Exception as exc:
        raise InfrastructureError(f"Kafka did not accept the event: {exc!r}") from None
