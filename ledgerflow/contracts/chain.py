"""Per-key hash chains over the records ledgerflow's own agents write (pure: no clock, no I/O).

A chained record is the JSON form of an event (``Event.to_json()``: envelope at the top level plus
``payload``) with ``sequence`` (1, 2, 3 … per key), ``prev_hash`` (the key's previous ``hash``,
``ZERO_HASH`` first) and ``hash`` = lowercase hex SHA-256 of the RFC 8785 (JCS) canonical JSON of
the record without ``hash``. ``docs/hash-chains.md`` gives the reasons and a test vector.
"""

from __future__ import annotations

import hashlib
import re
from collections import deque
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

from ledgerflow.contracts.canonical import canonical_json, plain_body
from ledgerflow.errors import ValidationError

ZERO_HASH: str = "0" * 64
"""The ``prev_hash`` of the first record of every chain."""

BreakKind = Literal["missing", "reordered", "altered", "forged", "duplicate", "bad-genesis"]

_HEX64 = re.compile(r"[0-9a-f]{64}")
_CHAIN_FIELDS = ("sequence", "prev_hash", "hash")
_NOT_THE_START = "the chain does not start here (use from_start=False if retention deleted the start)"

DECISION_TYPE = "PolicyDecision"
"""The record type chained per (tenant, conversation); every other chained type per ``subject``
(usage windows: per tenant and source partition, ``usage_chain_key``)."""
USAGE_TYPE = "UsageWindow"
"""Chained per (tenant, producer): one chain per writer of a tenant's windows."""


def decision_chain_key(tenant: str, subject: str) -> str:
    """The chain key of a tenant's conversation: ``tenant/subject``.

    Ids never contain ``/`` (``ledgerflow.contracts.ids``), so the pair is unambiguous and two
    tenants that reuse a conversation id keep separate chains.
    """
    return f"{tenant}/{subject}"


def usage_chain_key(tenant: str, producer: str) -> str:
    """The chain key of one writer's usage windows of a tenant: ``tenant/producer``.

    A tenant's turns are spread over every input partition, and each partition's owner writes
    the windows it folds (``producer`` names that partition, ``ledgerflow-usage/p<N>``). One
    chain per (tenant, source partition) has exactly one writer at a time, so two workers that
    share a tenant never fork or restart each other's chain.
    """
    return f"{tenant}/{producer}"


def chain_key_of(record: Mapping[str, Any]) -> str | None:
    """The chain a record belongs to: ``decision_chain_key`` for decisions, ``usage_chain_key``
    for usage windows, else its ``subject``."""
    subject = record.get("subject")
    if not isinstance(subject, str):
        return None
    tenant = record.get("tenant")
    if record.get("type") == DECISION_TYPE and isinstance(tenant, str):
        return decision_chain_key(tenant, subject)
    producer = record.get("producer")
    if record.get("type") == USAGE_TYPE and isinstance(tenant, str) and isinstance(producer, str):
        return usage_chain_key(tenant, producer)
    return subject


def canonical_bytes(record: Mapping[str, Any]) -> bytes:
    """RFC 8785 (JCS) canonical JSON of ``record`` without its ``hash`` field."""
    return canonical_json(plain_body(record))


def compute_hash(record: Mapping[str, Any], prev_hash: str) -> str:
    """Hex SHA-256 of ``canonical_bytes(record)`` with ``prev_hash`` set (``sequence`` already set)."""
    check_hex(prev_hash, "prev_hash")
    return _digest({**record, "prev_hash": prev_hash})


def _digest(record: Mapping[str, Any]) -> str:
    return hashlib.sha256(canonical_bytes(record)).hexdigest()


def check_hex(value: Any, name: str) -> None:
    if not isinstance(value, str) or not _HEX64.fullmatch(value):
        raise ValidationError(f"{name} must be 64 lowercase hex characters (a SHA-256 digest), got {value!r}")


@dataclass(frozen=True, slots=True)
class ChainHead:
    """The last record of one key's chain: what the next record links to."""

    key: str
    sequence: int
    hash: str

    def __post_init__(self) -> None:
        if isinstance(self.sequence, bool) or not isinstance(self.sequence, int) or self.sequence < 1:
            raise ValidationError(f"chain head sequence must be an integer ≥ 1, got {self.sequence!r}")
        check_hex(self.hash, "chain head hash")


