"""The policy trust store: publisher keys from ``LEDGERFLOW_POLICY_TRUST`` (a JWKS file or URL).

Read through ``JwksSource`` like the token keys, so a rotated key is trusted without a
restart (a file is re-read when it changes, a URL re-fetched after its TTL or on an
unknown kid). Each JWKS entry may carry its validity window as ``nbf``/``exp`` (seconds):
``ledgerflow keys rotate --purpose policy`` writes them.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from ledgerflow.auth.jwks import JwksSource
from ledgerflow.config import Settings
from ledgerflow.errors import InfrastructureError
from ledgerflow.policy.signing import NO_TRUST_STORE, PublisherKey, SignatureRefused

log = logging.getLogger(__name__)


class PolicyTrust:
    """``lookup(kid)`` for ``policy.signing.verify``."""

    def __init__(self, location: str) -> None:
        self.location = location
        self._source = JwksSource(location)

    @classmethod
    def of(cls, settings: Settings) -> PolicyTrust:
        return cls(settings.policy_trust_location)

    def lookup(self, kid: str) -> PublisherKey | None:
        try:
            trusted = self._source.get(kid)
        except InfrastructureError as exc:  # no trust store: every pack is refused, and says why
            raise SignatureRefused(NO_TRUST_STORE, str(exc)) from None
        if trusted is None:
            return None
        return PublisherKey(
            kid=trusted.kid,
            key=trusted.key,
            alg=_text(trusted.jwk, "alg"),
            not_before=_number(trusted.jwk, "nbf"),
            not_after=_number(trusted.jwk, "exp"),
        )


def _text(jwk: Mapping[str, Any], name: str) -> str | None:
    value = jwk.get(name)
    return value if isinstance(value, str) else None


def _number(jwk: Mapping[str, Any], name: str) -> float | None:
    value = jwk.get(name)
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value)
