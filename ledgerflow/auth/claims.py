"""Check the claims of a token whose signature already verified (pure)."""

from __future__ import annotations

import math
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from ledgerflow.auth.lifetime import DEFAULT_MAX_TOKEN_TTL_S, MAX_TOKEN_TTL_ENV, span
from ledgerflow.auth.principals import Principal
from ledgerflow.auth.roles import ROLES
from ledgerflow.contracts.ids import ID_CHARACTERS, MAX_ID_LENGTH, is_id
from ledgerflow.errors import AuthError

_NEW_TOKEN = "fetch a new token"


def principal_from_claims(
    claims: Mapping[str, Any],
    *,
    kid: str,
    issuer: str,
    audience: str,
    now: float,
    leeway: float,
    max_lifetime: float = DEFAULT_MAX_TOKEN_TTL_S,
) -> Principal:
    """Check ``iss``, ``aud``, ``exp``, ``nbf``, the lifetime and the ledgerflow claims; build a Principal.

    ``exp`` is required; ``nbf`` is checked when present; both allow ``leeway`` seconds
    of clock skew. The token's lifetime (``exp - iat``, or ``exp - now`` without ``iat``)
    must not exceed ``max_lifetime`` (+ leeway). ``sub`` and ``tenant`` must be ids
    (``ledgerflow.contracts.ids``: they end up in keys, log records and headers);
    ``roles`` a list of known role names. Every refusal is ``AuthError`` with status 401.
    """
    iss = claims.get("iss")
    if iss != issuer:
        raise AuthError(f"token issuer {_short(iss)} is not trusted (expected {issuer!r})")
    _check_audience(claims.get("aud"), audience)
    exp = _numeric_date(claims, "exp", required=True)
    assert exp is not None
    if now >= exp + leeway:
        raise AuthError(f"token expired at {_iso(exp)} (now {_iso(now)}, leeway {leeway:g}s): {_NEW_TOKEN}")
    nbf = _numeric_date(claims, "nbf", required=False)
    if nbf is not None and now + leeway < nbf:
        raise AuthError(
            f"token is not valid before {_iso(nbf)} (now {_iso(now)}, leeway {leeway:g}s): "
            "check the clocks of the issuer and this host"
        )
    _check_lifetime(exp, _numeric_date(claims, "iat", required=False), now, leeway, max_lifetime)
    sub = _id(claims, "sub")
    tenant = _id(claims, "tenant")
    roles = _roles(claims)
    jti = claims.get("jti")
    return Principal(
        sub=sub,
        tenant=tenant,
        roles=roles,
        expires_at=float(exp),
        kid=kid,
        token_id=jti if isinstance(jti, str) else None,
    )


def _check_audience(aud: object, audience: str) -> None:
    if isinstance(aud, str):
        ok = aud == audience
    elif isinstance(aud, list):
        ok = audience in aud
    else:
        ok = False
    if not ok:
        raise AuthError(f"token audience {_short(aud)} does not include {audience!r}")


def _numeric_date(claims: Mapping[str, Any], name: str, *, required: bool) -> float | None:
    value = claims.get(name)
    if value is None:
        if required:
            raise AuthError(f"token has no '{name}' claim: {_NEW_TOKEN}")
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise AuthError(f"token claim '{name}' must be a number of seconds, got {_short(value)}")
    try:
        seconds = float(value)
    except OverflowError:  # an integer of hundreds of digits
        seconds = math.inf
    if not math.isfinite(seconds):  # NaN passes every comparison: a token that would never expire
        raise AuthError(f"token claim '{name}' must be a finite number of seconds, got {_short(value)}")
    return seconds


def _check_lifetime(exp: float, iat: float | None, now: float, leeway: float, maximum: float) -> None:
    # An ``iat`` in the future must not stretch the window: take the longer of both spans.
    lifetime = exp - now if iat is None else max(exp - iat, exp - now)
    if lifetime > maximum + leeway:
        raise AuthError(
            f"token lifetime {span(lifetime)} exceeds the maximum {span(maximum)} "
            f"({MAX_TOKEN_TTL_ENV}): fetch a token that expires sooner"
        )


def _id(claims: Mapping[str, Any], name: str) -> str:
    value = claims.get(name)
    if isinstance(value, str) and is_id(value):
        return value
    if not isinstance(value, str) or not value:
        raise AuthError(f"token claim '{name}' must be a non-empty string, got {_short(value)}")
    if len(value) > MAX_ID_LENGTH:
        raise AuthError(f"token claim '{name}' is {len(value)} characters long; at most {MAX_ID_LENGTH}")
    raise AuthError(f"token claim '{name}' {_short(value)} is not an id: use {ID_CHARACTERS}")


def _short(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 42 else text[:39] + "..."


def _roles(claims: Mapping[str, Any]) -> frozenset[str]:
    value = claims.get("roles")
    if not isinstance(value, list) or not all(isinstance(role, str) for role in value):
        raise AuthError(
            f"token claim 'roles' must be a list of role names, got {_short(value)}: {_NEW_TOKEN}"
        )
    unknown = sorted(set(value) - ROLES)
    if unknown:
        # Each quoted (repr): a role name is the signer's text, and a detail is one line.
        named = ", ".join(_short(role) for role in unknown[:3]) + (", ..." if len(unknown) > 3 else "")
        raise AuthError(f"token carries unknown role(s) {named} (known: {', '.join(sorted(ROLES))})")
    return frozenset(value)


def _iso(timestamp: float) -> str:
    try:
        moment = datetime.fromtimestamp(timestamp, UTC)
    except (OverflowError, OSError, ValueError):
        return f"{timestamp:g}"
    return moment.isoformat(timespec="seconds").replace("+00:00", "Z")
