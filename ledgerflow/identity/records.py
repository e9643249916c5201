"""What the identity audit records (pure): key lifecycle changes and dev-token mints.

``key_changes`` compares a key directory's entries before and after an operation
(``ensure``, ``rotate``): a new key is ``created`` (the first) or ``rotated`` (replacing
the active one), a key whose retirement time was just set is ``retired``. Times are UTC
microseconds; the thumbprint is RFC 7638's over the public JWK.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from ledgerflow.auth.devkeys import KeyEntry
from ledgerflow.auth.jwk import jwk_thumbprint
from ledgerflow.contracts.payloads import SigningKeyChanged, TokenMinted

ISSUER_CHAIN_PREFIX = "issuer:"
EDGE_CHAIN_PREFIX = "edge:"


def issuer_chain(issuer: str) -> str:
    """The chain (Kafka key) of one issuer's records: ``issuer:<name>``."""
    return f"{ISSUER_CHAIN_PREFIX}{issuer}"


def micros(seconds: float) -> int:
    return round(seconds * 1_000_000)


def key_changes(
    purpose: str, before: Sequence[KeyEntry], after: Sequence[KeyEntry]
) -> list[SigningKeyChanged]:
    """The lifecycle records an operation on one key directory produced (oldest change first)."""
    old = {entry.kid: entry for entry in before}
    previous = next((entry.kid for entry in before if entry.active), None)
    changes: list[SigningKeyChanged] = []
    for entry in after:
        was = old.get(entry.kid)
        if was is not None and was.retire_after is None and entry.retire_after is not None:
            changes.append(_record("retired", purpose, entry, None))
    for entry in after:
        if entry.kid not in old:
            changes.append(_record("rotated" if previous else "created", purpose, entry, previous))
    return changes


def _record(action: Any, purpose: str, entry: KeyEntry, previous: str | None) -> SigningKeyChanged:
    return SigningKeyChanged(
        action=action,
        purpose=purpose,
        kid=entry.kid,
        alg=entry.alg,
        thumbprint=jwk_thumbprint(entry.jwk),
        not_before=micros(entry.created_at),
        not_after=None if entry.retire_after is None else micros(entry.retire_after),
        previous_kid=previous,
    )


def mint_record(claims: Mapping[str, Any], kid: str) -> TokenMinted:
    """The record of a minted token from its claims: jti, sub, roles, times — never the token."""
    return TokenMinted(
        jti=str(claims["jti"]),
        sub=str(claims["sub"]),
        roles=tuple(sorted(str(r) for r in claims["roles"])),
        kid=kid,
        issued_at=micros(float(claims["iat"])),
        expires_at=micros(float(claims["exp"])),
    )
