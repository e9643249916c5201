"""Comparing two read-model key spaces entity by entity (pure: no I/O).

A key space is read as ``{relative key: digest}`` (the namespace stripped; ``reply_digest``). Keys group
into *entities* by their Redis Cluster hash tag — ``conv:{acme/c-1}``, ``conv:{acme/c-1}:turns``
and the fence ``conv:{acme/c-1}:applied`` are one entity. The fence (per ``topic:partition``
the last offset applied to the entity) says which records an entity holds, so two spaces
are compared only where their fences agree: equal fences with different content is a
divergence; a live fence ahead of the rebuilt one means the live projection moved on
while we read (compare again later); a live fence behind it means live lost records.
Fences, the checkpoint and the sentinel are bookkeeping: never digested themselves.
"""

from __future__ import annotations

import hashlib
import marshal
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

FENCE_SUFFIX = ":applied"
CHECKPOINT_PREFIX = "checkpoint:"
SENTINEL = "complete"
MAX_SHOWN = 3
MISSING_LIVE = "missing in the live read model (the rebuild from the log has it)"
EXTRA_LIVE = "present in the live read model but not in the rebuild: no record in the log wrote it"

# Which source topic (base name) writes which kind of key: names the record of a divergence.
KEY_SOURCES = {
    ":decisions": "policy.decisions",
    ":denials": "policy.decisions",
    ":training": "training.audit",
    ":usage": "usage.windows",
    ":usage:turns": "usage.windows",
}
DEFAULT_SOURCE = "conversation.events"
DIGEST_MARSHAL_VERSION = 2  # no back-references (``reply_digest``)


@dataclass(frozen=True, slots=True)
class Snapshot:
    """One key's Redis type and content decoded, in a canonical form (hash/set/zset sorted, list
    in order): what ``describe`` shows of a divergence (the comparison itself uses digests)."""

    kind: str
    content: Any


def reply_digest(kind: str, flat: Any) -> str:
    """A key's digest from its content as a Redis reply gives it, flat (HGETALL, LRANGE,
    SMEMBERS, ZRANGE WITHSCORES, GET): equal for equal content whatever order Redis returned
    a hash's fields, a set's members or a sorted set's entries in (they are sorted; a list's
    order is its content). Nothing is decoded: a space of 65,000 keys is digested in a fraction
    of the time decoding and JSON would take (the audit reads two such spaces).

    The hashed bytes are the type name, a NUL, and ``marshal``'s format version 2 of the
    items: it writes each bytes/list/tuple with its type and length and, unlike version 3 and
    later or pickle, never a back-reference to an object seen before, so equal content gives
    equal bytes whichever objects hold it, and different content different bytes (it loads
    back). Half the cost of hashing the ``repr``, which escaped every byte. The format may
    change between Python versions: digests are compared within one audit, never stored."""
    if kind == "hash" or kind == "zset":  # pairs (field, value) / (member, score): unique names
        items: Any = sorted(zip(flat[::2], flat[1::2], strict=True))
    elif kind == "set":
        items = sorted(flat)
    elif kind == "list" or kind == "string":
        items = flat
    else:  # streams and the like: compared by type only
        items = None
    body = marshal.dumps(items, DIGEST_MARSHAL_VERSION)
    return hashlib.sha256(kind.encode() + b"\0" + body).hexdigest()


def snapshot(kind: str, raw: Any) -> Snapshot:
    """A canonical ``Snapshot`` from what redis-py returned for ``kind`` (bytes decoded)."""
    if kind == "hash":
        return Snapshot(kind, sorted([_text(k), _text(v)] for k, v in raw.items()))
    if kind == "list":
        return Snapshot(kind, [_text(v) for v in raw])
    if kind == "set":
        return Snapshot(kind, sorted(_text(v) for v in raw))
    if kind == "zset":
        return Snapshot(kind, sorted([float(score), _text(member)] for member, score in raw))
    if kind == "string":
        return Snapshot(kind, _text(raw))
    return Snapshot(kind, None)  # streams and the like: compared by type only


def _text(value: Any) -> str:
    return value.decode("utf-8", "backslashreplace") if isinstance(value, bytes) else str(value)


REPLAY_TOKEN_PREFIX = "replaying:"
"""A replay's guard token (``Keys.replay_guard``): expires by itself; a worker killed mid-replay
leaves one behind, which is not read-model state."""
LEASED = "leased"
"""The mark of a leased scratch space (``projections.abandoned.LEASED``): bookkeeping too."""


def is_bookkeeping(relative_key: str) -> bool:
    return (
        relative_key.endswith(FENCE_SUFFIX)
        or relative_key.startswith(CHECKPOINT_PREFIX)
        or relative_key.startswith(REPLAY_TOKEN_PREFIX)
        or relative_key == LEASED
        or relative_key == SENTINEL
        or relative_key.startswith(SENTINEL + ":{")  # its per-slot copies on a Redis Cluster
    )


def entity_of(relative_key: str) -> str:
    """The entity a key belongs to: the key up to its hash tag's ``}``, else the key itself."""
    relative_key = relative_key.removesuffix(FENCE_SUFFIX)
    close = relative_key.find("}", relative_key.find("{"))
    return relative_key if "{" not in relative_key or close < 0 else relative_key[: close + 1]


def fence_of(entity: str) -> str:
    return entity + FENCE_SUFFIX


def fence_offsets(raw: Mapping[Any, Any]) -> dict[str, int]:
    """A fence hash as {``topic:partition``: offset}; a field that is not a whole number (not
    written by a projector) counts as nothing applied (-1), which the comparison reports."""
    return {_text(k): _offset(v) for k, v in raw.items()}


