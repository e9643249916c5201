"""Training mode at the edge: enable/disable commands (admin), status and usage forecast.

``POST /v1/training/enable|disable`` publishes a command to ``training.commands`` and
waits (bounded) for the training agent's answer in ``training.audit``: 200 with the
outcome (accepted, or rejected with its reason), or 202 when the agent is slow.

With an ``Idempotency-Key`` the command id is derived from (tenant, token subject, key, request)
(``idempotency.keyed_id``), not drawn: a publish that timed out (503) may still reach the log — a
broker paused mid-publish applies it when it wakes — and the client's retry under the same key is
then that same command, which the training agent answers once; the retry is answered with that
outcome (200), not rejected as a second command (409 ``already_enabled``).
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from ledgerflow.api import spec
from ledgerflow.api.authentication import requires_role, requires_tenant_role
from ledgerflow.api.context import EdgeContext
from ledgerflow.api.events import publish
from ledgerflow.api.health import within_deadline
from ledgerflow.api.idempotency import keyed_command_id
from ledgerflow.api.problems import problem, read_json
from ledgerflow.api.step import wait_seconds
from ledgerflow.contracts.events import new_event
from ledgerflow.contracts.payloads import (
    DisableTraining,
    EnableTraining,
    TrainingDisabled,
    TrainingEnabled,
    TrainingExpired,
    TrainingRejected,
)
from ledgerflow.errors import ValidationError
from ledgerflow.projections.views import training_view
from ledgerflow.redisvalues import text_map
from ledgerflow.timefmt import rfc3339
from ledgerflow.topics import TRAINING_COMMANDS
from ledgerflow.training.aggregate import (
    DEFAULT_TTL_SECONDS,
    MAX_REASON_LENGTH,
    MAX_TTL_SECONDS,
    MIN_TTL_SECONDS,
)

WAIT_S = 5.0


def _command_spec(operation_id: str, summary: str, *, enable: bool) -> Callable[[spec.Handler], spec.Handler]:
    fields: dict[str, Any] = {
        "reason": {"type": "string", "minLength": 1, "maxLength": MAX_REASON_LENGTH},
        "expected_version": spec.nullable("integer", minimum=0),
    }
    if enable:
        fields["ttl_seconds"] = {
            **spec.nullable("integer", minimum=MIN_TTL_SECONDS, maximum=MAX_TTL_SECONDS),
            "description": f"Seconds until training mode expires (default {DEFAULT_TTL_SECONDS})",
        }
    example = (
        {"reason": "red-team exercise", "ttl_seconds": 3600} if enable else {"reason": "exercise finished"}
    )
    return spec.operation(
        operation_id,
        summary=summary,
        tags=["training"],
        description="Publishes a command to `training.commands` and waits (bounded) for the training "
        "agent's outcome. A rejection is a 409 problem with the reason.",
        parameters=[
            spec.query(
                "wait",
                {"type": "number", "minimum": 0, "maximum": 30},
                "Seconds to wait for the outcome (default 5)",
            ),
            spec.COMMAND_IDEMPOTENCY_KEY,
        ],
        requestBody=spec.body(spec.obj(["reason"], **fields), example),
        responses={
            "200": spec.json_response(
                spec.obj(
                    ["command_id", "accepted", "outcome", "version"],
                    command_id=spec.STR,
                    accepted={"const": True},
                    outcome=spec.STR,
                    version=spec.INT,
                    reason=spec.nullable("string"),
                    expires_at=spec.nullable("string"),
                    audit_event_id=spec.STR,
                ),
                "Accepted",
            ),
            "202": spec.json_response(
                spec.ref("Pending"), "No outcome in time", {"Location": {"schema": spec.STR}}
            ),
            **spec.problems(400, 408, 413, *spec.AUTHED, 409, 422),
        },
    )


@_command_spec("enableTraining", "Enable training mode (role admin)", enable=True)
async def enable(request: Request) -> Response:
    return await _command(request, "EnableTraining")


@_command_spec("disableTraining", "Disable training mode (role admin)", enable=False)
async def disable(request: Request) -> Response:
    return await _command(request, "DisableTraining")


def command_of(
    kind: str, body: dict[str, Any], command_id: str, actor: str
) -> EnableTraining | DisableTraining:
    """The command a request body asks for; ValidationError (422) for what the training agent
    would refuse on the body alone (training/aggregate.py: a blank reason or one over
    ``MAX_REASON_LENGTH``, a TTL outside ``MIN_TTL_SECONDS``..``MAX_TTL_SECONDS``), so it is
    refused before it is published rather than after a round trip through Kafka."""
    reason = body.get("reason")
    if not isinstance(reason, str) or not reason.strip():
        raise ValidationError("reason: a non-empty string is required")
    if len(reason) > MAX_REASON_LENGTH:  # counted before stripping: the published size is bounded
        raise ValidationError(f"reason: {len(reason)} characters; at most {MAX_REASON_LENGTH}")
    expected = body.get("expected_version")
    if expected is not None and (isinstance(expected, bool) or not isinstance(expected, int) or expected < 0):
        raise ValidationError("expected_version: a non-negative integer is required")
    if kind != "EnableTraining":
        return DisableTraining(command_id, actor, reason, None, expected)
    ttl = body.get("ttl_seconds")
    if ttl is not None and (
        isinstance(ttl, bool) or not isinstance(ttl, int) or not MIN_TTL_SECONDS <= ttl <= MAX_TTL_SECONDS
    ):
        raise ValidationError(
            f"ttl_seconds: a whole number of seconds from {MIN_TTL_SECONDS} to {MAX_TTL_SECONDS} "
            "is required (or null: the default)"
        )
    return EnableTraining(command_id, actor, reason, ttl, expected)


def command_id_for(kind: str, body: dict[str, Any], tenant: str, sub: str, key: str | None) -> str:
    """A fresh command id, or with an ``Idempotency-Key`` one derived from the key's scope and the
    request (ValidationError, 422, for an empty or over-long key)."""
    if key is None:
        return str(uuid.uuid4())
    asked = {name: body.get(name) for name in ("reason", "ttl_seconds", "expected_version")}
    return keyed_command_id("training", tenant, sub, key, {"kind": kind, **asked})


async def _command(request: Request, kind: str) -> Response:
    principal = requires_role(request, "admin")  # a non-admin gets 403 and nothing is written
    ctx: EdgeContext = request.app.state.ctx
    wait = wait_seconds(request, WAIT_S)  # a bad ?wait= is refused before anything is published
    body = await read_json(request)
    key = request.headers.get("idempotency-key")
    payload = command_of(
        kind, body, command_id_for(kind, body, principal.tenant, principal.sub, key), principal.sub
    )
    command_id = payload.command_id
    event = new_event(
        kind,
        tenant=principal.tenant,
        subject=principal.tenant,
        payload=payload,
        producer=f"edge:{principal.sub}",
        occurred_at_micros=time.time_ns() // 1000,
    )
    if command_id not in ctx.reference.outcomes:  # a keyed retry of an answered command: not again
        await publish(ctx, TRAINING_COMMANDS, event)
    outcome = await ctx.reference.wait_outcome(command_id, wait)
    if outcome is None:
        return JSONResponse(
            {
                "command_id": command_id,
                "status": "pending",
                "detail": f"no outcome within {wait:g} s; see GET /v1/training/status",
            },
            status_code=202,
            headers={"Location": "/v1/training/status"},
        )
    p = outcome.payload
    if not isinstance(p, TrainingEnabled | TrainingDisabled | TrainingExpired | TrainingRejected):
        # training.audit holds only these four outcome types: anything else is a bug (500)
        raise RuntimeError(f"training.audit answered command {command_id} with a {outcome.type} record")
    if isinstance(p, TrainingRejected):  # a refusal is an error: problem+json, 409
        return problem(
            409,
            "Conflict",
            f"command rejected: {p.rejected_reason}",
            command_id=command_id,
            outcome=outcome.type,
            version=p.version,
            audit_event_id=outcome.event_id,
        )
    return JSONResponse(
        {
            "command_id": command_id,
            "accepted": True,
            "outcome": outcome.type,
            "version": p.version,
            "reason": p.reason,
            "expires_at": None if p.expires_at is None else rfc3339(p.expires_at),
            "audit_event_id": outcome.event_id,
        }
    )


@spec.operation(
    "getTrainingStatus",
    summary="The tenant's training mode",
    tags=["training"],
    responses={
        "200": spec.json_response(
            spec.obj(
                ["tenant", "state", "version"],
                tenant=spec.STR,
                state=spec.STR,
                version=spec.INT,
                owner=spec.nullable("string"),
                reason=spec.nullable("string"),
                expires_at=spec.nullable("string"),
                last_rejection=spec.nullable("string"),
            ),
            "Status",
        ),
        **spec.problems(*spec.AUTHED),
    },
)
async def status(request: Request) -> JSONResponse:
    principal = requires_tenant_role(request)
    ctx: EdgeContext = request.app.state.ctx
    keys = await within_deadline(ctx.read_keys(), "redis")
    raw = await within_deadline(ctx.redis.hgetall(keys.training(principal.tenant)), "redis")
    return JSONResponse(training_view(principal.tenant, text_map(raw)))
