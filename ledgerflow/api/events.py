"""``POST /v1/events``: HTTP ingest of conversation events, acknowledged once Kafka has them.

1. Validate everything before any dependency is touched: the body (size, JSON), the
   envelope and payload, the id grammar, and attribution (``producer`` is derived from
   the token as ``edge:<sub>``; a client-supplied ``producer`` is refused, 422).
2. With a client ``event_id``, claim (tenant, event id) in Redis for ``HORIZON_S``
   (24 h, api/idempotency.py): a retry of the same event is acknowledged with the
   original position and not published again; a different event under the same id → 422.
3. Publish (bounded, api/faults.py); a failure undoes the claim and answers 503.
4. Record the position in the claim; answer 202 with it.
"""

from __future__ import annotations

import dataclasses
import logging
import time

from opentelemetry.trace import SpanKind
from starlette.requests import Request
from starlette.responses import JSONResponse

from ledgerflow.api import idempotency
from ledgerflow.api.authentication import requires_role
from ledgerflow.api.context import EdgeContext
from ledgerflow.api.edge_checks import check_edge_event, edge_producer, refuse_client_producer
from ledgerflow.api.faults import bounded
from ledgerflow.api.problems import read_json
from ledgerflow.api.spec import AUTHED, body, json_response, operation, problems, ref
from ledgerflow.contracts import codec
from ledgerflow.contracts.events import Event
from ledgerflow.errors import AuthError, InfrastructureError, ValidationError
from ledgerflow.metrics import EVENTS_INGESTED
from ledgerflow.quoting import quoted
from ledgerflow.topics import CONVERSATION_EVENTS
from ledgerflow.tracing import spans
from ledgerflow.tracing.current import current_trace, kafka_headers

log = logging.getLogger(__name__)

CONVERSATION_TYPES = frozenset({"ConversationStarted", "MessageSubmitted", "ConversationClosed"})


@operation(
    "ingestEvents",
    summary="Ingest a conversation event (role producer)",
    tags=["events"],
    description="Acknowledged once Kafka has it. `tenant` defaults to the token's and must equal it.",
    requestBody=body(
        ref("EventIn"),
        {
            "type": "MessageSubmitted",
            "subject": "conv-42",
            "payload": {
                "turn_id": "t-1",
                "role": "user",
                "content": "hello",
                "model": "slm-1",
                "tokens": None,
            },
        },
    ),
    responses={
        "202": json_response(ref("IngestAck"), "In the log"),
        **problems(400, 409, 408, 413, *AUTHED, 422),
    },
)
async def ingest(request: Request) -> JSONResponse:
    principal = requires_role(request, "producer")
    ctx: EdgeContext = request.app.state.ctx
    # Step 1.
    obj = await read_json(request)
    refuse_client_producer(obj)
    tenant = obj.get("tenant", principal.tenant)
    if tenant != principal.tenant:
        raise AuthError(
            f"tenant {quoted(tenant)} does not match the token's tenant {principal.tenant!r}", status=403
        )
    obj["tenant"] = principal.tenant
    client_event_id = obj.get("event_id") is not None
    event = Event.from_json(
        obj, now_micros=time.time_ns() // 1000, default_producer=edge_producer(principal.sub)
    )
    if event.type not in CONVERSATION_TYPES:
        raise ValidationError(
            f"type: {event.type} cannot be ingested here; use one of {sorted(CONVERSATION_TYPES)}"
        )
    check_edge_event(event)
    # Step 2.
    key, mine, held = None, None, None
    if client_event_id:
        key = idempotency.event_key(ctx.settings.topic_prefix, event.tenant, event.event_id)
        asked = obj | {"event_id": event.event_id}  # ids compare in their canonical (lowercase) form
        mine = idempotency.Claim(idempotency.fingerprint(asked), event.event_id, time.time())
        decision = await bounded(
            idempotency.claim(ctx.redis, key, mine, idempotency.EVENT_REUSED), "Redis event id claim"
        )
        held = decision.held
        if not decision.publish and decision.position is not None:
            partition, _, offset = decision.position.partition(":")
            return _ack(
                event.event_id, ctx.settings.topic(CONVERSATION_EVENTS), int(partition), int(offset), True
            )
    # Step 3.
    try:
        meta = await publish(ctx, CONVERSATION_EVENTS, event)
    except InfrastructureError:
        if key is not None:
            await idempotency.release_after_failure(ctx.redis, key, held)
        raise
    EVENTS_INGESTED.labels(event.type).inc()
    # Step 4. The event is on the log: from here on nothing may turn the answer into an error.
    if key is not None and mine is not None:
        position = f"{meta.partition}:{meta.offset}"
        await idempotency.record_published(ctx.redis, key, mine, event.event_id, position)
    return _ack(event.event_id, meta.topic, meta.partition, meta.offset, False)


def _ack(event_id: str, topic: str, partition: int, offset: int, duplicate: bool) -> JSONResponse:
    return JSONResponse(
        {
            "event_id": event_id,
            "topic": topic,
            "partition": partition,
            "offset": offset,
            "consistency_token": f"{partition}:{offset}",
            "duplicate": duplicate,
        },
        status_code=202,
    )


async def publish(ctx: EdgeContext, base_topic: str, event: Event):  # type: ignore[no-untyped-def]
    """Publish ``event`` keyed by its subject, bounded by faults.DEADLINE_S; any failure
    is InfrastructureError (503). A timed-out record may still reach the log: a retry
    with the same event id (or Idempotency-Key) is then a duplicate delivery, recognised
    as such downstream.

    The request's trace context goes along: in the record's ``traceparent``/``tracestate``
    headers, and in its envelope ``trace_id`` unless the producer set one (docs/tracing.md)."""
    topic, key = ctx.settings.topic(base_topic), event.subject.encode()
    attributes = spans.kafka_attributes(topic, "send")
    with spans.span(f"send {topic}", SpanKind.PRODUCER, current_trace.get(), attributes) as producing:
        trace = producing or current_trace.get()
        if trace is not None and event.trace_id is None:
            event = dataclasses.replace(event, trace_id=trace.traceparent)
        value = codec.encode(event)
        return await bounded(
            ctx.producer.send_and_wait(topic, value=value, key=key, headers=kafka_headers(trace)),
            "Kafka publish",
        )
