"""The edge's OpenAPI 3.1 document, generated from this module.

``document()`` is the contract; ``docs/openapi.json`` is its checked-in rendering (a test
keeps them equal: regenerate with ``python -m ledgerflow.api.openapi > docs/openapi.json``)
and ``openapi_json`` serves it at ``/openapi.json``. Every error is an RFC 9457
``application/problem+json``; every ``/v1`` route takes a bearer JWT.
"""

from __future__ import annotations

import copy
import functools
import json
import sys
from importlib import resources
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse

from ledgerflow.api.problems import PROBLEM_JSON, RETRY_AFTER_SECONDS

Schema = dict[str, Any]
TITLES = {
    400: "Malformed request (not JSON, wrong content type, too large)",
    401: "Missing, malformed, expired or untrusted bearer token",
    403: "The token lacks a role, or names another tenant",
    404: "Not found (another tenant's data is indistinguishable from missing)",
    409: "Refused by the domain (e.g. a training command rejected), or the same key still in flight",
    413: "The body is over the edge's size limit (`limit`: `body`)",
    422: "The request is well-formed but invalid; `detail` names the field",
    429: "Over a per-tenant limit (`limit`: rate, evaluate, sse); retry after `Retry-After`",
    503: "Kafka or Redis is unreachable, or the edge is shutting down; retry after `Retry-After`",
}
ROLES = ["producer", "subscriber", "admin", "auditor"]
STR: Schema = {"type": "string"}
INT: Schema = {"type": "integer"}
NUM: Schema = {"type": "number"}


def _ref(name: str) -> Schema:
    return {"$ref": f"#/components/schemas/{name}"}


def _nullable(kind: str, **extra: Any) -> Schema:
    return {"type": [kind, "null"], **extra}


def _obj(required: list[str], **properties: Schema) -> Schema:
    return {"type": "object", "required": required, "properties": properties}


def _json(schema: Schema, description: str, headers: Schema | None = None) -> Schema:
    out: Schema = {"description": description, "content": {"application/json": {"schema": schema}}}
    if headers:
        out["headers"] = headers
    return out


def _problems(*codes: int) -> dict[str, Schema]:
    out = {}
    for code in codes:
        response: Schema = {
            "description": TITLES[code],
            "content": {PROBLEM_JSON: {"schema": _ref("Problem")}},
        }
        if code in (429, 503):
            response["headers"] = {
                "Retry-After": {"description": "seconds to wait before retrying", "schema": STR}
            }
        if code == 401:
            response["headers"] = {"WWW-Authenticate": {"description": "RFC 6750 challenge", "schema": STR}}
        out[str(code)] = response
    return out


def _query(name: str, schema: Schema, description: str, required: bool = False) -> Schema:
    return {"name": name, "in": "query", "required": required, "schema": schema, "description": description}


TENANT_PARAM = _query("tenant", STR, "Optional; must equal the token's tenant (else 403).")
AUTHED = (401, 403, 429, 503)


def _body(schema: Schema, example: Any, description: str = "") -> Schema:
    return {
        "required": True,
        "description": description,
        "content": {"application/json": {"schema": schema, "example": example}},
    }


EXAMPLES: dict[str, Any] = {
    "event": {
        "type": "MessageSubmitted",
        "subject": "conv-42",
        "payload": {"turn_id": "t-1", "role": "user", "content": "hello", "model": "slm-1", "tokens": None},
    },
    "step": {"conversation_id": "conv-42", "content": "Can you summarise the report?", "model": "slm-1"},
    "evaluate": {"content": "Email jane.doe@example.com the invoice", "role": "user"},
    "rules": {
        "tenant": "acme",
        "description": "example pack",
        "rules": [{"id": "secrets", "when": {"keywords": ["password"]}, "action": "deny", "weight": 10}],
    },
    "enable": {"reason": "red-team exercise", "ttl_seconds": 3600},
    "disable": {"reason": "exercise finished"},
}


def _event_stream(summary: str, description: str, params: list[Schema]) -> Schema:
    return {
        "summary": summary,
        "description": description,
        "tags": ["streams"],
        "parameters": [
            *params,
            TENANT_PARAM,
            {
                "name": "Last-Event-ID",
                "in": "header",
                "required": False,
                "schema": STR,
                "description": "The `id` of the last data frame received: the stream resumes right after it. "
                "An unknown or expired cursor gets `event: reset` (see docs/sse.md).",
            },
        ],
        "responses": {
            "200": {
                "description": "A Server-Sent Events stream (docs/sse.md): data frames carry `id:` "
                "cursors; "
                "control frames (heartbeat, reset, overflow, reauth, expired, shutdown, "
                "unavailable) carry none.",
                "content": {"text/event-stream": {"schema": STR}},
            },
            **_problems(*AUTHED, 422),
        },
    }


