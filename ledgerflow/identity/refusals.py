"""Refused authentications counted per window, reason and claimed tenant (pure, bounded).

The reason is one of a closed set (``REASONS``), classified from the refusal; the tenant is
the ``tenant`` claim of the *unverified* token — only when it is an id, else ``-`` — and
at most ``MAX_TENANTS`` distinct tenants per window are kept, the rest counted under
``~other``. So a flood of forged tokens claiming random tenants makes one record of a
bounded size per edge and window, and no token content is ever kept.
"""

from __future__ import annotations

import base64
import json
from collections import Counter

from ledgerflow.auth.exceptions import MissingCredentials
from ledgerflow.contracts.ids import is_id
from ledgerflow.contracts.payloads import AuthRefusals, RefusalCount
from ledgerflow.errors import AuthError, LedgerflowError

REASONS = (
    "missing",
    "malformed",
    "expired",
    "unknown-key",
    "bad-signature",
    "bad-algorithm",
    "wrong-issuer",
    "wrong-audience",
    "invalid-claims",
    "unavailable",
)
NO_TENANT = "-"
OTHER_TENANTS = "~other"
MAX_TENANTS = 32
MAX_CLAIM_BYTES = 16_384

_BY_WORDS = (  # first match wins: the verifier's refusals, most specific words first
    ("signature does not verify", "bad-signature"),
    ("expired", "expired"),
    ("unknown key id", "unknown-key"),
    ("algorithm", "bad-algorithm"),
    ("unsigned tokens", "bad-algorithm"),
    ("has no 'kid'", "bad-algorithm"),
    ("does not fit key", "bad-algorithm"),
    ("issuer", "wrong-issuer"),
    ("audience", "wrong-audience"),
    ("claim", "invalid-claims"),
)


def reason_of(exc: LedgerflowError) -> str:
    """The closed-set reason of an authentication refusal."""
    if isinstance(exc, MissingCredentials):
        return "missing"
    if not isinstance(exc, AuthError):
        return "unavailable"  # the JWKS could not be read: not the client's fault, still counted
    text = str(exc).lower()
    return next((reason for words, reason in _BY_WORDS if words in text), "malformed")


def claimed_tenant(token: str | None) -> str:
    """The unverified ``tenant`` claim when it is an id; ``-`` otherwise. Never raises."""
    if not token or len(token) > MAX_CLAIM_BYTES:
        return NO_TENANT
    parts = token.split(".")
    if len(parts) != 3:
        return NO_TENANT
    try:
        padded = parts[1] + "=" * (-len(parts[1]) % 4)
        claims = json.loads(base64.urlsafe_b64decode(padded))
    except (ValueError, UnicodeDecodeError):
        return NO_TENANT
    tenant = claims.get("tenant") if isinstance(claims, dict) else None
    return tenant if isinstance(tenant, str) and is_id(tenant) else NO_TENANT


class RefusalWindow:
    """Counts of one window; ``drain`` returns them as a record and starts the next window."""

    def __init__(self, max_tenants: int = MAX_TENANTS) -> None:
        self._max = max_tenants
        self._counts: Counter[tuple[str, str]] = Counter()
        self._tenants: set[str] = set()

    def add(self, reason: str, tenant: str) -> None:
        if reason not in REASONS:
            reason = "malformed"
        if tenant not in self._tenants:
            if len(self._tenants) >= self._max:
                tenant = OTHER_TENANTS
            else:
                self._tenants.add(tenant)
        self._counts[(reason, tenant)] += 1

    def __len__(self) -> int:
        return sum(self._counts.values())

    def drain(self, edge: str, window_start: int, window_seconds: int) -> AuthRefusals | None:
        """The window's record (None when nothing was refused); the counts start again."""
        counts, self._counts, self._tenants = self._counts, Counter(), set()
        if not counts:
            return None
        entries = tuple(RefusalCount(r, t, n) for (r, t), n in sorted(counts.items()))
        return AuthRefusals(
            edge=edge, window_start=window_start, window_seconds=window_seconds, counts=entries
        )
