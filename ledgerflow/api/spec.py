"""Each HTTP operation's OpenAPI description, attached to its handler.

``@operation("getThing", summary=..., responses=...)`` records the operation object on the
handler; ``api/openapi.py`` walks the route table and reads it back, so the route table is
the one list of paths and methods and each handler carries its own contract. The small
builders below (``obj``, ``json_response``, ``problems``, ``query``, ``body``) keep the
descriptions short.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from ledgerflow.api.problems import PROBLEM_JSON
from ledgerflow.models.aggregate import MAX_NAME_CHARS

__all__ = [
    "AUTHED",
    "DECISION_FIELDS",
    "INT",
    "MODEL_NAME",
    "NUM",
    "PUBLIC",
    "STR",
    "TENANT_PARAM",
    "TIME",
    "Handler",
    "body",
    "json_response",
    "limit_query",
    "nullable",
    "obj",
    "operation",
    "operation_of",
    "problems",
    "query",
    "ref",
]

Schema = dict[str, Any]
Handler = TypeVar("Handler", bound=Callable[..., Any])

_ATTRIBUTE = "__openapi_operation__"

TITLES = {
    400: "Malformed request (not JSON, wrong content type, too large)",
    401: "Missing, malformed, expired or untrusted bearer token",
    403: "The token lacks a role, or names another tenant",
    404: "Not found (another tenant's data is indistinguishable from missing)",
    408: "The body did not arrive within the edge's deadline (`limit`: `body_timeout`, "
    "`LEDGERFLOW_BODY_TIMEOUT_S`); the edge closes the connection",
    409: "Refused by the domain (e.g. a training command rejected), or the same key still in flight",
    413: "The body is over the edge's size limit (`limit`: `body`)",
    412: "The tenant's constitution in force is not the one `Ledgerflow-If-Constitution` required: "
    "nothing was published; `required` and `in_force` name both hashes",
    422: "The request is well-formed but invalid; `detail` names the field",
    429: "Over a per-tenant limit (`limit`: rate, evaluate, sse); retry after `Retry-After`",
    503: "Kafka or Redis is unreachable (on a Redis Cluster: also the connected replica did not confirm "
    "an idempotency claim), or the edge is shutting down; retry after `Retry-After`",
}
STR: Schema = {"type": "string"}
INT: Schema = {"type": "integer"}
NUM: Schema = {"type": "number"}
TIME: Schema = {"type": "string", "description": "RFC 3339, UTC, e.g. 2026-11-29T23:49:10.123456Z"}
PUBLIC: list[dict[str, list[str]]] = []
"""``security`` of an operation that needs no token."""
AUTHED = (401, 403, 429, 503)


def operation(operation_id: str, **fields: Any) -> Callable[[Handler], Handler]:
    """Attach the OpenAPI operation object ``{"operationId": operation_id, **fields}`` to a handler."""

    def attach(handler: Handler) -> Handler:
        setattr(handler, _ATTRIBUTE, {"operationId": operation_id, **fields})
        return handler

    return attach


def operation_of(handler: Callable[..., Any]) -> Schema | None:
    """The operation object attached by ``@operation``, or None."""
    found: Schema | None = getattr(handler, _ATTRIBUTE, None)
    return found


def ref(name: str) -> Schema:
    return {"$ref": f"#/components/schemas/{name}"}


def nullable(kind: str, **extra: Any) -> Schema:
    return {"type": [kind, "null"], **extra}


def obj(required: list[str], **properties: Schema) -> Schema:
    return {"type": "object", "required": required, "properties": properties}


CONSTITUTION_HEADERS: Schema = {
    "Ledgerflow-Constitution": {
        "description": "The constitution (rule pack) in force: `sha256=<hash>; version=<n>; signer=<kid>` "
        "(docs/policy.md#policy-headers)",
        "schema": {"type": "string"},
    }
}


def json_response(schema: Schema, description: str, headers: Schema | None = None) -> Schema:
    out: Schema = {"description": description, "content": {"application/json": {"schema": schema}}}
    if headers:
        out["headers"] = headers
    return out


def problems(*codes: int) -> dict[str, Schema]:
    out = {}
    for code in codes:
        response: Schema = {
            "description": TITLES[code],
            "content": {PROBLEM_JSON: {"schema": ref("Problem")}},
        }
        if code in (429, 503):
            response["headers"] = {
                "Retry-After": {"description": "seconds to wait before retrying", "schema": STR}
            }
        if code == 412:
            response["headers"] = CONSTITUTION_HEADERS
        if code == 401:
            response["headers"] = {"WWW-Authenticate": {"description": "RFC 6750 challenge", "schema": STR}}
        if code == 408:
            response["headers"] = {"Connection": {"description": "`close`", "schema": STR}}
        out[str(code)] = response
    return out


def query(name: str, schema: Schema, description: str, required: bool = False) -> Schema:
    return {"name": name, "in": "query", "required": required, "schema": schema, "description": description}


def header(name: str, description: str) -> Schema:
    """An optional request header parameter."""
    return {"name": name, "in": "header", "required": False, "schema": STR, "description": description}


COMMAND_IDEMPOTENCY_KEY = header(
    "Idempotency-Key",
    "A retry with the same key and request is the same command: answered with its outcome, "
    "never applied twice",
)
"""The header of the admin commands (training, models): ``idempotency.keyed_command_id``."""


def limit_query(maximum: int, default: int, what: str) -> Schema:
    """The ``limit`` query parameter of a listing: an integer in 1 … ``maximum``, ``default`` when absent."""
    return query(
        "limit", {"type": "integer", "minimum": 1, "maximum": maximum}, f"{what} (default {default})"
    )


TENANT_PARAM = query("tenant", STR, "Optional; must equal the token's tenant (else 403).")
MODEL_NAME: Schema = {
    "type": "string",
    "minLength": 1,
    "maxLength": MAX_NAME_CHARS,
    "pattern": "^[^|]*$",
    "description": f"A model name: 1-{MAX_NAME_CHARS} printable characters, no `|` "
    "(api/edge_checks.py check_model_name)",
}


def body(schema: Schema, example: Any, description: str = "") -> Schema:
    return {
        "required": True,
        "description": description,
        "content": {"application/json": {"schema": schema, "example": example}},
    }


DECISION_FIELDS: dict[str, Schema] = {
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
"""The fields of a policy decision, as the step and evaluate answers carry them."""