def _paths() -> dict[str, Schema]:
    public: list[dict[str, list[str]]] = []
    decision_fields = {
        "outcome": {"enum": ["allow", "review", "redact", "deny"]},
        "score": NUM,
        "matched_rules": {"type": "array", "items": STR},
        "rule_pack_version": INT,
        "constitution_hash": STR,
        "training_version": INT,
        "redactions": {
            "type": "array",
            "items": {"type": "array", "items": INT, "minItems": 2, "maxItems": 2},
        },
    }
    return {
        "/healthz": {
            "get": {
                "summary": "The process answers",
                "tags": ["operations"],
                "security": public,
                "responses": {"200": _json(_obj(["status"], status={"const": "ok"}), "Alive")},
            }
        },
        "/readyz": {
            "get": {
                "summary": "Kafka, Redis and the SSE hub's reader are healthy",
                "tags": ["operations"],
                "security": public,
                "responses": {
                    "200": _json(
                        _obj(
                            ["status", "checks"],
                            status={"const": "ready"},
                            checks={"type": "object", "additionalProperties": STR},
                            sse_subscribers=INT,
                            projection_lag={"type": ["integer", "null"]},
                        ),
                        "Ready",
                    ),
                    **_problems(503),
                },
            }
        },
        "/metrics": {
            "get": {
                "summary": "Prometheus metrics",
                "tags": ["operations"],
                "security": public,
                "responses": {
                    "200": {
                        "description": "Prometheus text exposition format",
                        "content": {"text/plain": {"schema": STR}},
                    }
                },
            }
        },
        "/openapi.json": {
            "get": {
                "summary": "This document",
                "tags": ["operations"],
                "security": public,
                "responses": {"200": _json({"type": "object"}, "OpenAPI 3.1")},
            }
        },
        "/v1/events": {
            "post": {
                "summary": "Ingest a conversation event (role producer)",
                "tags": ["events"],
                "description": "Acknowledged once Kafka has it. `tenant` defaults to the token's and must "
                "equal it.",
                "requestBody": _body(_ref("EventIn"), EXAMPLES["event"]),
                "responses": {
                    "202": _json(_ref("IngestAck"), "In the log"),
                    **_problems(400, 409, 413, *AUTHED, 422),
                },
            }
        },
        "/v1/conversations/{conversation_id}": {
            "get": {
                "summary": "A conversation's read model (role subscriber, auditor or admin)",
                "tags": ["conversations"],
                "parameters": [
                    {"name": "conversation_id", "in": "path", "required": True, "schema": STR},
                    TENANT_PARAM,
                ],
                "responses": {
                    "200": _json(_ref("Conversation"), "The read model"),
                    **_problems(*AUTHED, 404),
                },
            }
        },
        "/v1/conversation/stream": {
            "get": _event_stream(
                "Follow one conversation (role subscriber)",
                "Its events and their policy decisions, resumable.",
                [
                    _query(
                        "conversation_id",
                        {"type": "string", "minLength": 1, "maxLength": 512},
                        "The conversation to follow",
                        required=True,
                    )
                ],
            )
        },
        "/v1/streams/tenant": {
            "get": _event_stream(
                "Follow the whole tenant (role subscriber)",
                "Every conversation event and decision of the token's "
                "tenant, resumable; order is kept per conversation (per Kafka partition).",
                [],
            )
        },
        "/v1/conversation/step": {
            "post": {
                "summary": "Publish a user turn and wait (bounded) for its decision (role producer)",
                "tags": ["conversations"],
                "parameters": [
                    _query(
                        "wait",
                        {"type": "number", "minimum": 0, "maximum": 30},
                        "Seconds to wait for the decision (default 2)",
                    ),
                    {
                        "name": "Idempotency-Key",
                        "in": "header",
                        "required": False,
                        "schema": STR,
                        "description": "A retry with the same key publishes nothing "
                        "new and answers the same turn",
                    },
                ],
                "requestBody": _body(
                    _obj(
                        ["conversation_id", "content"],
                        conversation_id={"type": "string", "minLength": 1},
                        content=STR,
                        model=STR,
                    ),
                    EXAMPLES["step"],
                ),
                "responses": {
                    "200": _json(
                        _obj(
                            ["event_id", "conversation_id", *decision_fields],
                            event_id=STR,
                            decision_event_id=_nullable("string"),
                            conversation_id=STR,
                            **decision_fields,
                            consistency_token=_nullable("string"),
                        ),
                        "The decision",
                    ),
                    "202": _json(
                        _ref("Pending"),
                        "No decision in time; it will appear in the read model",
                        {"Location": {"schema": STR}},
                    ),
                    **_problems(400, 409, 413, *AUTHED, 422),
                },
            }
        },
        "/v1/evaluate": {
            "post": {
                "summary": "Dry run: the decision a turn would get now (nothing is written)",
                "tags": ["policy"],
                "requestBody": _body(
                    _obj(
                        ["content"],
                        content=STR,
                        role={"enum": ["user", "assistant", "tool"]},
                        conversation_id=STR,
                    ),
                    EXAMPLES["evaluate"],
                ),
                "responses": {
                    "200": _json(
                        _obj(
                            ["conversation_id", "dry_run", *decision_fields],
                            conversation_id=STR,
                            dry_run={"const": True},
                            training_enabled={"type": "boolean"},
                            **decision_fields,
                        ),
                        "The decision",
                    ),
                    **_problems(400, 413, *AUTHED, 422),
                },
            }
        },
        "/v1/policy/rules": {
            "put": {
                "summary": "Publish a rule pack for the token's tenant (role admin)",
                "tags": ["policy"],
                "requestBody": _body(
                    _ref("RulePack"), EXAMPLES["rules"], "docs/policy.md; `version` is assigned on publish"
                ),
                "responses": {
                    "201": _json(
                        _obj(
                            ["tenant", "version", "constitution_hash"],
                            tenant=STR,
                            version=INT,
                            constitution_hash=STR,
                            event_id=STR,
                            offset=INT,
                        ),
                        "Published",
                    ),
                    **_problems(400, 413, *AUTHED, 422),
                },
            }
        },
        "/v1/training/enable": {"post": _training("Enable training mode (role admin)", enable=True)},
        "/v1/training/disable": {"post": _training("Disable training mode (role admin)", enable=False)},
        "/v1/training/status": {
            "get": {
                "summary": "The tenant's training mode",
                "tags": ["training"],
                "responses": {
                    "200": _json(
                        _obj(
                            ["tenant", "state", "version"],
                            tenant=STR,
                            state=STR,
                            version=INT,
                            owner=_nullable("string"),
                            reason=_nullable("string"),
                            expires_at=_nullable("integer"),
                            last_rejection=_nullable("string"),
                        ),
                        "Status",
                    ),
                    **_problems(*AUTHED),
                },
            }
        },
        "/v1/forecast": {
            "get": {
                "summary": "Expected token usage for the next windows (Holt's linear trend)",
                "tags": ["usage"],
                "parameters": [
                    _query("model", {"type": "string", "minLength": 1}, "The model", required=True),
                    _query(
                        "horizon",
                        {"type": "integer", "minimum": 1, "maximum": 60},
                        "Windows ahead (default 5)",
                    ),
                    TENANT_PARAM,
                ],
                "responses": {"200": _json(_ref("Forecast"), "The forecast"), **_problems(*AUTHED, 422)},
            }
        },
    }


