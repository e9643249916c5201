"""The model registry at the edge: register / enable / disable (admin) and the read API.

A command is published to ``models.commands`` and the edge waits (bounded) for the models
agent's answer in ``models.audit``, which the edge's reference data reads: 200 with the new
version, 409 problem+json for a refusal (version conflict, unknown model, invalid settings),
202 when the agent is slow. ``GET /v1/models`` answers from the same reference data. With an
``Idempotency-Key`` a command's id is derived from the key and the request (``keyed_command``).
"""

from __future__ import annotations

import dataclasses
import time
import uuid
from collections.abc import Callable
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from ledgerflow.api.authentication import requires_role
from ledgerflow.api.context import EdgeContext
from ledgerflow.api.events import publish
from ledgerflow.api.faults import bounded
from ledgerflow.api.idempotency import keyed_command_id
from ledgerflow.api.problems import problem, read_json
from ledgerflow.api.spec import (
    AUTHED,
    COMMAND_IDEMPOTENCY_KEY,
    INT,
    STR,
    Handler,
    body,
    json_response,
    nullable,
    obj,
    operation,
    problems,
    query,
    ref,
)
from ledgerflow.api.step import wait_seconds
from ledgerflow.api.tenant_reads import reader_of, tenant_read
from ledgerflow.auth.roles import ADMIN
from ledgerflow.contracts.events import new_event
from ledgerflow.contracts.payloads import ModelRejected, Payload, RegisterModel, SetModelEnabled
from ledgerflow.errors import ValidationError
from ledgerflow.models import ModelRegistry
from ledgerflow.models.aggregate import name_problem
from ledgerflow.topics import MODELS_COMMANDS

WAIT_S = 5.0
PRICE = nullable("number", minimum=0)
_WAIT = query(
    "wait", {"type": "number", "minimum": 0, "maximum": 30}, "Seconds to wait for the outcome (default 5)"
)
_OUTCOME = {
    "200": json_response(
        obj(
            ["command_id", "outcome", "version"],
            command_id=STR,
            outcome=STR,
            version=INT,
            model=STR,
            audit_event_id=STR,
        ),
        "Accepted: the registry's new version",
    ),
    "202": json_response(ref("Pending"), "No outcome in time", {"Location": {"schema": STR}}),
    **problems(400, 408, 413, *AUTHED, 409, 422),
}
_EXPECTED = nullable("integer", minimum=0)


def _expected_version(raw: dict[str, Any]) -> int | None:
    value = raw.get("expected_version")
    if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 0):
        raise ValidationError("expected_version: a non-negative integer is required")
    return value


def _text(raw: dict[str, Any], name: str) -> str:
    """A name (model id, provider): 1..``MAX_NAME_CHARS`` printable characters, refused here so
    a hostile one never becomes a command (its rejection record quoted it several times over:
    a 256-KiB id made an outcome past Kafka's record limit, retried forever)."""
    value = raw.get(name)
    if not isinstance(value, str) or not value.strip():
        raise ValidationError(f"{name}: a non-empty string is required")
    problem = name_problem(name, value)
    if problem is not None:
        raise ValidationError(problem)
    return value


def _price(raw: dict[str, Any], name: str) -> float | None:
    value = raw.get(name)
    if value is not None and (isinstance(value, bool) or not isinstance(value, int | float)):
        raise ValidationError(f"{name}: a number (price per 1,000 tokens) or null is required")
    return None if value is None else float(value)


@operation(
    "registerModel",
    summary="Register a model or replace its settings (role admin)",
    tags=["models"],
    description="Publishes `RegisterModel` to `models.commands` and waits (bounded) for the models agent. "
    "Settings the registry refuses, or a stale `expected_version`, are a 409 problem with the reason.",
    parameters=[_WAIT, COMMAND_IDEMPOTENCY_KEY],
    requestBody=body(
        obj(
            ["model", "provider", "context_window"],
            model=STR,
            provider=STR,
            context_window={"type": "integer", "minimum": 1},
            input_price_per_1k=PRICE,
            output_price_per_1k=PRICE,
            enabled={"type": "boolean"},
            expected_version=_EXPECTED,
        ),
        {"model": "slm-1", "provider": "local", "context_window": 8192, "input_price_per_1k": 0.0005},
    ),
    responses=_OUTCOME,
)
async def register_model(request: Request) -> Response:
    principal = requires_role(request, ADMIN)  # a non-admin gets 403 and nothing is written
    raw = await read_json(request)
    window = raw.get("context_window")
    if isinstance(window, bool) or not isinstance(window, int):
        raise ValidationError("context_window: an integer number of tokens is required")
    enabled = raw.get("enabled", True)
    if not isinstance(enabled, bool):
        raise ValidationError("enabled: true or false is required")
    model = _text(raw, "model")
    if model != model.strip():
        # "slm-1 " and "slm-1" would be two models that look the same on every page and in every
        # decision; refused here, for new registrations (the agent's own check is what replays of
        # the log judge, so it stays as it was).
        raise ValidationError(f"model: {model[:40]!r} has leading or trailing spaces")
    payload = RegisterModel(
        str(uuid.uuid4()),
        principal.sub,
        model,
        _text(raw, "provider"),
        window,
        _price(raw, "input_price_per_1k"),
        _price(raw, "output_price_per_1k"),
        enabled,
        _expected_version(raw),
    )
    return await _command(request, principal.tenant, payload)


