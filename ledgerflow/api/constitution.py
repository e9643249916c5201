"""Policy headers: the constitution in force on every answer, and a client's precondition on it.

``Ledgerflow-Constitution: sha256=<hex>; version=<n>; signer=<kid>`` names the rule pack
(constitution hash, version, the key id that signed it; no ``signer`` for the built-in
default) that governed — or, for an answer without a decision, now governs — the
tenant's turns. A client that reviewed a constitution sends
``Ledgerflow-If-Constitution: sha256=<hex>`` (several hashes comma-separated, like
``If-Match``) on ``POST /v1/conversation/step``: when the tenant's pack in force is another
one, the edge answers 412 problem+json naming both hashes and publishes nothing.
"""

from __future__ import annotations

import re

from ledgerflow.errors import DomainError, ValidationError
from ledgerflow.policy import RulePack

HEADER = "Ledgerflow-Constitution"
PRECONDITION = "Ledgerflow-If-Constitution"
MAX_REQUIRED = 16
_TAG = re.compile(r"^sha256=([0-9a-f]{64})$")


class PreconditionFailed(DomainError):
    """The tenant's constitution in force is not one the client required (412)."""

    def __init__(self, required: tuple[str, ...], in_force: RulePack) -> None:
        super().__init__(
            f"the tenant's constitution in force is sha256={in_force.constitution_hash} "
            f"(version {in_force.version or 0}), not the required "
            + ", ".join(f"sha256={h}" for h in required)
            + ": nothing was published"
        )
        self.required = required
        self.in_force = in_force


def header_value(constitution_hash: str, version: int | None, signer_kid: str | None) -> str:
    value = f"sha256={constitution_hash}; version={version or 0}"
    return f"{value}; signer={signer_kid}" if signer_kid else value


def header_of(pack: RulePack) -> dict[str, str]:
    return {HEADER: header_value(pack.constitution_hash, pack.version, pack.signer_kid)}


def required_hashes(raw: str | None) -> tuple[str, ...]:
    """The hashes of a precondition header (none when absent); ``ValidationError`` (422) if malformed."""
    if raw is None:
        return ()
    tags = [part.strip() for part in raw.split(",")]
    if not 0 < len(tags) <= MAX_REQUIRED:
        raise ValidationError(f"{PRECONDITION}: give 1 to {MAX_REQUIRED} comma-separated sha256=<hex> values")
    hashes = []
    for tag in tags:
        match = _TAG.match(tag)
        if match is None:
            raise ValidationError(
                f"{PRECONDITION}: {tag[:80]!r} is not sha256=<64 lowercase hex> (a constitution hash)"
            )
        hashes.append(match.group(1))
    return tuple(hashes)


def check_precondition(required: tuple[str, ...], in_force: RulePack) -> None:
    """Raise ``PreconditionFailed`` unless ``in_force`` is one of ``required`` (none: no precondition)."""
    if required and in_force.constitution_hash not in required:
        raise PreconditionFailed(required, in_force)