def link(record: Mapping[str, Any], head: ChainHead | None) -> dict[str, Any]:
    """A new record: ``record`` with ``sequence``, ``prev_hash`` and ``hash`` filled in.

    ``head`` is the key's current head (``None`` starts a new chain). The input is not mutated and
    the result shares no mutable value with it; a ``hash`` already in ``record`` is replaced.
    """
    key = chain_key_of(record)
    if head is not None and key is not None and key != head.key:
        why = f"record chain key {key!r} is not the head's key {head.key!r}: pass the head of its own chain"
        raise ValidationError(why)
    linked = plain_body(record)
    linked["sequence"] = 1 if head is None else head.sequence + 1
    linked["prev_hash"] = ZERO_HASH if head is None else head.hash
    linked["hash"] = hashlib.sha256(canonical_json(linked)).hexdigest()
    return linked


def head_of(record: Mapping[str, Any], key: str | None = None) -> ChainHead:
    """The head a linked ``record`` makes (``key`` defaults to the record's ``chain_key_of``)."""
    chain_key = key if key is not None else chain_key_of(record)
    if not isinstance(chain_key, str):
        raise ValidationError("record has no string subject; pass the chain key explicitly")
    return ChainHead(chain_key, record.get("sequence"), record.get("hash"))  # type: ignore[arg-type]


@dataclass(frozen=True, slots=True)
class Located:
    """A record as read from Kafka, with its position."""

    topic: str
    partition: int
    offset: int
    key: str
    record: Mapping[str, Any]
    digest: str | None = None
    """The hash of ``record``'s content when the caller already computed it from these very
    bytes (the auditor re-derives each decision bit for bit: one hashing, not two); None:
    computed by the verifier."""


@dataclass(frozen=True, slots=True)
class ChainBreak:
    """Where and how one key's chain is broken."""

    kind: BreakKind
    key: str
    topic: str
    partition: int
    offset: int
    expected_sequence: int | None
    found_sequence: int | None
    detail: str

    def __str__(self) -> str:
        return (
            f"{self.kind}: topic {self.topic} partition {self.partition} offset {self.offset}, key "
            f"{self.key!r} (expected sequence {self.expected_sequence}, found {self.found_sequence}): "
            f"{self.detail}"
        )


@dataclass(frozen=True, slots=True)
class _Seen:
    """An accepted record; no position for a head handed to the verifier."""

    sequence: int
    hash: str
    partition: int | None = None
    offset: int | None = None


@dataclass(frozen=True, slots=True)
class _Gap:
    """Sequences after_sequence+1 … jumped.sequence-1 have not been seen (yet)."""

    after_sequence: int
    jumped: _Seen


@dataclass(slots=True)
class _KeyState:
    recent: deque[_Seen]  # the last ``window`` accepted records; recent[-1] is the head
    gap: _Gap | None = None
    broken: bool = False


