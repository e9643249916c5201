"""The rule pack catalog's state: every tenant's publications and what the agents make of each.

A ``PackBook`` is folded record by record from ``policy.rules`` (``add``) and answers one
tenant's versions (``versions``) without looking at any other tenant's. Each publication is
kept as published (its document text, not parsed or compiled) with the number of its rules.
Whether the agents admit it — who signed it, or the refusal's reason code — is the verdict of
``admission`` against the trust store; the book remembers each publication's verdict together with
the trust store's answer for the key its signature names (``key_fingerprint``), so a listing
checks a signature again only when that key changed (rotated, retired, removed) or the
publication is new. Whether a document compiles is remembered per document as well
(``compile_verdict``), so a document is compiled at most once while remembered.
"""

from __future__ import annotations

import hashlib
import threading
from collections import OrderedDict
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import jwt
import orjson
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from prometheus_client import Counter

from ledgerflow.api.paging import rfc3339
from ledgerflow.contracts.events import Event
from ledgerflow.contracts.payloads import RulePackPublished
from ledgerflow.errors import LedgerflowError
from ledgerflow.kafka.reference import admitted_document
from ledgerflow.metrics import EDGE_REGISTRY
from ledgerflow.policy import CheckedPack
from ledgerflow.policy.signing import KeyLookup, PublisherKey, SignatureRefused

COMPILED_VERDICTS = 512
"""Documents whose compile verdict (compiles, or the error) the catalog remembers."""
_verdicts: OrderedDict[str, str | None] = OrderedDict()
_verdicts_lock = threading.Lock()  # verdicts are reached from worker threads
COMPILES = Counter(
    "ledgerflow_edge_pack_compiles_total",
    "Rule pack documents the edge compiled to list them (each at most once while remembered)",
    registry=EDGE_REGISTRY,
)
CHECKS = Counter(
    "ledgerflow_edge_pack_checks_total",
    "Rule pack publications whose admission (shape, hash, signature) the edge checked to list them: "
    "each once, and again only when the trust store's key for its signature changed",
    registry=EDGE_REGISTRY,
)


@dataclass(frozen=True, slots=True)
class PackVersion:
    version: int
    constitution_hash: str
    published_by: str
    published_at: int  # µs
    text: str  # the document as published
    rules: int
    signer_kid: str | None = None
    refused: str | None = None  # the refusal's reason code when the agents do not admit it

    @property
    def document(self) -> dict[str, Any]:
        """The published document (parsed on each access: only one version's is ever shown)."""
        document = orjson.loads(self.text)
        return document if isinstance(document, dict) else {}

    def summary(self) -> dict[str, Any]:
        return {
            "version": self.version,
            "constitution_hash": self.constitution_hash,
            "published_by": self.published_by,
            "published_at": rfc3339(self.published_at),
            "rules": self.rules,
            "signer_kid": self.signer_kid,
            "refused": self.refused,
        }


@dataclass(frozen=True, slots=True)
class Publication:
    """One ``RulePackPublished`` record as the catalog keeps it."""

    payload: RulePackPublished
    published_by: str
    published_at: int
    rules: int
    kid: str | None  # the key its signature names (not verified), None: no readable signature
    digest: str  # of everything its verdict depends on but the trust store


@dataclass(frozen=True, slots=True)
class Verdict:
    fingerprint: str  # the trust store's answer for ``Publication.kid`` when it was reached
    signer_kid: str | None
    refused: str | None


def publication(event: Event) -> Publication | None:
    """What the catalog keeps of a record; None for one it does not list (not a publication, or
    its document is not JSON)."""
    payload = event.payload
    if not isinstance(payload, RulePackPublished):
        return None
    try:
        document = orjson.loads(payload.document)
    except orjson.JSONDecodeError:
        return None
    rules = document.get("rules") if isinstance(document, dict) else None
    inputs = [payload.version, payload.constitution_hash, payload.document, payload.signature]
    return Publication(
        payload,
        event.producer,
        event.occurred_at,
        len(rules) if isinstance(rules, list) else 0,
        _named_kid(payload.signature),
        hashlib.sha256(orjson.dumps(inputs)).hexdigest(),
    )


def _named_kid(signature: str | None) -> str | None:
    """The kid a signature's protected header names; None when ``verify`` refuses it before asking
    the trust store (no signature, no readable header, no kid)."""
    if not signature or not signature.strip():
        return None
    try:
        kid = jwt.get_unverified_header(signature).get("kid")
    except (jwt.PyJWTError, ValueError, TypeError):
        return None
    return kid if isinstance(kid, str) and kid else None


