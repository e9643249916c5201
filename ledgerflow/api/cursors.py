"""SSE cursors: the ``id:`` of every data frame, derived from Kafka positions.

A cursor is the vector of the offset up to which a stream has been served, for every
topic-partition it reads, e.g. ``d3:40.e3:41`` ("policy.decisions partition 3 served up
to offset 40, conversation.events partition 3 up to offset 41"). "Served up to N" means
every record at or below N that belongs to the stream has been delivered, so offsets of
other tenants' or conversations' records advance the cursor too. Resuming from a cursor
means reading each partition from the next offset on: no gap and no duplicate, whichever
edge process serves the reconnect.

Everything here is pure: the endpoint gives it the ``Last-Event-ID`` header, the
partitions of the stream and the log's first retained offsets.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from ledgerflow.errors import ValidationError

TopicPartitionKey = tuple[str, int]  # (topic code, partition)
Positions = dict[TopicPartitionKey, int]
TOPIC_CODES = {"e": "conversation.events", "d": "policy.decisions"}
MAX_CURSOR_CHARS = 4096
_PART = re.compile(r"^([a-z])(\d{1,4}):(-?\d{1,19})$")


def encode(positions: Mapping[TopicPartitionKey, int]) -> str:
    """The cursor for ``positions`` (last served offset per topic-partition, -1 = none)."""
    return ".".join(f"{code}{part}:{off}" for (code, part), off in sorted(positions.items()))


def decode(cursor: str) -> Positions:
    """Parse a cursor; a malformed one raises ValidationError (the stream answers ``reset``)."""
    positions: Positions = {}
    if not cursor or len(cursor) > MAX_CURSOR_CHARS:
        raise ValidationError(f"cursor is empty or longer than {MAX_CURSOR_CHARS} characters")
    for part in cursor.split("."):
        m = _PART.match(part)
        if m is None or m.group(1) not in TOPIC_CODES:
            raise ValidationError(f"cursor part {part[:40]!r} is not <topic><partition>:<offset>")
        key = (m.group(1), int(m.group(2)))
        if key in positions:
            raise ValidationError(f"cursor names {m.group(1)}{m.group(2)} twice")
        offset = int(m.group(3))
        if offset < -1:
            raise ValidationError(f"cursor part {part!r} has an offset below -1")
        positions[key] = offset
    return positions


@dataclass(frozen=True, slots=True)
class Resume:
    """Where a stream starts, from its ``Last-Event-ID``.

    ``seen`` is the served position to resume after (None: start live, at the hub's read
    position). ``reset`` is the reason the cursor could not be honoured exactly (None when
    it was), and ``restart`` says where the stream restarts instead: ``live`` or
    ``earliest`` (the oldest record the log still keeps).
    """

    seen: Positions | None
    reset: str | None = None
    restart: str = "live"


def resume_from(last_event_id: str, keys: Iterable[TopicPartitionKey]) -> Resume:
    """Parse ``Last-Event-ID`` for a stream reading ``keys``.

    An absent header starts live with no reset. A malformed cursor, or one of another
    stream (different topic-partitions, e.g. another conversation's on another partition,
    or a changed partition count), restarts live with a reset: never a silent skip, never
    an error status that an ``EventSource`` would retry forever with the same header. A
    cursor carries no tenant or conversation: one of another stream reading the same
    partitions (a conversation on the same partition) is taken as positions (docs/sse.md).
    """
    last_event_id = last_event_id.strip()
    if not last_event_id:
        return Resume(None)
    try:
        seen = decode(last_event_id)
    except ValidationError as exc:
        return Resume(None, f"unknown cursor: {exc}")
    wanted = set(keys)
    if set(seen) != wanted:
        return Resume(None, "unknown cursor: it belongs to another stream (other topic-partitions)")
    return Resume(seen)


def clamp_to_retention(resume: Resume, log_starts: Mapping[TopicPartitionKey, int]) -> Resume:
    """A resume whose cursor points below the log's first retained offset restarts there.

    ``log_starts`` maps each topic-partition to its first retained offset. If the record
    after the cursor is gone on any partition, the stream cannot prove it has no gap: it
    restarts at the earliest record of those partitions with a reset saying so.
    """
    if resume.seen is None:
        return resume
    expired = sorted(k for k, off in resume.seen.items() if off + 1 < log_starts.get(k, 0))
    if not expired:
        return resume
    seen = {k: (log_starts[k] - 1 if k in expired else off) for k, off in resume.seen.items()}
    names = ", ".join(f"{c}{p}" for c, p in expired)
    return Resume(seen, f"cursor older than the log's retention on {names}", "earliest")


def ahead_of(resume: Resume, read: Mapping[TopicPartitionKey, int]) -> list[TopicPartitionKey]:
    """Topic-partitions where the cursor is past ``read`` (this edge's last read offsets).

    Only those need the broker's log end to tell a cursor another edge served from one
    that names records which do not exist.
    """
    if resume.seen is None:
        return []
    return sorted(k for k, off in resume.seen.items() if off > read.get(k, -1))


def check_log_end(resume: Resume, log_ends: Mapping[TopicPartitionKey, int]) -> Resume:
    """A cursor served past the end of the log restarts live with a reset.

    ``log_ends`` maps topic-partitions to the next offset the log will write. A cursor
    "served up to N" where the log ends at E <= N names records that do not exist (a
    forged or corrupted cursor, or one of a log that was deleted and re-created):
    resuming from it would silently skip whatever is written at E..N. Like any unknown
    cursor it restarts live, and the client is told.
    """
    if resume.seen is None:
        return resume
    beyond = sorted(k for k, off in resume.seen.items() if k in log_ends and off >= log_ends[k])
    if not beyond:
        return resume
    first = beyond[0]
    names = ", ".join(f"{c}{p}" for c, p in beyond)
    return Resume(
        None,
        f"cursor beyond the log end on {names} ({first[0]}{first[1]}: served up to "
        f"{resume.seen[first]}, but the log holds only offsets below {log_ends[first]})",
        "live",
    )


def served(
    position: Mapping[TopicPartitionKey, int], mark: Mapping[TopicPartitionKey, int] | None
) -> Positions:
    """The cursor after a data frame: ``position`` raised to the hub's ``mark``.

    ``mark`` is the hub's next read offset per topic-partition when it fanned the frame
    out: everything below it that belongs to the stream was queued before the frame, so a
    subscriber holding the frame has been served up to ``mark - 1`` everywhere.
    """
    if mark is None:
        return dict(position)
    return {k: max(off, mark.get(k, 0) - 1) for k, off in position.items()}
