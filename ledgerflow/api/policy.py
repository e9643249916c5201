"""``POST /v1/evaluate`` (dry run) and ``PUT /v1/policy/rules`` (publish a rule pack)."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import JSONResponse

from ledgerflow.api.authentication import principal_of, requires_role
from ledgerflow.api.context import EdgeContext
from ledgerflow.api.problems import read_json
from ledgerflow.errors import AuthError, InfrastructureError, ValidationError
from ledgerflow.policy import Turn, evaluate
from ledgerflow.rulepacks import publish_pack

ROLES = ("user", "assistant", "tool")


async def evaluate_dry_run(request: Request) -> JSONResponse:
    """The decision a turn would get now — the same pure function, nothing written."""
    principal = principal_of(request)
    ctx: EdgeContext = request.app.state.ctx
    body = await read_json(request)
    content = body.get("content")
    if not isinstance(content, str):
        raise ValidationError("content: a string is required")
    role = body.get("role", "user")
    if role not in ROLES:
        raise ValidationError(f"role: must be one of {list(ROLES)}, got {role!r}")
    conversation_id = str(body.get("conversation_id") or "dry-run")
    await ctx.reference.sync()
    pack = ctx.reference.pack_for(principal.tenant)
    training = ctx.reference.training_for(principal.tenant)
    decision = evaluate(Turn("dry-run", principal.tenant, conversation_id, role, content), pack, training)
    result = decision.to_dict()
    result["rule_pack_version"] = result["rule_pack_version"] or 0
    return JSONResponse({"conversation_id": conversation_id, "dry_run": True, **result})


async def put_rules(request: Request) -> JSONResponse:
    """Publish a rule pack for the token's tenant (``*`` only with a ``*`` admin token)."""
    principal = requires_role(request, "admin")
    ctx: EdgeContext = request.app.state.ctx
    document = await read_json(request)
    tenant = document.setdefault("tenant", principal.tenant)
    if tenant != principal.tenant:
        raise AuthError(
            f"the token is for tenant {principal.tenant!r}; it cannot publish a pack for {tenant!r}",
            status=403,
        )
    document.pop("version", None)  # versions are assigned at publish time
    try:
        published = await publish_pack(
            ctx.settings, document, producer_name=f"edge:{principal.sub}", producer=ctx.producer
        )
    except (ValidationError, AuthError):
        raise
    except OSError as exc:
        raise InfrastructureError(f"publishing the rule pack failed: {exc!r}") from None
    return JSONResponse(
        {
            "tenant": published.tenant,
            "version": published.version,
            "constitution_hash": published.constitution_hash,
            "event_id": published.event_id,
            "offset": published.offset,
        },
        status_code=201,
    )
