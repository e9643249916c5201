"""Decode once on the hot path: what one agent of a worker decoded or built, the other reuses.

- ``decode``: a ``conversation.events`` record is decoded by whichever agent (policy or
  projector) reaches it first in a batch; the other gets the same ``Event`` (records are
  frozen). The batch loop calls ``batch_done`` after each batch, so nothing outlives it.
- ``wrote`` / ``take_written``: the decisions this worker's policy agent just wrote
  (acknowledged, with their offsets). When the projector reads one back from
  ``policy.decisions`` it takes the decision the policy agent built instead of decoding it
  and re-hashing it — but only when the record read holds the very bytes written, so what is
  projected is still exactly what the log says (a rebuild from the log projects the same).
  Kept for the last ``WRITTEN_LIMIT`` decisions: one this worker's projector never reads
  (its partition is owned by another member) ages out.
Both are only shortcuts: a miss decodes and verifies the record as before.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Any

from ledgerflow.contracts.events import Event
from ledgerflow.contracts.inputs import decode_input

WRITTEN_LIMIT = 20_000
"""Decisions kept for the projector (~1.3 KB each: ~26 MB when full). Live, it reads its own
decisions back within a batch or two; draining a backlog, it falls behind them, since its fetches
are mostly the backlog's turns: with 5,000 kept, 9,000 of a 20,000-turn backlog's 14,292
decisions had aged out and were decoded and verified again; with 20,000, none."""

Position = tuple[str, int, int]  # topic, partition, offset


class SharedDecodes:
    def __init__(self, written_limit: int = WRITTEN_LIMIT) -> None:
        self._batch: dict[Position, tuple[bytes | None, Event]] = {}
        self._written: OrderedDict[Position, tuple[bytes, Event]] = OrderedDict()
        self._written_limit = written_limit
        self.hits = 0

    def decode(self, msg: Any, base_topic: str) -> Event:
        """``decode_input`` of ``msg`` (DecodeError as it raises), at most once per batch."""
        at = (msg.topic, msg.partition, msg.offset)
        found = self._batch.get(at)
        if found is not None and found[0] is msg.value:
            self.hits += 1
            return found[1]
        event = decode_input(msg.value, msg.key, base_topic)
        self._batch[at] = (msg.value, event)
        return event

    def batch_done(self) -> None:
        self._batch.clear()

    def wrote(self, topic: str, partition: int, offset: int, value: bytes, event: Event) -> None:
        written = self._written
        written[(topic, partition, offset)] = (value, event)
        while len(written) > self._written_limit:
            written.popitem(last=False)

    def take_written(self, msg: Any) -> Event | None:
        """The decision written at ``msg``'s position if ``msg`` holds exactly its bytes, else None."""
        found = self._written.pop((msg.topic, msg.partition, msg.offset), None)
        if found is None or found[0] != msg.value:
            return None
        self.hits += 1
        return found[1]

    def forget(self, partitions: set[tuple[str, int]]) -> None:
        """Drop what was kept for ``partitions`` (revoked: another member writes them now)."""
        for at in [at for at in self._written if (at[0], at[1]) in partitions]:
            del self._written[at]
