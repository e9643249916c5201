"""The one id grammar: tenants, conversation ids (subjects), turn ids and other material
that ends up in a URL path, an HTTP header or a Redis key.

An id is 1 to ``MAX_ID_LENGTH`` characters of ASCII letters, digits and ``. _ - : @``,
starting with a letter or a digit. No ``/`` (it would split a URL path), no braces (Redis
hash tags), no whitespace or control characters (headers, logs), no non-ASCII (headers).
Whatever passes can be written, used as a Redis key component and read back through the
API unchanged.

Enforced at token verification (tenant), at the edge before anything is published, and
in the agents (a record whose ids break it is dead-lettered).
"""

from __future__ import annotations

import re

from ledgerflow.errors import ValidationError

__all__ = ["ID_CHARACTERS", "ID_PATTERN", "MAX_ID_LENGTH", "check_id", "is_id"]

MAX_ID_LENGTH = 128
"""Longest id, in characters (= bytes: the grammar is ASCII)."""
ID_CHARACTERS = "ASCII letters, digits and . _ - : @ (starting with a letter or digit)"
"""The grammar in words, for error messages and docs."""

ID_PATTERN = re.compile(rf"[A-Za-z0-9][A-Za-z0-9._:@-]{{0,{MAX_ID_LENGTH - 1}}}")
"""The grammar as a regex: ``ID_PATTERN.fullmatch(text)`` (text must be a str) for hot loops."""


def is_id(value: object) -> bool:
    """True when ``value`` is a str in the id grammar."""
    return isinstance(value, str) and ID_PATTERN.fullmatch(value) is not None


def check_id(field: str, value: object) -> str:
    """Return ``value`` if it is an id, else raise ValidationError naming ``field``."""
    if is_id(value):
        return value  # type: ignore[return-value]
    if not isinstance(value, str):
        raise ValidationError(f"{field}: expected a string id, got {type(value).__name__}")
    if not value:
        raise ValidationError(f"{field}: must not be empty")
    if len(value) > MAX_ID_LENGTH:
        raise ValidationError(f"{field}: {len(value)} characters; at most {MAX_ID_LENGTH}")
    raise ValidationError(f"{field}: {value[:40]!r} is not an id; use {ID_CHARACTERS}")
