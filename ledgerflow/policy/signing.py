"""Signed constitutions: a detached JWS over a rule pack's canonical form (pure: no I/O, no clock).

What is signed is the RFC 8785 canonical JSON of the pack *without* its ``version`` — the
exact bytes whose SHA-256 is the constitution hash — so a pack is signed once, before any
version is assigned, and every version publishing it carries the same signature. The JWS
is RFC 7797 "unencoded, detached" (``b64: false``): the compact form is
``<protected header>..<signature>``, the payload being the canonical bytes themselves.

Protected header: ``alg`` (EdDSA or ES256), ``kid`` (the publisher key), ``typ``
(``ledgerflow-constitution+jws``), ``lf-constitution`` (``sha256=<hex>``), ``lf-tenant``,
``iat`` (signing time, seconds). A signature is valid when its key is in the trust store,
``iat`` lies in the key's validity window (``nbf`` ≤ iat < ``exp`` of the JWKS entry: a
retired key keeps verifying what it signed while it was valid, and nothing after), the
header names the hash of the bytes, and the signature verifies.
PyJWT (already a dependency for the tokens) does the JWS; ``rfc8785`` the canonical form.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Mapping
from typing import Any, NamedTuple

import jwt
import rfc8785
from jwt.api_jws import PyJWS

SIGNING_ALGORITHMS: tuple[str, ...] = ("EdDSA", "ES256")
TYPE = "ledgerflow-constitution+jws"
HASH_HEADER = "lf-constitution"
TENANT_HEADER = "lf-tenant"
MAX_SIGNATURE_CHARS = 4096

# Refusal reasons: a closed set (the refusal metric's label values).
UNSIGNED = "unsigned"
MALFORMED = "malformed-signature"
UNKNOWN_KEY = "unknown-key"
RETIRED_KEY = "retired-key"
NOT_YET_VALID = "key-not-yet-valid"
HASH_MISMATCH = "hash-mismatch"
TENANT_MISMATCH = "tenant-mismatch"
BAD_SIGNATURE = "bad-signature"
NO_TRUST_STORE = "no-trust-store"
REASONS: tuple[str, ...] = (
    UNSIGNED,
    MALFORMED,
    UNKNOWN_KEY,
    RETIRED_KEY,
    NOT_YET_VALID,
    HASH_MISMATCH,
    TENANT_MISMATCH,
    BAD_SIGNATURE,
    NO_TRUST_STORE,
)

_JWS = PyJWS(options={"verify_signature": True})


class SignatureRefused(Exception):
    """A pack signature that must not be trusted; ``code`` is one of ``REASONS``."""

    def __init__(self, code: str, detail: str) -> None:
        super().__init__(f"{code}: {detail}")
        self.code = code
        self.detail = detail


class PublisherKey(NamedTuple):
    """A trusted publisher key: its public key object and validity window (seconds, None = open)."""

    kid: str
    key: Any
    alg: str | None = None
    not_before: float | None = None
    not_after: float | None = None


KeyLookup = Callable[[str], PublisherKey | None]
"""The trust store: the key named ``kid`` (with its window), or None when it is not trusted."""


class Signed(NamedTuple):
    """A verified signature: who signed which constitution, when."""

    kid: str
    alg: str
    constitution_hash: str
    signed_at: int


def signed_bytes(document: Mapping[str, Any]) -> bytes:
    """The bytes a signature covers: RFC 8785 canonical JSON of the pack without ``version``."""
    return rfc8785.dumps({key: value for key, value in document.items() if key != "version"})


def hash_header(constitution_hash: str) -> str:
    return f"sha256={constitution_hash}"


def sign(document: Mapping[str, Any], *, private_key: Any, kid: str, alg: str, signed_at: int) -> str:
    """The compact detached JWS of ``document`` (a validated pack document)."""
    if alg not in SIGNING_ALGORITHMS:
        raise ValueError(f"algorithm {alg!r} cannot sign packs; use one of {', '.join(SIGNING_ALGORITHMS)}")
    content = signed_bytes(document)
    headers = {
        "kid": kid,
        "typ": TYPE,
        HASH_HEADER: hash_header(hashlib.sha256(content).hexdigest()),
        TENANT_HEADER: document.get("tenant"),
        "iat": signed_at,
    }
    return _JWS.encode(content, private_key, algorithm=alg, headers=headers, is_payload_detached=True)


def verify(signature: str | None, document: Mapping[str, Any], lookup: KeyLookup | None) -> Signed:
    """Check ``signature`` over ``document``; the signer, or ``SignatureRefused`` naming why not."""
    if signature is None or not signature.strip():
        raise SignatureRefused(UNSIGNED, "the pack carries no signature")
    if lookup is None:
        raise SignatureRefused(
            NO_TRUST_STORE, "no policy trust store is configured (LEDGERFLOW_POLICY_TRUST)"
        )
    header = _header(signature)
    content = signed_bytes(document)
    actual = hashlib.sha256(content).hexdigest()
    if header.get(HASH_HEADER) != hash_header(actual):
        raise SignatureRefused(
            HASH_MISMATCH, f"header names {str(header.get(HASH_HEADER))[:80]!r}, the pack hashes to {actual}"
        )
    if header.get(TENANT_HEADER) != document.get("tenant"):
        raise SignatureRefused(TENANT_MISMATCH, "the signature was made for another tenant's pack")
    kid, alg, signed_at = header["kid"], header["alg"], header["iat"]
    key = lookup(kid)
    if key is None:
        raise SignatureRefused(UNKNOWN_KEY, f"key {kid[:64]!r} is not in the policy trust store")
    if key.alg is not None and key.alg != alg:
        raise SignatureRefused(
            BAD_SIGNATURE, f"key {kid} is declared for {key.alg}, the signature says {alg}"
        )
    if key.not_before is not None and signed_at < key.not_before:
        raise SignatureRefused(NOT_YET_VALID, f"signed at {signed_at}, before key {kid} became valid")
    if key.not_after is not None and signed_at >= key.not_after:
        raise SignatureRefused(RETIRED_KEY, f"signed at {signed_at}, after key {kid} was retired")
    try:
        _JWS.decode_complete(signature, key.key, algorithms=[alg], detached_payload=content)
    except jwt.PyJWTError as exc:
        raise SignatureRefused(
            BAD_SIGNATURE, f"the signature does not verify with key {kid} ({exc})"
        ) from None
    return Signed(kid=kid, alg=alg, constitution_hash=actual, signed_at=signed_at)


def _header(signature: str) -> dict[str, Any]:
    if len(signature) > MAX_SIGNATURE_CHARS:
        raise SignatureRefused(MALFORMED, f"{len(signature)} characters; at most {MAX_SIGNATURE_CHARS}")
    parts = signature.split(".")
    if len(parts) != 3 or parts[1] != "":
        raise SignatureRefused(MALFORMED, "not a compact detached JWS (<header>..<signature>)")
    try:
        header = jwt.get_unverified_header(signature)
    except jwt.PyJWTError as exc:
        raise SignatureRefused(MALFORMED, f"unreadable protected header ({exc})") from None
    if header.get("b64") is not False or header.get("typ") != TYPE:
        raise SignatureRefused(MALFORMED, f"header must have b64=false and typ={TYPE}")
    if header.get("alg") not in SIGNING_ALGORITHMS:
        raise SignatureRefused(MALFORMED, f"algorithm {str(header.get('alg'))[:20]!r} is not accepted")
    kid, signed_at = header.get("kid"), header.get("iat")
    if not isinstance(kid, str) or not kid:
        raise SignatureRefused(MALFORMED, "the header names no kid")
    if isinstance(signed_at, bool) or not isinstance(signed_at, int):
        raise SignatureRefused(MALFORMED, "the header has no integer iat")
    return header
