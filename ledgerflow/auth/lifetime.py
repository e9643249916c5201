"""The longest lifetime a token may have (``LEDGERFLOW_MAX_TOKEN_TTL``), and how to state one.

A bearer token is as good as a password until it expires, so the edge refuses tokens
that would stay valid for longer than this, whoever signed them; ``mint_token`` refuses
to mint one. The lifetime of a token is ``exp - iat``, or ``exp - now`` when it has no
``iat`` (and whichever is longer when ``iat`` lies in the future).
"""

from __future__ import annotations

import os
from collections.abc import Mapping

from ledgerflow.errors import ValidationError

__all__ = ["DEFAULT_MAX_TOKEN_TTL_S", "MAX_TOKEN_TTL_ENV", "max_token_ttl", "span"]

MAX_TOKEN_TTL_ENV = "LEDGERFLOW_MAX_TOKEN_TTL"
DEFAULT_MAX_TOKEN_TTL_S = 24 * 3600.0
"""24 hours."""


def max_token_ttl(env: Mapping[str, str] | None = None) -> float:
    """Seconds from ``LEDGERFLOW_MAX_TOKEN_TTL`` (default 24 h); ValidationError if not a positive number."""
    env = os.environ if env is None else env
    raw = env.get(MAX_TOKEN_TTL_ENV, "").strip()
    if not raw:
        return DEFAULT_MAX_TOKEN_TTL_S
    try:
        value = float(raw)
    except ValueError:
        value = float("nan")
    if not value > 0 or value == float("inf"):
        raise ValidationError(
            f"{MAX_TOKEN_TTL_ENV}={raw!r} is not a positive number of seconds; unset it for 24 h (86400)"
        )
    return value


_MILLENNIUM_S = 1000 * 365 * 86400.0


def span(seconds: float) -> str:
    """A duration for people: ``90 s``, ``86401 s (24 h)``, ``3153600000 s (36500 d)``; past a
    thousand years (``1e+308 s``, an ``exp`` far in the future) in exponent form, not 309 digits."""
    if seconds >= _MILLENNIUM_S:
        return f"{seconds:.3g} s (over 1000 years)"
    exact = f"{seconds:.0f} s"
    if seconds < 120:
        return exact
    if seconds < 7200:
        return f"{exact} ({seconds / 60:.0f} min)"
    if seconds < 3 * 86400:
        return f"{exact} ({seconds / 3600:.0f} h)"
    return f"{exact} ({seconds / 86400:.0f} d)"
