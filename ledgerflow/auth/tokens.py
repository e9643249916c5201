"""Mint bearer tokens with a dev key (``ledgerflow token`` calls ``mint_token``)."""

from __future__ import annotations

import math
import time
import uuid
from collections.abc import Iterable

import jwt

from ledgerflow.auth.devkeys import DevKeys
from ledgerflow.auth.lifetime import MAX_TOKEN_TTL_ENV, max_token_ttl, span
from ledgerflow.auth.roles import parse_roles
from ledgerflow.contracts.ids import check_id
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
    max_ttl_seconds: float | None = None,
) -> str:
    """A signed JWT for ``sub`` in ``tenant`` with ``roles`` (``"a,b"`` or an iterable).

    Claims: ``iss``, ``aud``, ``sub``, ``tenant``, ``roles`` (sorted list), ``iat``,
    ``nbf``, ``exp`` (= now + ttl) and a random ``jti``; header ``kid`` and ``alg`` of
    the active key. Raises ``ValidationError`` for unknown/empty roles, a subject or
    tenant outside the id grammar (``ledgerflow.contracts.ids``), a non-positive ttl, or
    a ttl over ``max_ttl_seconds`` (default: ``LEDGERFLOW_MAX_TOKEN_TTL``, 24 h), which
    the edge would refuse.
    """
    role_set = parse_roles(roles)
    if not role_set:
        raise ValidationError("a token needs at least one role, e.g. --roles subscriber")
    check_id("sub", sub)
    check_id("tenant", tenant)
    if not ttl_seconds > 0:
        raise ValidationError(f"ttl_seconds must be positive, got {ttl_seconds}")
    maximum = max_token_ttl() if max_ttl_seconds is None else max_ttl_seconds
    if ttl_seconds > maximum:
        raise ValidationError(
            f"ttl {span(ttl_seconds)} exceeds the maximum token lifetime {span(maximum)} "
            f"({MAX_TOKEN_TTL_ENV}); the edge would refuse the token"
        )
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