def _training(summary: str, *, enable: bool) -> Schema:
    fields: dict[str, Schema] = {
        "reason": {"type": "string", "minLength": 1},
        "expected_version": _nullable("integer", minimum=0),
    }
    if enable:
        fields["ttl_seconds"] = _nullable("integer")
    return {
        "summary": summary,
        "tags": ["training"],
        "description": "Publishes a command to `training.commands` and waits (bounded) for the training "
        "agent's outcome. A rejection is a 409 problem with the reason.",
        "parameters": [
            _query(
                "wait",
                {"type": "number", "minimum": 0, "maximum": 30},
                "Seconds to wait for the outcome (default 5)",
            ),
        ],
        "requestBody": _body(_obj(["reason"], **fields), EXAMPLES["enable" if enable else "disable"]),
        "responses": {
            "200": _json(
                _obj(
                    ["command_id", "accepted", "outcome", "version"],
                    command_id=STR,
                    accepted={"const": True},
                    outcome=STR,
                    version=INT,
                    reason=_nullable("string"),
                    expires_at=_nullable("integer"),
                    audit_event_id=STR,
                ),
                "Accepted",
            ),
            "202": _json(_ref("Pending"), "No outcome in time", {"Location": {"schema": STR}}),
            **_problems(400, 413, *AUTHED, 409, 422),
        },
    }


