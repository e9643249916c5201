"""Pure helpers for JSON Web Keys: accepted algorithms, thumbprints, key/alg matching."""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Mapping
from typing import Any

from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from jwt.algorithms import ECAlgorithm, OKPAlgorithm, RSAAlgorithm

from ledgerflow.errors import ValidationError

#: The only algorithms the edge accepts (asymmetric; never ``none`` or ``HS*``).
ACCEPTED_ALGORITHMS: tuple[str, ...] = ("RS256", "ES256", "EdDSA")

#: JWK key type and curve each accepted algorithm needs (``None``: any/no curve).
_KEY_SHAPE: dict[str, tuple[str, frozenset[str] | None]] = {
    "RS256": ("RSA", None),
    "ES256": ("EC", frozenset({"P-256"})),
    "EdDSA": ("OKP", frozenset({"Ed25519", "Ed448"})),
}

#: Members that define a public key, per RFC 7638 §3.2 (in lexicographic order).
_THUMBPRINT_MEMBERS: dict[str, tuple[str, ...]] = {
    "RSA": ("e", "kty", "n"),
    "EC": ("crv", "kty", "x", "y"),
    "OKP": ("crv", "kty", "x"),
}

PublicKey = rsa.RSAPublicKey | ec.EllipticCurvePublicKey | ed25519.Ed25519PublicKey


def check_algorithm(alg: str) -> None:
    """Raise ``ValidationError`` unless ``alg`` is one the edge accepts."""
    if alg not in ACCEPTED_ALGORITHMS:
        raise ValidationError(
            f"algorithm '{alg}' is not supported; use one of {', '.join(ACCEPTED_ALGORITHMS)}"
        )


def jwk_thumbprint(jwk: Mapping[str, Any]) -> str:
    """RFC 7638 JWK thumbprint (SHA-256, base64url without padding) of a public key."""
    kty = jwk.get("kty")
    members = _THUMBPRINT_MEMBERS.get(str(kty))
    if members is None:
        raise ValidationError(f"cannot take the thumbprint of a key of type {kty!r}")
    required = {name: jwk[name] for name in members if name in jwk}
    if len(required) != len(members):
        missing = sorted(set(members) - set(required))
        raise ValidationError(f"JWK of type {kty} lacks member(s) {', '.join(missing)}")
    canonical = json.dumps(required, separators=(",", ":"), sort_keys=True).encode()
    digest = hashlib.sha256(canonical).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


def public_jwk(public_key: PublicKey, *, alg: str) -> dict[str, str]:
    """The public JWK of ``public_key`` for signing with ``alg``; ``kid`` is its thumbprint."""
    check_algorithm(alg)
    raw: Mapping[str, Any]
    if isinstance(public_key, rsa.RSAPublicKey):
        raw = RSAAlgorithm.to_jwk(public_key, as_dict=True)
    elif isinstance(public_key, ec.EllipticCurvePublicKey):
        raw = ECAlgorithm.to_jwk(public_key, as_dict=True)
    else:
        raw = OKPAlgorithm.to_jwk(public_key, as_dict=True)
    members = _THUMBPRINT_MEMBERS[str(raw["kty"])]
    jwk = {name: str(raw[name]) for name in members}
    mismatch = key_mismatch(jwk, alg)
    if mismatch is not None:
        raise ValidationError(mismatch)
    jwk.update(kid=jwk_thumbprint(jwk), alg=alg, use="sig")
    return dict(sorted(jwk.items()))


def key_mismatch(jwk: Mapping[str, Any], alg: str) -> str | None:
    """Why ``jwk`` must not verify a token signed with ``alg``, or ``None`` if it may.

    This is the guard against algorithm confusion: the key's type (and curve) decides
    which algorithm it verifies, never the token header alone.
    """
    shape = _KEY_SHAPE.get(alg)
    if shape is None:
        return f"algorithm '{alg}' is not accepted (accepted: {', '.join(ACCEPTED_ALGORITHMS)})"
    kty, curves = shape
    if jwk.get("kty") != kty:
        return f"key type {jwk.get('kty')!r} cannot verify {alg} (needs {kty})"
    if curves is not None and jwk.get("crv") not in curves:
        return f"curve {jwk.get('crv')!r} cannot verify {alg} (needs {', '.join(sorted(curves))})"
    declared = jwk.get("alg")
    if declared is not None and declared != alg:
        return f"key is declared for {declared}, not {alg}"
    use = jwk.get("use")
    if use is not None and use != "sig":
        return f"key is declared for use {use!r}, not signatures"
    return None
