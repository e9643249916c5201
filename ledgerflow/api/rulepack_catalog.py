"""``GET /v1/policy/packs`` and ``GET /v1/policy/packs/{version}``: the tenant's published rule packs.

Served from the edge's ``PackIndex``: a ``PackBook`` (``api/pack_book.py``) of every tenant's
publications, kept up to date by a ``LogTail`` (``kafka/tail.py``) that reads only the records of
``policy.rules`` written since its last read — a request first catches up to the log end at its
arrival (so a version acknowledged before it is listed), then answers from memory. Neither the
records nor the checks of another tenant's packs are part of a tenant's request, beyond reading
once the records published since the last request of anyone.

Each version says who signed it (``signer_kid``) or why the agents refuse it (``refused``: the
signature check of docs/policy.md, against the edge's trust store). Verdicts are remembered per
publication with the trust store's key they were reached with, and compile verdicts per
document (``pack_book.COMPILED_VERDICTS``), so a listing checks only versions it has not seen
or whose key changed, in the index's own pool (``pack_index.CHECK_WORKERS`` threads), one job
per tenant at a time; a job given up on by its deadline runs on and the next listing finds
its verdicts. Catching up and checking together are bounded by ``READ_DEADLINE_S``: past it,
or when the broker fails, a 503 with ``Retry-After``. Another tenant's packs are never listed,
and asking for one of their versions is a 404 like a missing one.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncGenerator
from typing import cast

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse

from ledgerflow.api.authentication import requires_tenant_role
from ledgerflow.api.context import EdgeContext
from ledgerflow.api.health import within_deadline
from ledgerflow.api.pack_book import PackVersion, catalog
from ledgerflow.api.paging import parse_limit
from ledgerflow.api.spec import (
    AUTHED,
    INT,
    STR,
    TIME,
    json_response,
    limit_query,
    nullable,
    obj,
    operation,
    problems,
    query,
)
from ledgerflow.config import Settings
from ledgerflow.contracts import codec
from ledgerflow.contracts.codec import TOPIC_TYPES
from ledgerflow.contracts.events import Event
from ledgerflow.digits import ascii_digits
from ledgerflow.errors import DecodeError, ValidationError
from ledgerflow.kafka.logs import RawRecord, read_topic
from ledgerflow.topics import POLICY_RULES

__all__ = ["catalog", "get_pack", "list_packs", "read_policy_events"]

READ_DEADLINE_S = 5.0
DEFAULT_LIMIT = 100
MAX_LIMIT = 1000


async def read_policy_events(settings: Settings) -> list[Event]:
    """Every decodable record of ``policy.rules`` (read by `ledgerflow policy list|diff`)."""
    out = []
    async with contextlib.aclosing(
        cast(AsyncGenerator[RawRecord, None], read_topic(settings, settings.topic(POLICY_RULES)))
    ) as records:
        async for rec in records:
            try:
                out.append(codec.decode(rec.value or b"", allowed_types=TOPIC_TYPES[POLICY_RULES]))
            except DecodeError:
                continue
    return out


async def _catalog(
    request: Request, limit: int | None = None, before: int | None = None, version: int | None = None
) -> tuple[list[PackVersion], int]:
    """The selected versions of the caller's tenant (``PackIndex.versions``), checked, and how many
    versions the tenant has."""
    principal = requires_tenant_role(request)
    ctx: EdgeContext = request.app.state.ctx
    loop = asyncio.get_running_loop()
    deadline = loop.time() + READ_DEADLINE_S
    await within_deadline(ctx.packs.catch_up(), "kafka", READ_DEADLINE_S)
    remaining = max(deadline - loop.time(), 0.001)
    versions = await within_deadline(
        ctx.packs.versions(principal.tenant, ctx.reference.trust.lookup, limit, before, version),
        "rule pack checks",
        remaining,
    )
    return versions, ctx.packs.count(principal.tenant)


def _version(raw: str, name: str) -> int:
    if not ascii_digits(raw, max_digits=9) or int(raw) < 1:
        raise ValidationError(f"{name}: a positive integer is required, got {raw[:20]!r}")
    return int(raw)


SUMMARY = obj(
    ["version", "constitution_hash", "published_by", "published_at", "rules"],
    version=INT,
    constitution_hash=STR,
    published_by=STR,
    published_at=TIME,
    rules=INT,
    signer_kid=nullable("string"),
    refused=nullable("string"),
)


@operation(
    "listRulePacks",
    summary="A page of the tenant's published rule pack versions, newest first (any role of the tenant)",
    description="The newest `limit` versions below `before` (all versions when absent); `count` is how "
    "many versions the tenant has. Only the versions of the page are checked.",
    tags=["policy"],
    parameters=[
        limit_query(MAX_LIMIT, DEFAULT_LIMIT, "Versions in the page"),
        query("before", {"type": "integer", "minimum": 1}, "Only versions below this one (the next page)"),
    ],
    responses={
        "200": json_response(
            obj(
                ["items", "count"],
                items={"type": "array", "items": SUMMARY},
                count={"type": "integer", "description": "The tenant's versions, all of them"},
            ),
            "The versions",
        ),
        **problems(*AUTHED, 422),
    },
)
async def list_packs(request: Request) -> JSONResponse:
    params = request.query_params
    limit = parse_limit(params.get("limit"), default=DEFAULT_LIMIT, maximum=MAX_LIMIT)
    raw_before = params.get("before")
    before = None if raw_before is None else _version(raw_before, "before")
    versions, count = await _catalog(request, limit=limit, before=before)
    return JSONResponse({"items": [p.summary() for p in versions], "count": count})


@operation(
    "getRulePack",
    summary="One published version of the tenant's rule pack, with its document",
    tags=["policy"],
    parameters=[
        {"name": "version", "in": "path", "required": True, "schema": {"type": "integer", "minimum": 1}},
    ],
    responses={
        "200": json_response(
            obj(
                ["version", "constitution_hash", "published_by", "published_at", "pack"],
                version=INT,
                constitution_hash=STR,
                published_by=STR,
                published_at=TIME,
                pack={"$ref": "#/components/schemas/RulePack"},
            ),
            "The version",
        ),
        **problems(*AUTHED, 404, 422),
    },
)
async def get_pack(request: Request) -> JSONResponse:
    version = _version(request.path_params["version"], "version")
    for pack in (await _catalog(request, version=version))[0]:
        if pack.version == version:
            summary = pack.summary()
            del summary["rules"]
            return JSONResponse({**summary, "pack": pack.document})
    raise HTTPException(404, f"rule pack version {version} not found for this tenant")