def fence_of_reply(kind: str, flat: Any) -> dict[str, int]:
    """A fence read by the audit's script: empty if the key is gone (dropped or flushed between
    listing and reading) or is not a hash — the comparison then says live lost the records."""
    if kind != "hash" or not flat:
        return {}
    return fence_offsets(dict(zip(flat[::2], flat[1::2], strict=True)))


def key_text(name: Any) -> str:
    """A key name as text; bytes that are not UTF-8 kept reversibly (surrogateescape), so a hostile
    key under the namespace is read and reported, not a crash."""
    return name.decode("utf-8", "surrogateescape") if isinstance(name, bytes) else str(name)


def _offset(value: Any) -> int:
    try:
        return int(_text(value))
    except ValueError:
        return -1


@dataclass(frozen=True, slots=True)
class Divergence:
    kind: str  # "content" | "fence"
    key: str  # relative key
    cursor: str | None  # "topic:partition" of the record to look at
    offset: int | None
    detail: str


@dataclass
class EntityComparison:
    divergences: list[Divergence] = field(default_factory=list)
    moved_on: bool = False  # the live entity has records the rebuild does not have yet


def compare_entity(
    entity: str,
    live: Mapping[str, str],
    rebuilt: Mapping[str, str],
    live_fence: Mapping[str, int],
    rebuilt_fence: Mapping[str, int],
) -> EntityComparison:
    """Compare one entity's key digests (relative names, bookkeeping excluded) in two spaces.

    A content divergence's ``detail`` says only which side lacks the key, or ``""`` when both
    have it: the caller reads the two values and fills it in with ``describe``.
    """
    result = EntityComparison()
    if live_fence != rebuilt_fence:
        cursors = sorted(set(live_fence) | set(rebuilt_fence))
        behind = [c for c in cursors if live_fence.get(c, -1) < rebuilt_fence.get(c, -1)]
        if not behind:
            result.moved_on = True
            return result
        c = behind[0]
        why = (
            f"the live read model applied {c} up to offset {live_fence.get(c, 'none')} but the log "
            f"has records for this entity up to offset {rebuilt_fence[c]}: live lost records"
        )
        result.divergences.append(Divergence("fence", fence_of(entity), c, rebuilt_fence[c], why))
        return result
    for key in sorted(set(live) | set(rebuilt)):
        ours, theirs = live.get(key), rebuilt.get(key)
        if ours == theirs:
            continue
        cursor, offset = record_of(key, live_fence or rebuilt_fence)
        detail = MISSING_LIVE if ours is None else EXTRA_LIVE if theirs is None else ""
        result.divergences.append(Divergence("content", key, cursor, offset, detail))
    return result


def record_of(
    key: str, fence: Mapping[str, int], fields: Sequence[str] = ()
) -> tuple[str | None, int | None]:
    """The fence entry naming the last record that wrote ``key``'s kind of data.

    The source topic follows from the key's suffix (``KEY_SOURCES``); hash ``fields`` that
    all name decisions (a tenant's ``decisions_*`` counters) come from ``policy.decisions``;
    the rest from ``conversation.events``.
    """
    if not fence:
        return None, None
    wanted = next((base for suffix, base in KEY_SOURCES.items() if key.endswith(suffix)), DEFAULT_SOURCE)
    if fields and all("decision" in f for f in fields):
        wanted = "policy.decisions"
    for cursor in sorted(fence, key=lambda c: -fence[c]):
        if cursor.rsplit(":", 1)[0].endswith(wanted):
            return cursor, fence[cursor]
    cursor = max(fence, key=lambda c: fence[c])
    return cursor, fence[cursor]


def differing_fields(live: Snapshot | None, rebuilt: Snapshot | None) -> list[str]:
    """Names of the hash fields whose values differ (empty unless both are hashes)."""
    if live is None or rebuilt is None or live.kind != "hash" or rebuilt.kind != "hash":
        return []
    ours, theirs = dict(live.content), dict(rebuilt.content)
    return [n for n in sorted(set(ours) | set(theirs)) if ours.get(n) != theirs.get(n)]


def describe(live: Snapshot | None, rebuilt: Snapshot | None) -> str:
    if live is None:
        return MISSING_LIVE
    if rebuilt is None:
        return EXTRA_LIVE
    if live.kind != rebuilt.kind:
        return f"live holds a {live.kind}, the rebuild a {rebuilt.kind}"
    if live.kind == "hash":
        ours, theirs = dict(live.content), dict(rebuilt.content)
        names = differing_fields(live, rebuilt)
        shown = "; ".join(
            f"field {n!r}: live {_short(ours.get(n))}, rebuilt {_short(theirs.get(n))}"
            for n in names[:MAX_SHOWN]
        )
        return shown + (f"; and {len(names) - MAX_SHOWN} more field(s)" if len(names) > MAX_SHOWN else "")
    if live.kind in ("list", "zset", "set"):
        # not ``ours``/``theirs`` again: those are dicts above, and compiled code holds a name to one type
        mine, other = live.content, rebuilt.content
        if len(mine) != len(other):
            return f"live has {len(mine)} entries, the rebuild {len(other)}"
        index = next((i for i, (a, b) in enumerate(zip(mine, other, strict=True)) if a != b), 0)
        return f"entry {index}: live {_short(mine[index])}, rebuilt {_short(other[index])}"
    return f"live {_short(live.content)}, rebuilt {_short(rebuilt.content)}"


def _short(value: Any, limit: int = 80) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 1] + "…"
