"""Redis replies as text, checked rather than cast.

redis-py types every reply as ``bytes | str``: ``str`` when the client was built with
``decode_responses=True``, ``bytes`` otherwise. ledgerflow's clients return bytes, but these
helpers accept both, so a reader works with either client and mypy needs no cast.
"""

from __future__ import annotations

from collections.abc import Mapping

Reply = bytes | str


def text(value: Reply) -> str:
    """One reply as text (UTF-8)."""
    return value.decode() if isinstance(value, bytes) else value


def text_or_none(value: Reply | None) -> str | None:
    """A reply that may be absent (``GET`` of a missing key) as text, or None."""
    return None if value is None else text(value)


def text_map(reply: Mapping[Reply, Reply]) -> dict[str, str]:
    """A ``HGETALL`` reply with text fields and values."""
    return {text(field): text(value) for field, value in reply.items()}


def int_map(reply: Mapping[Reply, Reply]) -> dict[str, int]:
    """A ``HGETALL`` reply of integer values (a checkpoint: ``topic:partition`` → offset)."""
    return {text(field): int(value) for field, value in reply.items()}