def _schemas() -> dict[str, Schema]:
    ids = {"type": "string", "minLength": 1}
    payloads = {
        "ConversationStarted": _obj(["actor", "model"], actor=ids, model=ids),
        "MessageSubmitted": _obj(
            ["turn_id", "role", "content", "model"],
            turn_id=ids,
            role={"enum": ["user", "assistant", "tool"]},
            content=STR,
            model=ids,
            tokens=_nullable("integer", minimum=0),
        ),
        "ConversationClosed": _obj(["reason"], reason=STR),
    }
    return {
        "Problem": {
            **_obj(
                ["type", "title", "status", "detail"],
                type=STR,
                title=STR,
                status=INT,
                detail=STR,
                instance=STR,
            ),
            "description": "RFC 9457 problem details; extension members may follow.",
        },
        "EventIn": {
            **_obj(
                ["type", "subject", "payload"],
                type={"enum": sorted(payloads)},
                subject=ids,
                tenant=ids,
                event_id={"type": "string", "format": "uuid"},
                occurred_at={"type": "string", "description": "UTC, e.g. 2026-11-23T20:00:00.000000Z"},
                producer=ids,
                trace_id=_nullable("string"),
                schema_version=INT,
                payload={"oneOf": [{**s, "title": name} for name, s in payloads.items()]},
            ),
            "additionalProperties": False,
        },
        "Event": _obj(
            ["event_id", "type", "tenant", "subject", "occurred_at", "producer", "payload"],
            event_id=STR,
            type=STR,
            schema_version=INT,
            tenant=STR,
            subject=STR,
            occurred_at=STR,
            producer=STR,
            trace_id=_nullable("string"),
            sequence=_nullable("integer"),
            prev_hash=_nullable("string"),
            hash=_nullable("string"),
            payload={"type": "object"},
        ),
        "IngestAck": _obj(
            ["event_id", "topic", "partition", "offset", "consistency_token"],
            event_id=STR,
            topic=STR,
            partition=INT,
            offset=INT,
            consistency_token=STR,
            duplicate={"type": "boolean"},
        ),
        "Conversation": _obj(
            ["turns", "turn_count"],
            conversation_id=STR,
            tenant=STR,
            status={"enum": ["open", "closed"]},
            actor=STR,
            model=STR,
            tokens=INT,
            started_at=INT,
            updated_at=INT,
            turn_count=INT,
            last_decision={"type": "object"},
            turns={"type": "array", "items": {"type": "object"}},
        ),
        "Pending": _obj(
            ["status", "detail"],
            status={"const": "pending"},
            detail=STR,
            event_id=STR,
            command_id=STR,
            conversation_id=STR,
            location=STR,
            consistency_token=_nullable("string"),
        ),
        "Forecast": _obj(
            ["tenant", "model", "method", "history", "forecast"],
            tenant=STR,
            model=STR,
            method=STR,
            history={
                "type": "array",
                "items": _obj(["window_start", "tokens"], window_start=INT, tokens=NUM),
            },
            forecast={
                "type": "array",
                "items": _obj(
                    ["window_start", "expected", "lower", "upper"],
                    window_start=INT,
                    expected=NUM,
                    lower=NUM,
                    upper=NUM,
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


@functools.cache
def _cached() -> Schema:
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
        "tags": [
            {"name": n}
            for n in ("events", "conversations", "streams", "policy", "training", "usage", "operations")
        ],
        "paths": _paths(),
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


def document() -> Schema:
    """The OpenAPI 3.1 document (a fresh copy: callers may change it)."""
    return copy.deepcopy(_cached())


def render() -> str:
    """``docs/openapi.json``: the document as stable, indented JSON."""
    return json.dumps(_cached(), indent=2, ensure_ascii=False) + "\n"


async def openapi_json(request: Request) -> JSONResponse:
    """``GET /openapi.json`` (public)."""
    return JSONResponse(_cached())


if __name__ == "__main__":
    sys.stdout.write(render())
