"""The edge's OpenAPI 3.1 document, built from the route table.

Each handler carries its own operation object (``@operation`` in ``api/spec.py``), so the
route table (``api/app.py`` ``routes()``) is the one list of paths and methods; this module
adds the shared parts (info, security, component schemas) and walks the routes. A route
whose handler has no operation fails the build (``UndocumentedRoute``) unless the route
says ``include_in_schema=False`` (the console's static files and the ``/`` redirect).
``docs/openapi.json`` is the checked-in rendering (a test keeps them equal: regenerate with
``python -m ledgerflow.api.openapi > docs/openapi.json``) and ``openapi_json`` serves it at
``/openapi.json``. Every error is an RFC 9457 ``application/problem+json``; every ``/v1``
route takes a bearer JWT.
"""

from __future__ import annotations

import copy
import functools
import json
import sys
from collections.abc import Sequence
from importlib import resources
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import BaseRoute, Route

from ledgerflow.api import spec
from ledgerflow.api.problems import PROBLEM_JSON, RETRY_AFTER_SECONDS
from ledgerflow.api.usage import COST as _COST

Schema = dict[str, Any]
ROLES = ["producer", "subscriber", "admin", "auditor"]
TAGS = (
    "events",
    "conversations",
    "streams",
    "policy",
    "training",
    "usage",
    "audit",
    "operations",
    "registry",
)


class UndocumentedRoute(Exception):
    """A route in the schema whose handler carries no ``@operation``."""


def documented_routes(routes: Sequence[BaseRoute]) -> list[Route]:
    """The routes the document describes: every ``Route`` with ``include_in_schema``."""
    return [r for r in routes if isinstance(r, Route) and r.include_in_schema]


def _paths(routes: Sequence[BaseRoute]) -> dict[str, Schema]:
    paths: dict[str, Schema] = {}
    for route in documented_routes(routes):
        described = spec.operation_of(route.endpoint)
        if described is None:
            raise UndocumentedRoute(f"route {route.path} ({route.name}) has no @operation: describe it")
        for method in sorted((route.methods or {"GET"}) - {"HEAD"}):
            paths.setdefault(route.path, {})[method.lower()] = copy.deepcopy(described)
    return paths


def _schemas() -> dict[str, Schema]:
    ids = {"type": "string", "minLength": 1}
    payloads = {
        "ConversationStarted": spec.obj(["actor", "model"], actor=ids, model=spec.MODEL_NAME),
        "MessageSubmitted": spec.obj(
            ["turn_id", "role", "content", "model"],
            turn_id=ids,
            role={"enum": ["user", "assistant", "tool"]},
            content=spec.STR,
            model=spec.MODEL_NAME,
            tokens=spec.nullable("integer", minimum=0),
        ),
        "ConversationClosed": spec.obj(["reason"], reason=spec.STR),
    }
    return {
        "Problem": {
            **spec.obj(
                ["type", "title", "status", "detail"],
                type=spec.STR,
                title=spec.STR,
                status=spec.INT,
                detail=spec.STR,
                instance=spec.STR,
            ),
            "description": "RFC 9457 problem details; extension members may follow.",
        },
        "EventIn": {
            **spec.obj(
                ["type", "subject", "payload"],
                type={"enum": sorted(payloads)},
                subject=ids,
                tenant=ids,
                event_id={"type": "string", "format": "uuid"},
                occurred_at={"type": "string", "description": "UTC, e.g. 2026-11-23T20:00:00.000000Z"},
                producer=ids,
                trace_id=spec.nullable("string"),
                schema_version=spec.INT,
                payload={"oneOf": [{**s, "title": name} for name, s in payloads.items()]},
            ),
            "additionalProperties": False,
        },
        "Event": spec.obj(
            ["event_id", "type", "tenant", "subject", "occurred_at", "producer", "payload"],
            event_id=spec.STR,
            type=spec.STR,
            schema_version=spec.INT,
            tenant=spec.STR,
            subject=spec.STR,
            occurred_at=spec.STR,
            producer=spec.STR,
            trace_id=spec.nullable("string"),
            sequence=spec.nullable("integer"),
            prev_hash=spec.nullable("string"),
            hash=spec.nullable("string"),
            payload={"type": "object"},
        ),
        "IngestAck": spec.obj(
            ["event_id", "topic", "partition", "offset", "consistency_token"],
            event_id=spec.STR,
            topic=spec.STR,
            partition=spec.INT,
            offset=spec.INT,
            consistency_token=spec.STR,
            duplicate={"type": "boolean"},
        ),
        "Conversation": spec.obj(
            ["turns", "turn_count", "turns_start", "turns_next"],
            conversation_id=spec.STR,
            tenant=spec.STR,
            status={"enum": ["open", "closed"]},
            actor=spec.STR,
            model=spec.STR,
            tokens=spec.INT,
            started_at=spec.TIME,
            updated_at=spec.TIME,
            turn_count=spec.INT,
            last_decision={"type": "object"},
            turns={
                "type": "array",
                "items": {"type": "object"},
                "description": "One page of the turns, oldest first, each with its `decision` (or null)",
            },
            turns_start={
                "type": "integer",
                "minimum": 0,
                "description": "The position of the page's first turn",
            },
            turns_next={
                **spec.nullable("integer", minimum=0),
                "description": "`turns_before` of the page of older turns; null: it starts at the first turn",
            },
        ),
        "Pending": spec.obj(
            ["status", "detail"],
            status={"const": "pending"},
            detail=spec.STR,
            event_id=spec.STR,
            command_id=spec.STR,
            conversation_id=spec.STR,
            location=spec.STR,
            consistency_token=spec.nullable("string"),
        ),
        "Forecast": spec.obj(
            ["tenant", "model", "method", "history_count", "history", "forecast"],
            tenant=spec.STR,
            history_count={
                "type": "integer",
                "description": "The model's windows; `history` holds the newest",
            },
            model=spec.STR,
            method=spec.STR,
            prices={
                "oneOf": [
                    {"type": "null"},
                    spec.obj(
                        ["input_per_1k", "output_per_1k"],
                        input_per_1k=spec.nullable("number"),
                        output_per_1k=spec.nullable("number"),
                    ),
                ],
                "description": "The model's registered prices; null when it is not registered",
            },
            history={
                "type": "array",
                "items": spec.obj(
                    ["window_start", "tokens"], window_start=spec.TIME, tokens=spec.NUM, cost=_COST
                ),
            },
            forecast={
                "type": "array",
                "items": spec.obj(
                    ["window_start", "expected", "lower", "upper"],
                    window_start=spec.TIME,
                    expected=spec.NUM,
                    lower=spec.NUM,
                    upper=spec.NUM,
                    cost=_COST,
                ),
            },
        ),
        **_rule_pack_schemas(),
    }


