"""Paging for the console's list endpoints (pure): ``limit`` and opaque ``cursor`` query values,
and RFC 3339 times.

A cursor names the last item of a page by its sort key (``score``, ``member``) in
URL-safe base64; the next page starts strictly after it, so items that move while a
client pages are neither repeated from the old position nor able to break the walk.
"""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass

from ledgerflow.contracts.ids import is_id
from ledgerflow.digits import ascii_digits
from ledgerflow.errors import ValidationError
from ledgerflow.timefmt import rfc3339

__all__ = [
    "Cursor",
    "parse_limit",
    "parse_position",
    "rfc3339",
]  # rfc3339: the one time format (ledgerflow/timefmt.py)
MAX_CURSOR_CHARS = 1024


MAX_POSITION_DIGITS = 18
"""A position (an index into a list) has at most this many digits: past any list Redis holds."""


def parse_limit(raw: str | None, *, default: int, maximum: int, name: str = "limit") -> int:
    """``limit`` (or ``name``) as an integer in ``1..maximum`` (``default`` when absent); else
    ValidationError (422)."""
    if raw is None:
        return default
    if not ascii_digits(raw):
        raise ValidationError(f"{name}: an integer between 1 and {maximum} is required, got {raw[:20]!r}")
    value = int(raw)
    if not 1 <= value <= maximum:
        shown = raw if len(raw) <= 20 else raw[:17] + "..."  # up to MAX_DIGITS digits: not all of them
        raise ValidationError(f"{name}: must be between 1 and {maximum}, got {shown}")
    return value


def parse_position(raw: str | None, *, name: str) -> int | None:
    """A position query value (a non-negative integer, ASCII digits only), None when absent;
    else ValidationError (422)."""
    if raw is None:
        return None
    if not ascii_digits(raw, MAX_POSITION_DIGITS):
        raise ValidationError(f"{name}: a non-negative integer is required, got {raw[:20]!r}")
    return int(raw)


@dataclass(frozen=True, slots=True)
class Cursor:
    """The sort key of the last item of a page: its score and its member (an id)."""

    score: int
    member: str

    def encode(self) -> str:
        return base64.urlsafe_b64encode(f"{self.score}:{self.member}".encode()).decode().rstrip("=")

    @classmethod
    def decode(cls, text: str) -> Cursor:
        """The cursor a previous page answered; ValidationError (422) for anything else."""
        bad = ValidationError("cursor: not a cursor this endpoint answered (pass `next` back unchanged)")
        if not text or len(text) > MAX_CURSOR_CHARS or not text.isascii():
            raise bad
        try:
            raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4)).decode()
        except (binascii.Error, ValueError):
            raise bad from None
        score, sep, member = raw.partition(":")
        if not sep or not ascii_digits(score) or not is_id(member):
            raise bad
        return cls(int(score), member)