def _switch_spec(operation_id: str, summary: str) -> Callable[[Handler], Handler]:
    return operation(
        operation_id,
        summary=summary,
        tags=["models"],
        description="Publishes `SetModelEnabled` to `models.commands`; an unknown model or a model "
        "already in that state is a 409 problem.",
        parameters=[_WAIT, COMMAND_IDEMPOTENCY_KEY],
        requestBody=body(obj(["model"], model=STR, expected_version=_EXPECTED), {"model": "slm-1"}),
        responses=_OUTCOME,
    )


@_switch_spec("disableModel", "Disable a registered model (role admin)")
async def disable_model(request: Request) -> Response:
    return await _switch(request, enabled=False)


@_switch_spec("enableModel", "Enable a registered model (role admin)")
async def enable_model(request: Request) -> Response:
    return await _switch(request, enabled=True)


async def _switch(request: Request, *, enabled: bool) -> Response:
    principal = requires_role(request, ADMIN)
    raw = await read_json(request)
    payload = SetModelEnabled(
        str(uuid.uuid4()), principal.sub, _text(raw, "model"), enabled, _expected_version(raw)
    )
    return await _command(request, principal.tenant, payload)


def keyed_command(
    payload: RegisterModel | SetModelEnabled, tenant: str, key: str | None
) -> RegisterModel | SetModelEnabled:
    """``payload`` as it is, or with an ``Idempotency-Key`` under a command id derived from the
    key's scope and the request (as training commands, ``api/training.command_id_for``): a retry
    after a 503 whose command still reached the log is that command, answered once."""
    if key is None:
        return payload
    asked = {k: v for k, v in dataclasses.asdict(payload).items() if k != "command_id"}
    command_id = keyed_command_id("models", tenant, payload.actor, key, {"type": payload.TYPE, **asked})
    return dataclasses.replace(payload, command_id=command_id)


async def _command(request: Request, tenant: str, payload: RegisterModel | SetModelEnabled) -> Response:
    ctx: EdgeContext = request.app.state.ctx
    wait = wait_seconds(request, WAIT_S)  # a bad ?wait= is refused before anything is published
    payload = keyed_command(payload, tenant, request.headers.get("idempotency-key"))
    event = new_event(
        payload.TYPE,
        tenant=tenant,
        subject=tenant,
        payload=payload,
        producer=f"edge:{payload.actor}",
        occurred_at_micros=time.time_ns() // 1000,
    )
    if payload.command_id not in ctx.reference.outcomes:  # a keyed retry of an answered command: not again
        await publish(ctx, MODELS_COMMANDS, event)
    outcome = await ctx.reference.wait_outcome(payload.command_id, wait)
    if outcome is None:
        detail = f"no outcome within {wait:g} s; see GET /v1/models"
        body_ = {"command_id": payload.command_id, "status": "pending", "detail": detail}
        return JSONResponse(body_, status_code=202, headers={"Location": "/v1/models"})
    answer: Payload = outcome.payload
    version = getattr(answer, "version", 0)
    if isinstance(answer, ModelRejected):
        return problem(
            409,
            "Conflict",
            f"command rejected: {answer.rejected_reason}",
            command_id=payload.command_id,
            outcome=outcome.type,
            version=version,
            audit_event_id=outcome.event_id,
        )
    return JSONResponse(
        {
            "command_id": payload.command_id,
            "outcome": outcome.type,
            "version": version,
            "model": payload.model,
            "audit_event_id": outcome.event_id,
        }
    )


MODEL_VIEW = obj(
    ["model", "provider", "context_window", "input_price_per_1k", "output_price_per_1k", "enabled"],
    model=STR,
    provider=STR,
    context_window=INT,
    input_price_per_1k=PRICE,
    output_price_per_1k=PRICE,
    enabled={"type": "boolean"},
)


def registry_view(registry: ModelRegistry) -> dict[str, Any]:
    """The JSON of ``GET /v1/models``: models sorted by id, grouped by provider too."""
    return {
        "tenant": registry.tenant,
        "version": registry.version,
        "models": [
            {
                "model": name,
                "provider": s.provider,
                "context_window": s.context_window,
                "input_price_per_1k": s.input_price_per_1k,
                "output_price_per_1k": s.output_price_per_1k,
                "enabled": s.enabled,
            }
            for name, s in sorted(registry.models.items())
        ],
        "providers": [{"provider": p, "models": m} for p, m in registry.providers().items()],
    }


@tenant_read(
    "listModels",
    "The tenant's model registry: providers, models and their settings (any role of the tenant)",
    "models",
    obj(
        ["tenant", "version", "models", "providers"],
        tenant=STR,
        version=INT,
        models={"type": "array", "items": MODEL_VIEW},
        providers={
            "type": "array",
            "items": obj(["provider", "models"], provider=STR, models={"type": "array", "items": STR}),
        },
    ),
    "The registry",
)
async def list_models(request: Request) -> JSONResponse:
    principal = reader_of(request)
    ctx: EdgeContext = request.app.state.ctx
    await bounded(ctx.reference.sync(), "Kafka reference read")
    return JSONResponse(registry_view(ctx.reference.registry_for(principal.tenant)))
