"""``POST /v1/audit`` (admin): run ``ledgerflow audit`` over the current logs and answer the report.

Sequence:
1. Take the tenant's audit lock in Redis (``SET NX`` with a TTL a little over the deadline): a
   second request of the tenant while one runs (on any edge) is a 409 with ``Retry-After``. Then
   at most ``AUDITS_AT_ONCE`` audits run in one edge process, whatever their tenants (each reads
   every tenant's logs and starts rebuild processes: N tenants' admins would otherwise run N
   full audits side by side on one host): past it, 429 with ``Retry-After``. Turns
   (``api/audit_turns.py``): while another tenant refused so has waited longer, a tenant is
   refused too (429; the one that ran the last audit among them), so no tenant, nor two taking
   turns, keeps the others out by asking again and again.
2. Run ``ledgerflow.audit.cli.run_audit`` in a worker thread with its own event loop (the
   audit is CPU-bound: the edge's loop keeps serving), bounded by ``EdgeTuning.audit_deadline_s``
   (``LEDGERFLOW_AUDIT_DEADLINE_S``, api/tuning.py); past it the audit is cancelled and the answer is a
   503 with ``Retry-After``.
3. Keep the findings of this tenant only: a finding with a record position belongs to the
   tenant of that record (read back from Kafka); one without belongs to the tenant in its
   Redis key's hash tag; a finding naming no tenant and no entity (the read models as a
   whole) is shown to everyone; anything else is dropped.
4. Release the lock (only if it is still ours; ``api/redis_lock.py`` settles one Redis did not
   answer for).
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import time
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition
from starlette.requests import Request
from starlette.responses import JSONResponse

from ledgerflow.api import redis_lock
from ledgerflow.api.authentication import requires_role
from ledgerflow.api.context import EdgeContext
from ledgerflow.api.limits import LimitExceeded
from ledgerflow.api.problems import problem
from ledgerflow.api.spec import AUTHED, INT, NUM, STR, json_response, nullable, obj, operation, problems
from ledgerflow.audit.cli import run_audit
from ledgerflow.audit.report import Finding, Report
from ledgerflow.auth.roles import ADMIN
from ledgerflow.config import Settings
from ledgerflow.contracts import codec
from ledgerflow.errors import DecodeError, InfrastructureError

LOOKUP_DEADLINE_S = 10.0
RETRY_AFTER_S = 5
AUDITS_AT_ONCE = 1
_TAG = re.compile(r"(?:conv|tenant):\{([^}/]*)[}/]")

Position = tuple[str, int, int]


def lock_key(topic_prefix: str, tenant: str) -> str:
    return f"lf:{topic_prefix}audit:running:{{{tenant.replace('}', '%7D')}}}"


def _unescape(value: str) -> str:
    return value.replace("%7D", "}").replace("%7B", "{").replace("%2F", "/").replace("%25", "%")


def tenant_of(finding: Finding, record_tenants: Mapping[Position, str | None]) -> str | None:
    """The tenant a finding concerns; ``""`` when it concerns no tenant nor entity; None: unknown."""
    if finding.partition is not None and finding.offset is not None:
        return record_tenants.get((finding.topic, finding.partition, finding.offset))
    tag = _TAG.search(finding.key)
    if tag is not None:
        return _unescape(tag.group(1))
    return "" if "{" not in finding.key else None


def findings_for(tenant: str, report: Report, record_tenants: Mapping[Position, str | None]) -> list[Finding]:
    return [f for f in report.ordered() if tenant_of(f, record_tenants) in (tenant, "")]


def positions(findings: Iterable[Finding]) -> set[Position]:
    return {
        (f.topic, f.partition, f.offset) for f in findings if f.partition is not None and f.offset is not None
    }


def answer(tenant_findings: list[Finding], report: Report) -> dict[str, Any]:
    """The tenant's answer. ``complete`` is false when the audit counted findings it did not keep
    (past its first ``max_findings``, of any tenant: whose they are is not known), and the answer is
    then never ``ok``: another tenant's forged records must not fill the list and hide this
    tenant's findings. Only that there were such findings is said, not how many (other tenants')."""
    counts: dict[str, int] = {}
    for f in tenant_findings:
        counts[f.kind] = counts.get(f.kind, 0) + 1
    complete = report.total <= len(report.findings)
    return {
        "ok": not tenant_findings and complete,
        "counts": dict(sorted(counts.items())),
        "findings": [
            {
                "kind": f.kind,
                "topic": f.topic,
                "partition": f.partition,
                "offset": f.offset,
                "detail": f.detail,
            }
            for f in tenant_findings
        ],
        "complete": complete,
        "records_read": sum(v for k, v in report.stats.items() if k.endswith("records")),
        "seconds": round(report.seconds, 3),
    }


async def record_tenants(settings: Settings, wanted: set[Position]) -> dict[Position, str | None]:
    """The tenant of the record at each position (None: gone or undecodable)."""
    found: dict[Position, str | None] = dict.fromkeys(wanted)
    if not wanted:
        return found
    consumer = AIOKafkaConsumer(bootstrap_servers=settings.kafka_bootstrap, enable_auto_commit=False)
    await consumer.start()
    try:
        for topic, partition, offset in sorted(wanted):
            tp = TopicPartition(topic, partition)
            consumer.assign([tp])
            consumer.seek(tp, offset)
            got = await consumer.getmany(tp, timeout_ms=2000, max_records=1)
            for rec in got.get(tp, []):
                if rec.offset == offset:
                    with contextlib.suppress(DecodeError):
                        found[(topic, partition, offset)] = codec.decode(rec.value or b"").tenant
    finally:
        await consumer.stop()
    return found


@dataclass(frozen=True, slots=True)
class Outcome:
    report: Report
    record_tenants: dict[Position, str | None]


async def _audit(settings: Settings, deadline_s: float) -> Outcome:
    async with asyncio.timeout(deadline_s):
        report = await run_audit(settings, projections=True, progress=False)
    async with asyncio.timeout(LOOKUP_DEADLINE_S):
        tenants = await record_tenants(settings, positions(report.findings))
    return Outcome(report, tenants)


def _audit_in_thread(settings: Settings, deadline_s: float) -> Outcome:
    return asyncio.run(_audit(settings, deadline_s))


FINDING = obj(
    ["kind", "topic", "partition", "offset", "detail"],
    kind=STR,
    topic=STR,
    partition=nullable("integer"),
    offset=nullable("integer"),
    detail=STR,
)


@operation(
    "runAudit",
    summary="Run the audit over the current logs (role admin; one at a time per tenant and per edge)",
    description="Bounded by a deadline (503 + Retry-After past it); 409 while another audit of the tenant "
    "runs; 429 + Retry-After while this edge runs another tenant's, or while another tenant has waited "
    "longer for its turn. Only this tenant's findings are answered; `complete` is false when the audit only "
    "counted some past the first it keeps, whose tenant is unknown (then never `ok`).",
    tags=["audit"],
    responses={
        "200": json_response(
            obj(
                ["ok", "counts", "findings", "complete", "records_read", "seconds"],
                ok={"type": "boolean"},
                counts={"type": "object", "additionalProperties": INT},
                findings={"type": "array", "items": FINDING},
                complete={
                    "type": "boolean",
                    "description": "False when the audit only counted some findings (any tenant's, past the "
                    "first it keeps): this tenant's logs are then not proven clean",
                },
                records_read=INT,
                seconds=NUM,
            ),
            "The report",
        ),
        **problems(*AUTHED, 409, 429),
    },
)
async def audit(request: Request) -> Any:
    principal = requires_role(request, ADMIN)
    ctx: EdgeContext = request.app.state.ctx
    key, token = lock_key(ctx.settings.topic_prefix, principal.tenant), uuid.uuid4().hex
    deadline_s = ctx.tuning.audit_deadline_s
    ttl_ms = int((deadline_s + LOOKUP_DEADLINE_S + 10) * 1000)
    # Step 1.
    if not await redis_lock.take(ctx.redis, key, token, ttl_ms):
        return problem(
            409,
            "Conflict",
            f"an audit of tenant {principal.tenant!r} is already running; retry when it has finished",
            headers={"Retry-After": str(RETRY_AFTER_S)},
        )
    began = time.perf_counter()
    now, turns = time.monotonic(), ctx.audit_turns
    ctx.audits_running += 1
    try:
        if ctx.audits_running > AUDITS_AT_ONCE:
            turns.refused(principal.tenant, now)
            raise LimitExceeded(
                "audit",
                429,
                f"this edge runs {AUDITS_AT_ONCE} audit at a time (it reads every tenant's logs) and one is "
                "running; retry when it has finished",
                retry_after=RETRY_AFTER_S,
            )
        if turns.yields(principal.tenant, now):
            turns.refused(principal.tenant, now)  # it waits its turn from now (audit_turns.py)
            raise LimitExceeded(
                "audit",
                429,
                "another tenant has waited longer for this edge's audit slot and goes first; retry after it",
                retry_after=RETRY_AFTER_S,
            )
        turns.started(principal.tenant, now)
        # Step 2.
        try:
            outcome = await asyncio.to_thread(_audit_in_thread, ctx.settings, deadline_s)
        except TimeoutError:
            took = time.perf_counter() - began
            raise InfrastructureError(
                f"the audit did not finish within {deadline_s:g} s ({took:.1f} s)"
            ) from None
        # Step 3.
        mine = findings_for(principal.tenant, outcome.report, outcome.record_tenants)
        return JSONResponse(answer(mine, outcome.report))
    finally:
        # Step 4.
        ctx.audits_running -= 1
        await redis_lock.release(ctx.redis, key, token, ttl_ms)
