"""``GET /v1/training/history?limit=``: the tenant's ``training.audit`` records, newest first,
each with its chain status.

Served from the edge's ``TrainingIndex``: a ``LogTail`` (``kafka/tail.py``) reads only the records
written since its last read and folds each into its tenant's ``TenantChain`` — a
``contracts.chain.ChainVerifier`` walking the chain from its start, the training mode after each
record and the rows of the last ``MAX_LIMIT`` records (no request asks for more). A request first
catches up to the log end at its arrival (bounded by ``READ_DEADLINE_S``: a broker that does not
answer in time is a 503 with ``Retry-After``), then answers from memory: its cost is the records
written since the previous request of anyone, never the tenant's whole partition, so a tenant
piling up records (rejected commands count) does not slow another's history.

A record is the tenant's when its key, ``subject`` and ``tenant`` all name it, in the partition
its key belongs in (``kafka/placement.py``: records elsewhere are kept apart, as before, when only
that partition was read). A record a break points at is ``broken``, every other one ``ok``; a
gap not (yet) filled marks the record after it, as ``verify`` does at the end of its input.
"""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import JSONResponse

from ledgerflow.api import spec
from ledgerflow.api.authentication import requires_tenant_role
from ledgerflow.api.context import EdgeContext
from ledgerflow.api.health import within_deadline
from ledgerflow.api.paging import parse_limit
from ledgerflow.api.training_index import MAX_LIMIT, history

__all__ = ["history", "training_history"]

READ_DEADLINE_S = 5.0
DEFAULT_LIMIT = 100


ROW = spec.obj(
    ["sequence", "type", "occurred_at", "actor", "mode", "expires_at", "hash", "prev_hash", "chain"],
    sequence=spec.nullable("integer"),
    type=spec.STR,
    occurred_at=spec.TIME,
    actor=spec.nullable("string"),
    mode={"enum": ["enabled", "disabled"]},
    expires_at=spec.nullable("string"),
    hash=spec.nullable("string"),
    prev_hash=spec.nullable("string"),
    chain={"enum": ["ok", "broken"]},
)


@spec.operation(
    "getTrainingHistory",
    summary="The tenant's training.audit records, newest first, with each record's chain status",
    tags=["training"],
    parameters=[spec.limit_query(MAX_LIMIT, DEFAULT_LIMIT, "How many records")],
    responses={
        "200": spec.json_response(spec.obj(["items"], items={"type": "array", "items": ROW}), "The records"),
        **spec.problems(*spec.AUTHED, 422),
    },
)
async def training_history(request: Request) -> JSONResponse:
    principal = requires_tenant_role(request)
    limit = parse_limit(request.query_params.get("limit"), default=DEFAULT_LIMIT, maximum=MAX_LIMIT)
    ctx: EdgeContext = request.app.state.ctx
    await within_deadline(ctx.training_log.catch_up(), "kafka", READ_DEADLINE_S)
    return JSONResponse({"items": ctx.training_log.newest(principal.tenant, limit)})
