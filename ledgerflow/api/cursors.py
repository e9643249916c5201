"""SSE cursors: the ``id:`` of every data frame, derived from Kafka positions.

A cursor is the vector of the offset up to which a stream has been served, for every
topic-partition it reads, e.g. ``d3:40.e3:41`` ("policy.decisions partition 3 served up
to offset 40, conversation.events partition 3 up to offset 41"). "Served up to N" means
every record at or below N that belongs to the stream has been delivered, so offsets of
other tenants' or conversations' records advance the cursor too. Resuming from a cursor
means reading each partition from the next offset on: no gap and no duplicate, whichever
edge process serves the reconnect.

A cursor the edge writes starts with its stream's tag (``stream_tag``: a short hash of the
topics' generation — their prefix —, the tenant and the conversation), e.g.
``s4f0c2a9b11de.d3:40.e3:41``: a cursor of another stream that reads the same partitions (another
conversation on the same partition, the tenant stream, another generation of topics after
``ledgerflow migrate``) restarts with a reset instead of being taken as positions. A cursor
without a tag (written before tags) is still taken as positions.

Everything here is pure: the endpoint gives it the ``Last-Event-ID`` header, the
partitions of the stream and the log's first retained offsets.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from ledgerflow.errors import ValidationError

TopicPartitionKey = tuple[str, int]  # (topic code, partition)
Positions = dict[TopicPartitionKey, int]
TOPIC_CODES = {"e": "conversation.events", "d": "policy.decisions"}
MAX_CURSOR_CHARS = 4096
_PART = re.compile(r"^([a-z])(\d{1,4}):(-?\d{1,19})$")
_TAG = re.compile(r"^s[0-9a-f]{12}$")


def stream_tag(topic_prefix: str, tenant: str, conversation_id: str | None) -> str:
    """The tag of the stream of ``tenant`` (its ``conversation_id``, or None for the tenant
    stream) over the topics under ``topic_prefix``: ``s`` and 12 hex digits."""
    h = hashlib.blake2b(digest_size=6)
    for part in (topic_prefix, tenant, "" if conversation_id is None else f"c{conversation_id}"):
        raw = part.encode("utf-8", "surrogatepass")
        h.update(len(raw).to_bytes(4, "big") + raw)
    return "s" + h.hexdigest()


def encode(positions: Mapping[TopicPartitionKey, int], stream: str | None = None) -> str:
    """The cursor for ``positions`` (last served offset per topic-partition, -1 = none), after
    ``stream``'s tag when given (``stream_tag``)."""
    body = ".".join(f"{code}{part}:{off}" for (code, part), off in sorted(positions.items()))
    return f"{stream}.{body}" if stream else body


def tag_of(cursor: str) -> str | None:
    """The stream tag a cursor starts with, None if it has none (a cursor from before tags)."""
    head = cursor.split(".", 1)[0]
    return head if _TAG.match(head) else None


def decode(cursor: str) -> Positions:
    """Parse a cursor's positions (its stream tag, if any, is ``tag_of``'s); a malformed one
    raises ValidationError (the stream answers ``reset``)."""
    positions: Positions = {}
    if not cursor or len(cursor) > MAX_CURSOR_CHARS:
        raise ValidationError(f"cursor is empty or longer than {MAX_CURSOR_CHARS} characters")
    parts = cursor.split(".")
    if tag_of(cursor) is not None:
        parts = parts[1:]
    for part in parts:
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


def resume_from(last_event_id: str, keys: Iterable[TopicPartitionKey], stream: str | None = None) -> Resume:
    """Parse ``Last-Event-ID`` for the stream tagged ``stream`` reading ``keys``.

    An absent header starts live with no reset. A malformed cursor, or one of another
    stream (another tag; or, for a cursor without one, different topic-partitions, e.g.
    another conversation's on another partition, or a changed partition count), restarts
    live with a reset: never a silent skip, never an error status that an ``EventSource``
    would retry forever with the same header. A cursor without a tag (from before tags) of
    another stream reading the same partitions is taken as positions (docs/sse.md).
    """
    last_event_id = last_event_id.strip()
    if not last_event_id:
        return Resume(None)
    try:
        seen = decode(last_event_id)
    except ValidationError as exc:
        return Resume(None, f"unknown cursor: {exc}")
    tag = tag_of(last_event_id)
    if tag is not None and stream is not None and tag != stream:
        return Resume(
            None,
            "unknown cursor: it belongs to another stream (another conversation or tenant, or "
            "another generation of topics)",
        )
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
