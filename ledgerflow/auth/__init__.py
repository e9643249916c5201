"""Authentication: dev signing keys, token minting, JWKS-based verification.

Pure of HTTP: the Starlette glue lives in ``ledgerflow.api.authentication``.
"""

from __future__ import annotations

from ledgerflow.auth.devkeys import DevKeys, ensure_dev_keys, prune, rotate
from ledgerflow.auth.jwks import JwksSource
from ledgerflow.auth.principals import Principal
from ledgerflow.auth.roles import ROLES, parse_roles
from ledgerflow.auth.tokens import DEFAULT_AUDIENCE, DEFAULT_ISSUER, mint_token
from ledgerflow.auth.verifier import TokenVerifier

__all__ = [
    "DEFAULT_AUDIENCE",
    "DEFAULT_ISSUER",
    "ROLES",
    "DevKeys",
    "JwksSource",
    "Principal",
    "TokenVerifier",
    "ensure_dev_keys",
    "mint_token",
    "parse_roles",
    "prune",
    "rotate",
]