class PackBook:
    """Every tenant's publications by version (a version published twice keeps its later record,
    as the agents do), and the verdict last reached for each."""

    def __init__(self) -> None:
        self._tenants: dict[str, dict[int, Publication]] = {}
        self._verdicts: dict[str, Verdict] = {}  # by Publication.digest

    def add(self, tenant: str, published: Publication) -> None:
        self._tenants.setdefault(tenant, {})[published.payload.version] = published

    def publications(
        self, tenant: str, limit: int | None = None, before: int | None = None, version: int | None = None
    ) -> list[Publication]:
        """``tenant``'s publications, newest version first: only ``version`` when given, else those
        below ``before`` (all when None), the first ``limit`` of them (all when None)."""
        mine = self._tenants.get(tenant, {})
        if version is not None:
            return [mine[version]] if version in mine else []
        numbers = sorted((v for v in mine if before is None or v < before), reverse=True)
        return [mine[v] for v in numbers[:limit]]

    def count(self, tenant: str) -> int:
        """How many versions ``tenant`` has published."""
        return len(self._tenants.get(tenant, {}))

    def check(self, publications: Iterable[Publication], lookup: KeyLookup | None) -> list[PackVersion]:
        """Each publication with its verdict: remembered while the trust store's key for its
        signature is unchanged, else reached again (``admission``) and remembered."""
        fingerprints: dict[str | None, tuple[str, KeyLookup | None]] = {}
        out = []
        for pub in publications:
            if pub.kid not in fingerprints:
                fingerprints[pub.kid] = key_fingerprint(lookup, pub.kid)
            fingerprint, pinned = fingerprints[pub.kid]
            verdict = self._verdicts.get(pub.digest)
            if verdict is None or verdict.fingerprint != fingerprint:
                CHECKS.inc()
                verdict = Verdict(fingerprint, *admission(pub.payload, pinned))
                self._verdicts[pub.digest] = verdict
            p = pub.payload
            out.append(
                PackVersion(
                    p.version,
                    p.constitution_hash,
                    pub.published_by,
                    pub.published_at,
                    p.document,
                    pub.rules,
                    verdict.signer_kid,
                    verdict.refused,
                )
            )
        return out

    def versions(self, tenant: str, lookup: KeyLookup | None) -> list[PackVersion]:
        return self.check(self.publications(tenant), lookup)


def key_fingerprint(lookup: KeyLookup | None, kid: str | None) -> tuple[str, KeyLookup | None]:
    """What the trust store answers for ``kid`` now, as a string that changes when the answer does,
    and a lookup that gives exactly that answer (a verdict is reached with the key it is
    remembered under, even if the store changes meanwhile)."""
    if lookup is None:
        return "no-lookup", None
    if kid is None:  # verify refuses it before asking the store
        return "no-kid", lookup
    try:
        key = lookup(kid)
    except SignatureRefused as exc:
        refusal = exc

        def refusing(_: str) -> PublisherKey | None:
            raise refusal

        return f"refused:{exc.code}", refusing
    if key is None:
        return "untrusted", _only(kid, None)
    try:
        material = key.key.public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo)
    except (AttributeError, TypeError, ValueError):
        material = repr(key.key).encode()
    window = orjson.dumps([key.kid, key.alg, key.not_before, key.not_after])
    return "key:" + hashlib.sha256(window + material).hexdigest(), _only(kid, key)


def _only(kid: str, key: PublisherKey | None) -> Callable[[str], PublisherKey | None]:
    return lambda asked: key if asked == kid else None


def catalog(events: Iterable[Event], tenant: str, lookup: KeyLookup | None = None) -> list[PackVersion]:
    """``tenant``'s versions in ``events``, newest first, each checked as the agents check it
    (``lookup``: the trust store); what ``ledgerflow policy list`` shows."""
    book = PackBook()
    for event in events:
        published = publication(event) if event.tenant == tenant else None
        if published is not None:
            book.add(tenant, published)
    return book.versions(tenant, lookup)


def admission(payload: RulePackPublished, lookup: KeyLookup | None) -> tuple[str | None, str | None]:
    """(signer kid, None) for a pack the agents admit, else (None, the refusal's reason code);
    compiling, only once per document (``compile_verdict``)."""
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