class ChainVerifier:
    """Walks the chains of one topic record by record, in each partition's offset order.

    ``feed`` returns a break as soon as it is known. A sequence jump is held as a *gap*: a skipped
    sequence that shows up later makes it ``reordered``; ``finish()`` reports gaps never filled as
    ``missing`` (``bad-genesis`` before the first record). After an integrity break a key is no
    longer walked (only its gap is still watched); duplicates are reported and the walk goes on.
    Memory per key: the last ``window`` sequence/hash pairs (the head among them), at most one gap.

    ``from_start=False`` trusts the first record seen of each key (retention deleted the start);
    ``heads`` resumes keys from a previous run's ``heads()``.
    """

    def __init__(
        self,
        topic: str | None = None,
        *,
        from_start: bool = True,
        heads: Mapping[str, ChainHead] | None = None,
        window: int = 4,
    ) -> None:
        if window < 1:
            raise ValidationError(f"window must be ≥ 1, got {window}")
        self._topic, self._from_start, self._window = topic, from_start, window
        self._keys: dict[str, _KeyState] = {}
        for key, head in (heads or {}).items():
            self._state(key).recent.append(_Seen(head.sequence, head.hash))

    def heads(self) -> dict[str, ChainHead]:
        """The last accepted record of every key (for a broken key: the last before the break)."""
        return {
            k: ChainHead(k, s.recent[-1].sequence, s.recent[-1].hash)
            for k, s in self._keys.items()
            if s.recent
        }

    def feed(self, located: Located) -> ChainBreak | None:
        """Check one record against its key's chain; the break it reveals, if any."""
        if self._topic is None:
            self._topic = located.topic
        elif located.topic != self._topic:
            why = f"this verifier walks {self._topic!r}, not {located.topic!r}: use one verifier per topic"
            raise ValidationError(why)
        state = self._state(located.key)
        if state.broken:
            return self._fill_gap(state, located)
        return self._walk(state, located)

    def finish(self) -> list[ChainBreak]:
        """Breaks for gaps never filled; call once the input is exhausted."""
        found = []
        for key, state in self._keys.items():
            if state.gap is not None:
                found.append(self._gap_break(key, state.gap))
                state.gap = None
        return found

    def _state(self, key: str) -> _KeyState:
        state = self._keys.get(key)
        if state is None:
            state = self._keys[key] = _KeyState(deque(maxlen=self._window))
        return state

    def _walk(self, state: _KeyState, at: Located) -> ChainBreak | None:
        """Content first (altered), then the position against the head (every other kind)."""
        record = at.record
        problem = _malformed(record)
        if problem is not None:
            return self._fail(state, at, "altered", _int_or_none(record.get("sequence")), problem)
        seq, prev, stored = record["sequence"], record["prev_hash"], record["hash"]
        try:
            actual = at.digest if at.digest is not None else _digest(record)
        except ValidationError as exc:
            return self._fail(state, at, "altered", seq, str(exc))
        if actual != stored:
            why = f"hash {stored[:16]}… does not match the content ({actual[:16]}…): it was changed"
            return self._fail(state, at, "altered", seq, why)
        if not state.recent:
            return self._start(state, at, seq, prev, stored)
        head = state.recent[-1]
        expected = head.sequence + 1
        if seq == expected and prev != head.hash:
            why = (
                f"prev_hash {prev[:16]}… is not the hash {head.hash[:16]}… of sequence {head.sequence}"
                f"{_where(head)}: inserted from outside, or that record was replaced by a re-hashed copy"
            )
            return self._fail(state, at, "forged", seq, why)
        if seq > expected and state.gap is not None:
            why = f"{_span(expected, seq - 1)} not seen before this record, while an earlier gap is open"
            return self._fail(state, at, "missing", seq, why)
        if seq > expected:
            state.gap = _Gap(head.sequence, _Seen(seq, stored, at.partition, at.offset))
        if seq >= expected:
            state.recent.append(_Seen(seq, stored, at.partition, at.offset))
            return None
        return self._behind(state, at, seq, prev, stored)

    def _start(self, state: _KeyState, at: Located, seq: int, prev: str, stored: str) -> ChainBreak | None:
        """The first record seen of a key."""
        if self._from_start and seq == 1 and prev != ZERO_HASH:
            why = f"the first record has prev_hash {prev[:16]}…, not zeros: {_NOT_THE_START}"
            return self._fail(state, at, "bad-genesis", seq, why)
        seen = _Seen(seq, stored, at.partition, at.offset)
        if self._from_start and seq > 1:
            state.gap = _Gap(0, seen)
        state.recent.append(seen)
        return None

    def _behind(self, state: _KeyState, at: Located, seq: int, prev: str, stored: str) -> ChainBreak:
        """A record whose sequence is at or before the head's."""
        head = state.recent[-1]
        reordered = self._fill_gap(state, at)
        if reordered is not None:
            state.broken = True
            return reordered
        seen = next((s for s in state.recent if s.sequence == seq), None)
        if seen is not None and seen.hash == stored:
            why = f"an identical copy of sequence {seq}{_where(seen)} (a redelivery); consumers skip it"
            return _break("duplicate", at, head.sequence + 1, seq, why)
        if seq == 1 and prev == ZERO_HASH:
            why = (
                f"a second, different sequence 1 after sequence {head.sequence}: the chain restarts, so a "
                "writer lost the key's head (it must recover it from the topic's last record of the key)"
            )
            return self._fail(state, at, "bad-genesis", seq, why)
        if seen is not None:
            why = (
                f"a different record already holds sequence {seq}{_where(seen)}: the chain forks (inserted "
                "from outside, or the writer re-produced a record non-deterministically)"
            )
            return self._fail(state, at, "forged", seq, why)
        why = (
            f"sequence {seq} appears after sequence {head.sequence}, older than the last {self._window} "
            "records remembered: an out-of-order write or a late redelivery"
        )
        return self._fail(state, at, "reordered", seq, why)

    def _fail(
        self, state: _KeyState, at: Located, kind: BreakKind, found: int | None, detail: str
    ) -> ChainBreak:
        state.broken = True
        expected = state.recent[-1].sequence + 1 if state.recent else (1 if self._from_start else None)
        return _break(kind, at, expected, found, detail)

    def _fill_gap(self, state: _KeyState, at: Located) -> ChainBreak | None:
        """A record whose sequence falls in the key's open gap is ``reordered``."""
        gap, seq = state.gap, _int_or_none(at.record.get("sequence"))
        if gap is None or seq is None or not gap.after_sequence < seq < gap.jumped.sequence:
            return None
        state.gap = None
        after = f"sequence {gap.jumped.sequence}{_where(gap.jumped)}"
        why = f"sequence {seq} arrives after {after}: the records were written out of order"
        return _break("reordered", at, gap.after_sequence + 1, seq, why)

    def _gap_break(self, key: str, gap: _Gap) -> ChainBreak:
        jumped = gap.jumped
        at = Located(self._topic or "", jumped.partition or 0, jumped.offset or 0, key, {})
        span = _span(gap.after_sequence + 1, jumped.sequence - 1)
        if gap.after_sequence == 0:
            why = f"the first record has sequence {jumped.sequence}; {span} never appeared: {_NOT_THE_START}"
            return _break("bad-genesis", at, 1, jumped.sequence, why)
        return _break("missing", at, gap.after_sequence + 1, jumped.sequence, f"{span} never appeared before")


