"""What the client hands back: where a published event landed, a followed stream's items."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ledgerflow.contracts.events import Event


@dataclass(frozen=True, slots=True)
class Published:
    """Where an event landed. ``duplicate``: the edge had it already (a retry with the same event id)."""

    event_id: str
    topic: str
    partition: int
    offset: int
    duplicate: bool = False

    @property
    def consistency_token(self) -> str:
        """``partition:offset``, as the edge's answers name a position."""
        return f"{self.partition}:{self.offset}"


@dataclass(frozen=True, slots=True)
class Received:
    """One data frame of a stream: the typed event and the cursor to resume after it."""

    cursor: str
    event: Event


@dataclass(frozen=True, slots=True)
class Notice:
    """A control frame the subscriber handled itself (``reset``, ``reauth``, ``overflow`` …)."""

    kind: str
    data: dict[str, Any]
