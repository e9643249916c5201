"""``POST /v1/policy/validate``: check a rule pack exactly as publishing would, publish nothing.

200 ``{"valid": true, "constitution_hash": ...}``, or 422 problem+json whose ``errors``
list each problem with the rule it is in (``rule``: the rule's id, or null for a problem of
the pack as a whole). The checks are the policy core's (``load_rule_pack``, run in a worker
thread: compiling the largest pack ``policy/packlimits.py`` allows takes up to about a
second, the event loop must not wait for it); this module only splits its one-line refusal
into items. Compiling costs the edge's CPU and any role of the tenant may ask, so a tenant
validates at most ``LEDGERFLOW_VALIDATE_RATE_PER_TENANT`` packs a second (429 + Retry-After), and
an edge compiles one pack at a time for validation (``COMPILER``; the others wait their turn):
compiling holds the GIL, and ten at once left the event loop a tenth of it — another tenant's
status read took 4 s.
"""

from __future__ import annotations

import asyncio
import re
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from ledgerflow.api import spec
from ledgerflow.api.authentication import requires_tenant_role
from ledgerflow.api.context import EdgeContext
from ledgerflow.api.limits import take_or_refuse
from ledgerflow.api.problems import problem, read_json, status_title
from ledgerflow.errors import AuthError, ValidationError
from ledgerflow.policy import load_rule_pack
from ledgerflow.quoting import quoted

COMPILER = ThreadPoolExecutor(1, thread_name_prefix="pack-validate")
_PREFIX = "rule pack is invalid: "
_HINT = re.compile(r"\.\s*Fix the rule pack and publish it again \(format: docs/policy\.md\)\.$")
_ITEM_START = re.compile(r"rule ['\"]|rules\[|pack\b|the pack|thresholds|\.\.\. and ")
_RULE = re.compile(r"rule (['\"])(?P<id>.*?)\1 \(rules\[\d+\]\)")


@dataclass(frozen=True, slots=True)
class RuleError:
    rule: str | None
    message: str


def rule_errors(message: str) -> list[RuleError]:
    """The items of the policy core's refusal ``message``: one per ``; ``-separated problem,
    each with the id of the rule it names (None when it names no rule)."""
    text = _HINT.sub("", message.strip())
    parts = text.removeprefix(_PREFIX).split("; ") if text.startswith(_PREFIX) else [text]
    items: list[str] = []
    for part in parts:  # a "; " inside one problem's text does not start a new problem
        if items and not _ITEM_START.match(part):
            items[-1] += "; " + part
        else:
            items.append(part)
    out = []
    for item in items:
        found = _RULE.match(item)
        out.append(RuleError(found.group("id") if found else None, item))
    return out


@spec.operation(
    "validateRulePack",
    summary="Validate a rule pack as publishing would; nothing is published (any role of the tenant)",
    tags=["policy"],
    requestBody=spec.body(
        spec.ref("RulePack"),
        {"rules": [{"id": "secrets", "when": {"keywords": ["password"]}, "action": "deny", "weight": 10}]},
        "docs/policy.md; `tenant` defaults to the token's",
    ),
    responses={
        "200": spec.json_response(
            spec.obj(["valid", "constitution_hash"], valid={"const": True}, constitution_hash=spec.STR),
            "Valid",
        ),
        **spec.problems(400, 408, 413, *spec.AUTHED),
        "422": {
            "description": "Invalid; `errors` lists each problem with its rule id (null: the pack itself)",
            "content": {
                "application/problem+json": {
                    "schema": {
                        "allOf": [
                            spec.ref("Problem"),
                            spec.obj(
                                ["errors"],
                                errors={
                                    "type": "array",
                                    "items": spec.obj(
                                        ["rule", "message"], rule=spec.nullable("string"), message=spec.STR
                                    ),
                                },
                            ),
                        ]
                    }
                }
            },
        },
    },
)
async def validate_pack(request: Request) -> Response:
    principal = requires_tenant_role(request)
    ctx: EdgeContext = request.app.state.ctx
    take_or_refuse(ctx.validate_rate, principal.tenant, "validate", "rule pack validation rate")
    document = await read_json(request)
    tenant = document.setdefault("tenant", principal.tenant)
    if tenant != principal.tenant:
        raise AuthError(
            f"the token is for tenant {principal.tenant!r}; it cannot validate a pack for {quoted(tenant)}",
            status=403,
        )
    document.pop("version", None)  # as on publish: versions are assigned then
    try:
        pack = await asyncio.get_running_loop().run_in_executor(COMPILER, load_rule_pack, document)
    except ValidationError as exc:
        errors = rule_errors(str(exc))
        return problem(422, status_title(422), str(exc), errors=[asdict(e) for e in errors])
    return JSONResponse({"valid": True, "constitution_hash": pack.constitution_hash})