def _rule_pack_schemas() -> dict[str, Schema]:
    """``policy/rulepack.schema.json`` as components (its ``$defs`` become ``RulePack.<name>``)."""
    raw = json.loads(resources.files("ledgerflow.policy").joinpath("rulepack.schema.json").read_text())
    defs = raw.pop("$defs", {})
    for key in ("$schema", "$id"):
        raw.pop(key, None)

    def rewrite(node: Any) -> Any:
        if isinstance(node, dict):
            return {
                k: (f"#/components/schemas/RulePack.{v.rsplit('/', 1)[1]}" if k == "$ref" else rewrite(v))
                for k, v in node.items()
            }
        if isinstance(node, list):
            return [rewrite(v) for v in node]
        return node

    return {"RulePack": rewrite(raw), **{f"RulePack.{name}": rewrite(d) for name, d in defs.items()}}


def build(routes: Sequence[BaseRoute]) -> Schema:
    """The document of ``routes``."""
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "ledgerflow edge",
            "version": "1",
            "description": "HTTP and SSE edge of ledgerflow. Errors are RFC 9457 problem details "
            f"(`{PROBLEM_JSON}`); 503 answers carry "
            f"`Retry-After: {RETRY_AFTER_SECONDS}`. "
            "SSE semantics: docs/sse.md.",
        },
        "servers": [{"url": "http://127.0.0.1:8700", "description": "`ledgerflow serve` default"}],
        "security": [{"bearer": []}],
        "tags": [{"name": n} for n in TAGS],
        "paths": _paths(routes),
        "components": {
            "securitySchemes": {
                "bearer": {
                    "type": "http",
                    "scheme": "bearer",
                    "bearerFormat": "JWT",
                    "description": "A JWT signed with RS256, ES256 or EdDSA by a key of the edge's JWKS "
                    f"(`kid`); claims iss, aud, exp, nbf, sub, tenant, roles ⊆ {ROLES}.",
                }
            },
            "schemas": _schemas(),
        },
    }


@functools.cache
def _cached() -> Schema:
    from ledgerflow.api.app import routes  # the route table imports this module's handler

    return build(routes())


def document() -> Schema:
    """The OpenAPI 3.1 document of the edge's routes (a fresh copy: callers may change it)."""
    return copy.deepcopy(_cached())


def render() -> str:
    """``docs/openapi.json``: the document as stable, indented JSON."""
    return json.dumps(_cached(), indent=2, ensure_ascii=False) + "\n"


@spec.operation(
    "getOpenApi",
    summary="This document",
    tags=["operations"],
    security=spec.PUBLIC,
    responses={"200": spec.json_response({"type": "object"}, "OpenAPI 3.1")},
)
async def openapi_json(request: Request) -> JSONResponse:
    """``GET /openapi.json`` (public)."""
    return JSONResponse(_cached())


if __name__ == "__main__":
    sys.stdout.write(render())
