"""``POST /v1/evaluate`` (dry run) and ``PUT /v1/policy/rules`` (publish a rule pack)."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from ledgerflow.api import spec
from ledgerflow.api.authentication import requires_any_role, requires_role
from ledgerflow.api.constitution import header_of
from ledgerflow.api.context import EdgeContext
from ledgerflow.api.faults import DEADLINE_S, bounded
from ledgerflow.api.limits import take_or_refuse
from ledgerflow.api.problems import problem, read_json
from ledgerflow.api.publish_lock import RETRY_AFTER_S, PublicationBusy, publishing
from ledgerflow.auth.roles import ADMIN, PRODUCER
from ledgerflow.contracts.ids import check_id
from ledgerflow.errors import AuthError, InfrastructureError, ValidationError
from ledgerflow.limits import MAX_CONTENT_BYTES
from ledgerflow.policy import Turn, evaluate
from ledgerflow.quoting import quoted
from ledgerflow.rulepacks import Published, publish_pack

ROLES = ("user", "assistant", "tool")
EVALUATE_ROLES = (PRODUCER, ADMIN)
SIGNATURE_HEADER = "Ledgerflow-Signature"
"""Who may ask for a dry run: those who write turns or rule packs (evaluation costs CPU
on the edge; subscribers and auditors read decisions, they do not need to make them)."""


@spec.operation(
    "evaluate",
    summary="Dry run: the decision a turn would get now (nothing is written)",
    tags=["policy"],
    requestBody=spec.body(
        spec.obj(
            ["content"],
            content=spec.STR,
            role={"enum": ["user", "assistant", "tool"]},
            conversation_id=spec.STR,
        ),
        {"content": "Email jane.doe@example.com the invoice", "role": "user"},
    ),
    responses={
        "200": spec.json_response(
            spec.obj(
                ["conversation_id", "dry_run", *spec.DECISION_FIELDS],
                conversation_id=spec.STR,
                dry_run={"const": True},
                training_enabled={"type": "boolean"},
                **spec.DECISION_FIELDS,
            ),
            "The decision",
            spec.CONSTITUTION_HEADERS,
        ),
        **spec.problems(400, 408, 413, *spec.AUTHED, 422),
    },
)
async def evaluate_dry_run(request: Request) -> JSONResponse:
    """The decision a turn would get now — the same pure function, nothing written.

    Needs the producer or admin role; rate-limited per tenant (``EdgeLimits.evaluate_*``,
    429 + Retry-After) on top of the edge's request rate limit.
    """
    principal = requires_any_role(request, *EVALUATE_ROLES)
    ctx: EdgeContext = request.app.state.ctx
    take_or_refuse(ctx.evaluate_rate, principal.tenant, "evaluate", "/v1/evaluate rate")
    body = await read_json(request)
    content = body.get("content")
    if not isinstance(content, str):
        raise ValidationError("content: a string is required")
    if (
        len(content) * 4 > MAX_CONTENT_BYTES
        and len(content.encode("utf-8", "surrogatepass")) > MAX_CONTENT_BYTES
    ):
        raise ValidationError(f"content: over the {MAX_CONTENT_BYTES}-byte limit of a turn")
    role = body.get("role", "user")
    if not isinstance(role, str) or role not in ROLES:
        raise ValidationError(f"role: must be one of {list(ROLES)}, got {quoted(role)}")
    conversation_id = check_id("conversation_id", body.get("conversation_id") or "dry-run")
    await bounded(ctx.reference.sync(), "Kafka reference read")
    pack = ctx.reference.pack_for(principal.tenant)
    training = ctx.reference.training_for(principal.tenant)
    decision = evaluate(Turn("dry-run", principal.tenant, conversation_id, role, content), pack, training)
    result = decision.to_dict()
    result["rule_pack_version"] = result["rule_pack_version"] or 0
    return JSONResponse(
        {"conversation_id": conversation_id, "dry_run": True, **result}, headers=header_of(pack)
    )


@spec.operation(
    "putRules",
    summary="Publish a rule pack for the token's tenant (role admin)",
    tags=["policy"],
    requestBody=spec.body(
        spec.ref("RulePack"),
        {
            "tenant": "acme",
            "description": "example pack",
            "rules": [{"id": "secrets", "when": {"keywords": ["password"]}, "action": "deny", "weight": 10}],
        },
        "docs/policy.md; `version` is assigned on publish",
    ),
    parameters=[
        {
            "name": SIGNATURE_HEADER,
            "in": "header",
            "required": False,
            "schema": spec.STR,
            "description": "Detached JWS of the pack from `ledgerflow policy sign` (docs/policy.md); without "
            "it the edge signs with the dev policy key when it has one, else the pack is refused (422)",
        }
    ],
    responses={
        "201": spec.json_response(
            spec.obj(
                ["tenant", "version", "constitution_hash"],
                tenant=spec.STR,
                version=spec.INT,
                constitution_hash=spec.STR,
                event_id=spec.STR,
                offset=spec.INT,
                signer_kid=spec.STR,
            ),
            "Published",
        ),
        **spec.problems(400, 408, 413, *spec.AUTHED, 409, 422),
    },
)
async def put_rules(request: Request) -> Response:
    """Publish a rule pack for the token's tenant (``*`` only with a ``*`` admin token); at most
    ``LEDGERFLOW_PUBLISH_RATE_PER_TENANT`` a second per tenant (every pack stays on ``policy.rules``
    for ever and is read by every worker and edge at start-up). One publication per tenant at a
    time (``api/publish_lock.py``): each gets its own version; one that waited past the lock's
    bound is a 409 with ``Retry-After``."""
    principal = requires_role(request, "admin")
    ctx: EdgeContext = request.app.state.ctx
    take_or_refuse(ctx.publish_rate, principal.tenant, "publish", "rule pack publication rate")
    try:
        published = await _publish(request, ctx, principal.tenant, principal.sub)
    except PublicationBusy as exc:
        ctx.publish_rate.give_back(principal.tenant)
        return problem(409, "Conflict", str(exc), headers={"Retry-After": str(RETRY_AFTER_S)})
    except BaseException:  # nothing was published: the limit counts publications, not attempts
        ctx.publish_rate.give_back(principal.tenant)
        raise
    return JSONResponse(
        {
            "tenant": published.tenant,
            "version": published.version,
            "constitution_hash": published.constitution_hash,
            "event_id": published.event_id,
            "offset": published.offset,
            "signer_kid": published.signer_kid,
        },
        status_code=201,
    )


async def _publish(request: Request, ctx: EdgeContext, token_tenant: str, sub: str) -> Published:
    """Read, check and publish the request's pack for ``token_tenant``."""
    document = await read_json(request)
    tenant = document.setdefault("tenant", token_tenant)
    if tenant != token_tenant:
        raise AuthError(
            f"the token is for tenant {token_tenant!r}; it cannot publish a pack for {quoted(tenant)}",
            status=403,
        )
    document.pop("version", None)  # versions are assigned at publish time
    try:
        return await publish_pack(
            ctx.settings,
            document,
            producer_name=f"edge:{sub}",
            producer=ctx.producer,
            signature=request.headers.get(SIGNATURE_HEADER),
            hold=lambda tenant: publishing(ctx.redis, ctx.settings.topic_prefix, tenant),
            deadline_s=DEADLINE_S,
        )
    except (ValidationError, AuthError):
        raise
    except TimeoutError:
        raise InfrastructureError(
            f"publishing the rule pack: Kafka did not answer within {DEADLINE_S:g} s"
        ) from None
    except OSError as exc:
        raise InfrastructureError(f"publishing the rule pack failed: {exc!r}") from None
