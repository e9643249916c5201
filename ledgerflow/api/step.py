"""``POST /v1/conversation/step``: publish a user turn and wait (bounded) for its decision.

1. Validate everything before any dependency is touched: ids in the id grammar
   (contracts/ids.py; the conversation id ends up in ``Location``), ``content`` a string
   within the size limit, ``model`` a string, ``wait`` in range, the Idempotency-Key.
   With a ``Ledgerflow-If-Constitution`` precondition (api/constitution.py), read
   ``policy.rules`` up to its end and answer 412 — nothing published — when the tenant's
   pack in force is not one the client named. Every answer carries
   ``Ledgerflow-Constitution``: the decision's own constitution on 200, the pack in force
   otherwise.
2. Touch Redis first: resolve the read-model keys, and with an ``Idempotency-Key`` claim
   (tenant, token subject, key) with the request's fingerprint (api/idempotency.py): a
   retry reuses the first request's event id and position and publishes nothing new; the
   same key with a different request → 422. Redis down → 503 and nothing was published.
   The event id is derived from the key and the request (``idempotency.step_event_id``), so a
   retry after Redis lost the claim publishes the same event id: a duplicate delivery.
3. Subscribe to the conversation on the hub *before* publishing, so the decision cannot
   slip past, then publish the ``MessageSubmitted`` (bounded; a failure undoes the claim, 503).
4. Wait up to ``wait`` seconds (default 2) for the decision. 200 with the decision, or
   202 with where to find it. Once published, a Redis fault no longer turns the answer
   into an error (a client would retry and double the turn): it is a 202.

Only a decision the projector accepted answers a step: the read model's, never a record read off
``policy.decisions`` as it is. Anyone who can write to Kafka can append a ``PolicyDecision`` for
any turn there (``allow`` where the rules deny, for a turn not decided yet); the hub streams what
the agents' decoder takes, and the projector refuses what does not hash right or does not link to
its chain's last projected decision (``projections/verify.py``, ``ops.ChainLink``). So a decision
frame naming the step's turn is a *hint*: from then on the step reads the conversation's
decisions in the read model (``_stored_decision``) every ``HINT_POLL_S`` … ``HINT_POLL_MAX_S``
until the projector wrote one for the turn or the wait ends (202); every such frame starts the
reads afresh at the short interval. A forged frame costs Redis reads (six in the first ~60 ms
after it, then one per 50 ms of the wait; once reads began, every other frame of the conversation
one more, at once) and delays nothing: the genuine decision's own frame re-arms the reads, and it is what
the read model holds. A retry, and any keyed request, reads the read model from the start (its
decision may have been made earlier).
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
import uuid
from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import JSONResponse

from ledgerflow.api import idempotency, spec
from ledgerflow.api.authentication import requires_role
from ledgerflow.api.constitution import (
    HEADER,
    PRECONDITION,
    check_precondition,
    header_of,
    header_value,
    required_hashes,
)
from ledgerflow.api.context import EdgeContext
from ledgerflow.api.edge_checks import (
    check_edge_event,
    check_model_name,
    edge_producer,
    refuse_client_producer,
)
from ledgerflow.api.events import publish
from ledgerflow.api.faults import bounded
from ledgerflow.api.problems import read_json
from ledgerflow.contracts.events import Event, new_event
from ledgerflow.contracts.ids import check_id
from ledgerflow.contracts.payloads import MessageSubmitted
from ledgerflow.errors import InfrastructureError, ValidationError
from ledgerflow.projections.keys import Keys
from ledgerflow.quoting import quoted
from ledgerflow.topics import CONVERSATION_EVENTS

log = logging.getLogger(__name__)

DEFAULT_WAIT_S = 2.0
MAX_WAIT_S = 30.0
WAIT_POLL_S = 0.25
"""How long a step waits for the hub between reads of the read model, before any hint."""
HINT_POLL_S = 0.002
HINT_POLL_MAX_S = 0.05
"""After a decision frame naming the turn, the read model is read at once, then again after
2 ms, doubling up to 50 ms (the projector applies the decision a few ms after the hub reads it)."""
IDEMPOTENCY_TTL_S = idempotency.HORIZON_S


@spec.operation(
    "step",
    summary="Publish a user turn and wait (bounded) for its decision (role producer)",
    tags=["conversations"],
    parameters=[
        spec.query(
            "wait",
            {"type": "number", "minimum": 0, "maximum": 30},
            "Seconds to wait for the decision (default 2)",
        ),
        spec.header(
            "Idempotency-Key", "A retry with the same key publishes nothing new and answers the same turn"
        ),
        {
            "name": "Ledgerflow-If-Constitution",
            "in": "header",
            "required": False,
            "schema": spec.STR,
            "description": "Precondition: `sha256=<constitution hash>` (comma-separated for several); "
            "when the tenant's pack in force is another one the answer is 412 and nothing is published",
        },
    ],
    requestBody=spec.body(
        spec.obj(
            ["conversation_id", "content"],
            conversation_id={"type": "string", "minLength": 1},
            content=spec.STR,
            model=spec.MODEL_NAME,
        ),
        {"conversation_id": "conv-42", "content": "Can you summarise the report?", "model": "slm-1"},
    ),
    responses={
        "200": spec.json_response(
            spec.obj(
                ["event_id", "conversation_id", *spec.DECISION_FIELDS],
                event_id=spec.STR,
                decision_event_id=spec.nullable("string"),
                conversation_id=spec.STR,
                **spec.DECISION_FIELDS,
                signer_kid=spec.nullable("string"),
                consistency_token=spec.nullable("string"),
            ),
            "The decision",
            spec.CONSTITUTION_HEADERS,
        ),
        "202": spec.json_response(
            spec.ref("Pending"),
            "No decision in time; it will appear in the read model",
            {"Location": {"schema": spec.STR}, **spec.CONSTITUTION_HEADERS},
        ),
        **spec.problems(400, 409, 412, 408, 413, *spec.AUTHED, 422),
    },
)
async def step(request: Request) -> JSONResponse:
    principal = requires_role(request, "producer")
    ctx: EdgeContext = request.app.state.ctx
    # Step 1.
    body = await read_json(request)
    refuse_client_producer(body)
    conversation_id = check_id("conversation_id", body.get("conversation_id"))
    content = body.get("content")
    if not isinstance(content, str):
        raise ValidationError("content: a string is required")
    model = body.get("model")
    if model is None:
        model = "unspecified"
    check_model_name("model", model)
    wait = wait_seconds(request)
    raw_key = request.headers.get("idempotency-key")
    if raw_key is not None:
        idempotency.check_idempotency_key(raw_key)
    tenant = principal.tenant
    required = required_hashes(request.headers.get(PRECONDITION))
    if required:
        await bounded(ctx.reference.sync(), "Kafka policy.rules read")
    in_force = ctx.reference.pack_for(tenant)
    check_precondition(required, in_force)
    event = check_edge_event(
        new_event(
            "MessageSubmitted",
            tenant=tenant,
            subject=conversation_id,
            payload=MessageSubmitted(f"step-{uuid.uuid4().hex[:12]}", "user", content, model, None),
            producer=edge_producer(principal.sub),
            occurred_at_micros=time.time_ns() // 1000,
        )
    )
    location = f"/v1/conversations/{conversation_id}"  # ASCII, no CR/LF: an id
    ctx.hub.require_topics()  # a topic the hub reads deleted under the edge: 503 naming it, nothing claimed
    # Step 2.
    keys = await bounded(ctx.read_keys(), "Redis read-model keys")
    idem, mine, held = None, None, None
    publish_it, event_id, token = True, event.event_id, None
    if raw_key is not None:
        idem = idempotency.step_key(ctx.settings.topic_prefix, tenant, principal.sub, raw_key)
        fingerprint = idempotency.fingerprint(
            {"conversation_id": conversation_id, "content": content, "model": model}
        )
        # The same key and request name the same turn even when Redis lost the claim.
        event = _with_event_id(event, idempotency.step_event_id(tenant, principal.sub, raw_key, fingerprint))
        mine = idempotency.Claim(fingerprint, event.event_id, time.time())
        decision = await bounded(idempotency.claim(ctx.redis, idem, mine), "Redis idempotency claim")
        publish_it, event_id, token = decision.publish, decision.event_id, decision.position
        held = decision.held
        if event_id != event.event_id:  # a takeover publishes the earlier event id again
            event = _with_event_id(event, event_id)
    # Step 3.
    sub, _ = ctx.hub.subscribe(tenant, conversation_id, None)
    try:
        if publish_it:
            try:
                meta = await publish(ctx, CONVERSATION_EVENTS, event)
            except InfrastructureError:
                if idem is not None:
                    await idempotency.release_after_failure(ctx.redis, idem, held)
                raise
            token = f"{meta.partition}:{meta.offset}"
            if idem is not None and mine is not None:
                await idempotency.record_published(ctx.redis, idem, mine, event_id, token)
        # Step 4. Subscribed before publishing, the first request cannot miss its decision on
        # the hub; a retry may have missed it there, so it also looks in the read model (so does
        # any keyed request: what it published may be a duplicate delivery of a decided turn).
        decision_found = await _await_decision(
            ctx, sub, keys, tenant, conversation_id, event_id, wait, retry=not publish_it or idem is not None
        )
    finally:
        ctx.hub.unsubscribe(sub)
    if decision_found is None:
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
            headers={"Location": location, **header_of(in_force)},
        )
    governed = header_value(
        decision_found["constitution_hash"],
        decision_found["rule_pack_version"],
        decision_found.get("signer_kid"),
    )
    return JSONResponse(_shape(decision_found, event_id, conversation_id, token), headers={HEADER: governed})


def _with_event_id(event: Event, event_id: str) -> Event:
    return dataclasses.replace(event, event_id=event_id)


def wait_seconds(request: Request, default: float = DEFAULT_WAIT_S) -> float:
    """The ``?wait=`` bound in seconds (0 … 30), or ``default``."""
    raw = request.query_params.get("wait")
    if raw is None:
        return default
    try:
        value = float(raw)
    except ValueError:
        raise ValidationError(f"wait: a number of seconds is required, got {quoted(raw)}") from None
    if not 0 <= value <= MAX_WAIT_S:
        raise ValidationError(f"wait: must be between 0 and {MAX_WAIT_S:g} seconds")
    return value


async def _await_decision(
    ctx: EdgeContext,
    sub: Any,
    keys: Keys,
    tenant: str,
    conversation_id: str,
    event_id: str,
    wait: float,
    *,
    retry: bool,
) -> dict[str, Any] | None:
    """The decision of ``event_id`` the projector accepted (the read model's), within ``wait``
    seconds; None if none. The hub's frames only say when to look (a frame naming the turn may
    be forged: module docstring)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + wait
    decisions_key = keys.conversation_decisions(tenant, conversation_id)
    look, poll = retry, WAIT_POLL_S
    while True:
        if look and (stored := await _stored_decision(ctx, decisions_key, event_id)) is not None:
            found: dict[str, Any] = orjson.loads(stored)
            return found
        remaining = deadline - loop.time()
        if remaining <= 0:
            return None
        try:
            frame = await asyncio.wait_for(sub.queue.get(), timeout=min(remaining, poll))
        except TimeoutError:
            if poll < WAIT_POLL_S:  # hinted: the next read comes a little later
                poll = min(poll * 2, HINT_POLL_MAX_S)
            continue
        if frame.event_type == "PolicyDecision" and _answers(frame.data, event_id):
            look, poll = True, HINT_POLL_S  # each frame naming the turn (the genuine one too) re-arms it


def _answers(data: bytes, event_id: str) -> bool:
    """Whether a decision frame's JSON names ``event_id`` as its input."""
    record = orjson.loads(data)
    return bool(record["payload"]["input_event_id"] == event_id)


async def _stored_decision(ctx: EdgeContext, key: str, event_id: str) -> bytes | str | None:
    """The decision from the read model; None if absent or Redis fails (nothing to undo:
    a retry published nothing, so it answers 202 pending rather than an error)."""
    try:
        stored: bytes | str | None = await bounded(ctx.redis.hget(key, event_id), "Redis decision read")
    except InfrastructureError:
        return None
    return stored


def _shape(
    decision: dict[str, Any], event_id: str, conversation_id: str, token: str | None
) -> dict[str, Any]:
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
        "signer_kid": decision.get("signer_kid"),
        "consistency_token": token,
    }
