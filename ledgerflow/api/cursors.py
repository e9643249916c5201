"""SSE cursors: the ``id:`` of every data frame, derived from Kafka positions.

A cursor is the vector of the last delivered offset for every topic-partition a stream
reads, e.g. ``e3:41.d3:40`` ("conversation.events partition 3 up to offset 41, decisions
partition 3 up to offset 40"). Resuming from it means reading each partition from the
next offset on: no gap and no duplicate, whichever edge process serves the reconnect.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

from ledgerflow.errors import ValidationError

TopicPartitionKey = tuple[str, int]  # (topic code, partition)
TOPIC_CODES = {"e": "conversation.events", "d": "policy.decisions"}
_PART = re.compile(r"^([a-z])(\d{1,4}):(-?\d{1,19})$")


def encode(positions: Mapping[TopicPartitionKey, int]) -> str:
    """The cursor for ``positions`` (last delivered offset per topic-partition, -1 = none)."""
    return ".".join(f"{code}{part}:{off}" for (code, part), off in sorted(positions.items()))


def decode(cursor: str) -> dict[TopicPartitionKey, int]:
    """Parse a cursor; a malformed one raises ValidationError (the stream answers ``reset``)."""
    positions: dict[TopicPartitionKey, int] = {}
    if not cursor or len(cursor) > 4096:
        raise ValidationError("cursor is empty or too long")
    for part in cursor.split("."):
        m = _PART.match(part)
        if m is None or m.group(1) not in TOPIC_CODES:
            raise ValidationError(f"cursor part {part[:40]!r} is not <topic><partition>:<offset>")
        offset = int(m.group(3))
        if offset < -1:
            raise ValidationError(f"cursor part {part!r} has a negative offset")
        positions[(m.group(1), int(m.group(2)))] = offset
    return positions
