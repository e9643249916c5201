"""``GET /v1/training/history?limit=``: the tenant's ``training.audit`` records, newest first,
each with its chain status.

The records are read from the log (bounded by ``READ_DEADLINE_S``: a broker that does not
answer in time is a 503 with ``Retry-After``) and the tenant's chain (key: the tenant) is
verified from its start with ``contracts.chain.verify``: a record a break points at is
``broken``, every other one ``ok``. Only the token's tenant's partition is read (its records are
keyed by it), and only its records are answered.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncGenerator, Sequence
from typing import Any, cast

from starlette.requests import Request
from starlette.responses import JSONResponse

from ledgerflow.api import spec
from ledgerflow.api.authentication import requires_tenant_role
from ledgerflow.api.context import EdgeContext
from ledgerflow.api.health import within_deadline
from ledgerflow.api.paging import parse_limit, rfc3339
from ledgerflow.config import Settings
from ledgerflow.contracts import codec
from ledgerflow.contracts.chain import Located, verify
from ledgerflow.contracts.codec import TOPIC_TYPES
from ledgerflow.contracts.payloads import TrainingDisabled, TrainingEnabled, TrainingExpired, TrainingRejected
from ledgerflow.errors import DecodeError, ValidationError
from ledgerflow.kafka.logs import RawRecord, read_topic
from ledgerflow.topics import TRAINING_AUDIT

READ_DEADLINE_S = 5.0
DEFAULT_LIMIT = 100
MAX_LIMIT = 1000


def history(records: Sequence[Located], tenant: str) -> list[dict[str, Any]]:
    """The rows of ``tenant``'s records (``Located`` in log order, decoded with ``record`` the
    event's JSON form), oldest first; ``mode`` is the state after the record."""
    mine = [r for r in records if r.key == tenant and r.record.get("tenant") == tenant]
    broken = {(b.partition, b.offset) for b in verify(mine)}
    rows, mode = [], "disabled"
    for at in mine:
        record = at.record
        payload = record.get("payload") or {}
        mode = {
            "TrainingEnabled": "enabled",
            "TrainingDisabled": "disabled",
            "TrainingExpired": "disabled",
        }.get(str(record.get("type")), mode)
        expires = payload.get("expires_at")
        rows.append(
            {
                "sequence": record.get("sequence"),
                "type": record.get("type"),
                "occurred_at": record.get("occurred_at"),
                "actor": payload.get("actor"),
                "mode": mode,
                "expires_at": _time(expires) if mode == "enabled" else None,
                "hash": record.get("hash"),
                "prev_hash": record.get("prev_hash"),
                "chain": "broken" if (at.partition, at.offset) in broken else "ok",
            }
        )
    return rows


def _time(value: object) -> str | None:
    """A record's time field (µs, or already RFC 3339 in the record's JSON form) as RFC 3339."""
    if isinstance(value, int) and not isinstance(value, bool):
        return rfc3339(value)
    return value if isinstance(value, str) else None


async def _located(settings: Settings, tenant: str) -> list[Located]:
    out = []
    topic = settings.topic(TRAINING_AUDIT)
    async with contextlib.aclosing(
        # The tenant's partition only: a tenant's outcomes are keyed by it (the training agent's
        # co-partitioned output), so another tenant's records, however many, cost its reads nothing.
        cast(AsyncGenerator[RawRecord, None], read_topic(settings, topic, key=tenant.encode()))
    ) as records:
        async for rec in records:
            if rec.key != tenant.encode():
                continue
            try:
                event = codec.decode(rec.value or b"", allowed_types=TOPIC_TYPES[TRAINING_AUDIT])
                body = event.to_json()
            except (DecodeError, ValidationError):
                continue
            if not isinstance(
                event.payload, TrainingEnabled | TrainingDisabled | TrainingExpired | TrainingRejected
            ):
                continue
            out.append(Located(rec.topic, rec.partition, rec.offset, event.subject, body))
    return out


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
    located = await within_deadline(_located(ctx.settings, principal.tenant), "kafka", READ_DEADLINE_S)
    rows = history(located, principal.tenant)
    return JSONResponse({"items": rows[::-1][:limit]})
