"""The closed set of roles a token can carry, and how to read them."""

from __future__ import annotations

from collections.abc import Iterable

from ledgerflow.errors import ValidationError

PRODUCER = "producer"
SUBSCRIBER = "subscriber"
ADMIN = "admin"
AUDITOR = "auditor"

ROLES: frozenset[str] = frozenset({PRODUCER, SUBSCRIBER, ADMIN, AUDITOR})


def parse_roles(value: str | Iterable[str]) -> frozenset[str]:
    """Read roles from ``"subscriber,producer"`` or an iterable of names.

    Raises ``ValidationError`` naming every unknown role and the known ones.
    Whitespace around names is ignored; empty names are dropped.
    """
    items = value.split(",") if isinstance(value, str) else list(value)
    names: list[str] = []
    for item in items:
        if not isinstance(item, str):
            raise ValidationError(
                f"roles must be strings, got {type(item).__name__} ({item!r}); "
                f"known roles: {', '.join(sorted(ROLES))}"
            )
        name = item.strip()
        if name:
            names.append(name)
    unknown = sorted(set(names) - ROLES)
    if unknown:
        raise ValidationError(
            f"unknown role(s) {', '.join(unknown)}; known roles: {', '.join(sorted(ROLES))}"
        )
    return frozenset(names)
