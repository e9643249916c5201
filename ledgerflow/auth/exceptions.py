"""Auth-specific refinements of ``ledgerflow.errors.AuthError``."""

from __future__ import annotations

from ledgerflow.errors import AuthError


class MissingCredentials(AuthError):
    """No bearer token was presented (401 without an ``error`` code, RFC 6750 §3.1)."""

    def __init__(self, detail: str) -> None:
        super().__init__(detail, status=401)
