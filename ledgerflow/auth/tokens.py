"""Mint bearer tokens with a dev key (``ledgerflow token`` calls ``mint_token``)."""

from __future__ import annotations

import math
import time
import uuid
from collections.abc import Iterable

import jwt

from ledgerflow.auth.devkeys import DevKeys
from ledgerflow.auth.roles import parse_roles
from ledgerflow.errors import ValidationError

DEFAULT_ISSUER = "ledgerflow-dev"
DEFAULT_AUDIENCE = "ledgerflow"


def mint_token(
    keys: DevKeys,
    *,
    sub: str,
    tenant: str,
    roles: str | Iterable[str],
    ttl_seconds: float = 3600,
    issuer: str = DEFAULT_ISSUER,
    audience: str = DEFAULT_AUDIENCE,
    now: float | None = None,
) -> str:
    """A signed JWT for ``sub`` in ``tenant`` with ``roles`` (``"a,b"`` or an iterable).

    Claims: ``iss``, ``aud``, ``sub``, ``tenant``, ``roles`` (sorted list), ``iat``,
    ``nbf``, ``exp`` (= now + ttl) and a random ``jti``; header ``kid`` and ``alg`` of
    the active key. Raises ``ValidationError`` for unknown/empty roles, an empty
    subject or tenant, or a non-positive ttl.
    """
    role_set = parse_roles(roles)
    if not role_set:
        raise ValidationError("a token needs at least one role, e.g. --roles subscriber")
    _require_text("sub", sub)
    _require_text("tenant", tenant)
    if not ttl_seconds > 0:
        raise ValidationError(f"ttl_seconds must be positive, got {ttl_seconds}")
    issued = int(time.time() if now is None else now)
    claims = {
        "iss": issuer,
        "aud": audience,
        "sub": sub,
        "tenant": tenant,
        "roles": sorted(role_set),
        "iat": issued,
        "nbf": issued,
        "exp": issued + math.ceil(ttl_seconds),
        "jti": str(uuid.uuid4()),
    }
    return jwt.encode(
        claims,
        keys.private_key_pem,
        algorithm=keys.alg,
        headers={"kid": keys.kid, "typ": "JWT"},
    )


def _require_text(name: str, value: object) -> None:
    if not isinstance(value, str) or not value.strip() or value != value.strip():
        raise ValidationError(f"{name} must be a non-empty string without surrounding spaces, got {value!r}")