def verify(records: Iterable[Located], *, from_start: bool = True, window: int = 4) -> list[ChainBreak]:
    """Every break in ``records`` (any topics), ordered by topic, partition and offset."""
    verifiers: dict[str, ChainVerifier] = {}
    found: list[ChainBreak] = []
    for located in records:
        verifier = verifiers.get(located.topic)
        if verifier is None:
            verifier = ChainVerifier(located.topic, from_start=from_start, window=window)
            verifiers[located.topic] = verifier
        problem = verifier.feed(located)
        if problem is not None:
            found.append(problem)
    for verifier in verifiers.values():
        found.extend(verifier.finish())
    return sorted(found, key=lambda b: (b.topic, b.partition, b.offset))


def _break(kind: BreakKind, at: Located, expected: int | None, found: int | None, detail: str) -> ChainBreak:
    return ChainBreak(kind, at.key, at.topic, at.partition, at.offset, expected, found, detail)


def _span(first: int, last: int) -> str:
    return f"sequence {first}" if first == last else f"sequences {first}…{last}"


def _where(seen: _Seen) -> str:
    return "" if seen.offset is None else f" (partition {seen.partition} offset {seen.offset})"


def _int_or_none(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _malformed(record: Mapping[str, Any]) -> str | None:
    """Why the chain fields of ``record`` are unusable, or None."""
    absent = [name for name in _CHAIN_FIELDS if name not in record]
    if absent:
        return f"the record lacks {', '.join(absent)}: not written by a ledgerflow agent, or fields stripped"
    seq = _int_or_none(record["sequence"])
    if seq is None or seq < 1:
        return f"sequence {record['sequence']!r} is not an integer ≥ 1"
    for name in ("prev_hash", "hash"):
        value = record[name]
        if not isinstance(value, str) or not _HEX64.fullmatch(value):
            return f"{name} {value!r} is not 64 lowercase hex characters"
    return None
