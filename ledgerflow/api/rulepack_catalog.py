"""``GET /v1/policy/packs`` and ``GET /v1/policy/packs/{version}``: the tenant's published rule packs.

Read from ``policy.rules`` (small: one record per publication, every version kept), bounded
by ``READ_DEADLINE_S``; each version says who signed it (``signer_kid``) or why the agents
refuse it (``refused``: the signature check of docs/policy.md, against the edge's trust
store); a broker that does not answer in time is a 503 with ``Retry-After``. Shape, hash and
signature are checked for every listed version without compiling it; whether its patterns
compile is remembered per document (``COMPILED_VERDICTS``, most recent), so a listing
compiles a document at most once, in a worker thread, not on every read. Another
tenant's packs are never listed, and asking for one of their versions is a 404 like a
missing one.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import threading
from collections import OrderedDict
from collections.abc import AsyncGenerator, Iterable
from dataclasses import dataclass
from typing import Any, cast

import orjson
from prometheus_client import Counter
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse

from ledgerflow.api.authentication import requires_tenant_role
from ledgerflow.api.context import EdgeContext
from ledgerflow.api.health import within_deadline
from ledgerflow.api.paging import rfc3339
from ledgerflow.api.spec import AUTHED, INT, STR, TIME, json_response, nullable, obj, operation, problems
from ledgerflow.config import Settings
from ledgerflow.contracts import codec
from ledgerflow.contracts.codec import TOPIC_TYPES
from ledgerflow.contracts.events import Event
from ledgerflow.contracts.payloads import RulePackPublished
from ledgerflow.digits import ascii_digits
from ledgerflow.errors import DecodeError, LedgerflowError, ValidationError
from ledgerflow.kafka.logs import RawRecord, read_topic
from ledgerflow.kafka.reference import admitted_document
from ledgerflow.metrics import EDGE_REGISTRY
from ledgerflow.policy import CheckedPack
from ledgerflow.policy.signing import KeyLookup, SignatureRefused
from ledgerflow.topics import POLICY_RULES

READ_DEADLINE_S = 5.0
COMPILED_VERDICTS = 512
"""Documents whose compile verdict (compiles, or the error) the catalog remembers."""
_verdicts: OrderedDict[str, str | None] = OrderedDict()
_verdicts_lock = threading.Lock()  # listings run in worker threads
COMPILES = Counter(
    "ledgerflow_edge_pack_compiles_total",
    "Rule pack documents the edge compiled to list them (each at most once while remembered)",
    registry=EDGE_REGISTRY,
)


@dataclass(frozen=True, slots=True)
class PackVersion:
    version: int
    constitution_hash: str
    published_by: str
    published_at: int  # µs
    document: dict[str, Any]
    signer_kid: str | None = None
    refused: str | None = None  # the refusal's reason code when the agents do not admit it

    def summary(self) -> dict[str, Any]:
        return {
            "version": self.version,
            "constitution_hash": self.constitution_hash,
            "published_by": self.published_by,
            "published_at": rfc3339(self.published_at),
            "rules": len(self.document.get("rules", [])),
            "signer_kid": self.signer_kid,
            "refused": self.refused,
        }


def catalog(events: Iterable[Event], tenant: str, lookup: KeyLookup | None = None) -> list[PackVersion]:
    """``tenant``'s versions, newest first; a version published twice keeps its later record
    (as the agents do). Each is checked as the agents check it (``lookup``: the trust store)."""
    found: dict[int, PackVersion] = {}
    for event in events:
        payload = event.payload
        if event.tenant != tenant or not isinstance(payload, RulePackPublished):
            continue
        try:
            document = orjson.loads(payload.document)
        except orjson.JSONDecodeError:
            continue
        signer, refused = admission(payload, lookup)
        found[payload.version] = PackVersion(
            payload.version,
            payload.constitution_hash,
            event.producer,
            event.occurred_at,
            document,
            signer,
            refused,
        )
    return [found[v] for v in sorted(found, reverse=True)]


def admission(payload: RulePackPublished, lookup: KeyLookup | None) -> tuple[str | None, str | None]:
    """(signer kid, None) for a pack the agents admit, else (None, the refusal's reason code).

    The signature is checked every time (the trust store changes); compiling, only once per
    document (``compile_verdict``)."""
    try:
        checked, signed = admitted_document(payload, lookup)
    except SignatureRefused as exc:
        return None, exc.code
    except LedgerflowError:
        return None, "invalid-rule-pack"
    if compile_verdict(checked) is not None:
        return None, "invalid-rule-pack"
    return signed.kid, None


def compile_verdict(checked: CheckedPack) -> str | None:
    """Why ``checked`` does not compile, or None; remembered for the last ``COMPILED_VERDICTS``
    documents (by the SHA-256 of their canonical JSON)."""
    key = hashlib.sha256(checked.canonical).hexdigest()
    with _verdicts_lock:
        if key in _verdicts:
            _verdicts.move_to_end(key)
            return _verdicts[key]
    COMPILES.inc()
    try:
        checked.compile()
        verdict = None
    except LedgerflowError as exc:
        verdict = str(exc)
    with _verdicts_lock:
        _verdicts[key] = verdict
        while len(_verdicts) > COMPILED_VERDICTS:
            _verdicts.popitem(last=False)
    return verdict


async def read_policy_events(settings: Settings) -> list[Event]:
    """Every decodable record of ``policy.rules`` (also read by `ledgerflow policy list|diff`)."""
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


async def _catalog(request: Request) -> list[PackVersion]:
    principal = requires_tenant_role(request)
    ctx: EdgeContext = request.app.state.ctx
    events = await within_deadline(read_policy_events(ctx.settings), "kafka", READ_DEADLINE_S)
    return await asyncio.to_thread(catalog, events, principal.tenant, ctx.reference.trust.lookup)


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
    summary="The tenant's published rule pack versions, newest first (any role of the tenant)",
    tags=["policy"],
    responses={
        "200": json_response(obj(["items"], items={"type": "array", "items": SUMMARY}), "The versions"),
        **problems(*AUTHED),
    },
)
async def list_packs(request: Request) -> JSONResponse:
    return JSONResponse({"items": [p.summary() for p in await _catalog(request)]})


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
    raw = request.path_params["version"]
    if not ascii_digits(raw, max_digits=9) or int(raw) < 1:
        raise ValidationError(f"version: a positive integer is required, got {raw[:20]!r}")
    version = int(raw)
    for pack in await _catalog(request):
        if pack.version == version:
            summary = pack.summary()
            del summary["rules"]
            return JSONResponse({**summary, "pack": pack.document})
    raise HTTPException(404, f"rule pack version {version} not found for this tenant")
