"""The event envelope: the ``Event`` dataclass, its JSON shape, and envelope validation.

``occurred_at`` is int microseconds since the Unix epoch (UTC) everywhere in Python;
JSON renders it as ``YYYY-MM-DDTHH:MM:SS.ffffffZ``. ``schema_version`` is the version
of the type's schema the event was (or will be) written with; the payload dataclass
always has the newest shape.
"""

from __future__ import annotations

import hashlib
import re
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ledgerflow.contracts import _avro_json
from ledgerflow.contracts._avro_json import format_timestamp, parse_timestamp
from ledgerflow.contracts.ids import ID_PATTERN, check_id
from ledgerflow.contracts.payloads import (
    PAYLOAD_TYPES,
    ConversationStarted,
    MessageSubmitted,
    Payload,
    UsageWindow,
)
from ledgerflow.contracts.registry import default_registry
from ledgerflow.contracts.upcasting import upcast_payload
from ledgerflow.errors import DecodeError, ValidationError
from ledgerflow.limits import MAX_CONTENT_BYTES
from ledgerflow.quoting import quoted

MAX_ID_CHARS = 256
"""Longest tenant, subject, producer and trace_id."""
MIN_OCCURRED_AT = 946_684_800_000_000
"""2000-01-01T00:00:00Z: anything earlier is a unit mistake (seconds, milliseconds)."""
MAX_OCCURRED_AT = 7_258_118_400_000_000
"""2200-01-01T00:00:00Z: static upper bound checked on decode."""
MAX_FUTURE_SKEW_MICROS = 86_400_000_000
"""HTTP ingest refuses occurred_at more than one day ahead of the edge's clock."""
MAX_TOKENS = 10_000_000
"""Largest MessageSubmitted.tokens: far above any model's context, far below int overflow in sums."""
MAX_MODEL_CHARS = 256
"""Longest model id."""
MAX_WINDOW_MICROS = 86_400_000_000
"""Longest usage window (``LEDGERFLOW_USAGE_WINDOW_S`` is at most a day)."""
LATE_USAGE_REVISION = -1
"""The ``revision`` of a ``LateUsage`` delta: one turn's counts, added to (not set into) a total."""
MAX_LANGUAGE_CHARS = 64
"""Longest language tag (BCP 47 tags are at most 35 characters in practice)."""
ANY_TENANT = "*"
ANY_TENANT_TYPES = frozenset({"RulePackPublished", "SigningKeyChanged", "AuthRefusals"})
"""Types whose envelope tenant may be ``*``: the default pack, and identity records of no one tenant."""
"""The tenant/subject of the default rule pack: the one value outside the id grammar."""

_is_id = ID_PATTERN.fullmatch
_UUID_RE = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")
_NAMESPACE = uuid.UUID("6f1c3c52-5d0e-4a52-9d55-2f1f0c2f7a10")
_NAMESPACE_BYTES = _NAMESPACE.bytes
_VARIANT = "89ab"  # RFC 4122 variant: the top two bits of the 17th hex digit are 10
_CHAIN_FIELDS = ("sequence", "prev_hash", "hash")
_ENVELOPE_KEYS = frozenset(
    {
        "event_id",
        "type",
        "schema_version",
        "tenant",
        "subject",
        "occurred_at",
        "producer",
        "trace_id",
        "payload",
        *_CHAIN_FIELDS,
    }
)


class ContentTooLarge(ValidationError):
    """MessageSubmitted.content is over MAX_CONTENT_BYTES."""


def new_event_id() -> str:
    """A random (v4) event id: the one place ledgerflow uses randomness."""
    return str(uuid.uuid4())


def derived_event_id(*parts: str) -> str:
    """A deterministic (v5) event id from ``parts``: replaying an agent re-derives the same id.

    ``str(uuid.uuid5(_NAMESPACE, "\\x1f".join(parts)))`` written out (SHA-1 of the namespace and
    the name, version 5, RFC 4122 variant, in canonical form): the same string in a third of the
    time (3.0 → 0.9 µs), and the policy agent derives one per decision."""
    h = hashlib.sha1(_NAMESPACE_BYTES + "\x1f".join(parts).encode()).hexdigest()
    return f"{h[:8]}-{h[8:12]}-5{h[13:16]}-{_VARIANT[int(h[16], 16) & 3]}{h[17:20]}-{h[20:32]}"


@dataclass(frozen=True, slots=True, kw_only=True)
class Event:
    """One record on a ledgerflow topic: the envelope plus a typed payload."""

    event_id: str
    type: str
    schema_version: int
    tenant: str
    subject: str
    occurred_at: int
    producer: str
    payload: Payload
    trace_id: str | None = None
    sequence: int | None = None
    prev_hash: str | None = None
    hash: str | None = None

    def with_chain(self, sequence: int, prev_hash: str, hash: str) -> Event:
        """A copy with the chain fields set (agents only).

        Built field by field rather than with ``dataclasses.replace``, which looks the fields up
        again on every call: the policy agent chains every decision it makes."""
        return Event(
            event_id=self.event_id,
            type=self.type,
            schema_version=self.schema_version,
            tenant=self.tenant,
            subject=self.subject,
            occurred_at=self.occurred_at,
            producer=self.producer,
            payload=self.payload,
            trace_id=self.trace_id,
            sequence=sequence,
            prev_hash=prev_hash,
            hash=hash,
        )

    def to_json(self) -> dict[str, Any]:
        """The JSON shape (docs/contracts.md): envelope at the top level, ``payload`` nested.

        The payload has the fields of ``schema_version`` (what was written), so the JSON
        of an old record — and any hash over it — does not change when schemas evolve.
        """
        schema = default_registry().get(self.type, self.schema_version).payload_schema()
        return {
            "event_id": self.event_id,
            "type": self.type,
            "schema_version": self.schema_version,
            "tenant": self.tenant,
            "subject": self.subject,
            "occurred_at": format_timestamp(self.occurred_at),
            "producer": self.producer,
            "trace_id": self.trace_id,
            "sequence": self.sequence,
            "prev_hash": self.prev_hash,
            "hash": self.hash,
            "payload": _avro_json.to_json(schema, self.payload.to_record()),
        }

    @classmethod
    def from_json(
        cls,
        obj: Any,
        *,
        now_micros: int,
        default_producer: str = "edge",
        id_factory: Callable[[], str] = new_event_id,
        accept_chain_fields: bool = False,
    ) -> Event:
        """Validate a JSON event (HTTP ingest) and build it.

        The payload is checked against ``schema_version`` (default: the newest) and
        upcast to the newest payload dataclass; ``schema_version`` is kept.

        Fills ``event_id`` (from ``id_factory``) and ``occurred_at`` (``now_micros``)
        when absent, ``producer`` with ``default_producer``. Chain fields are refused
        unless ``accept_chain_fields`` (reading back JSON that ledgerflow rendered).
        Raises ValidationError naming the offending field.
        """
        if not isinstance(obj, dict):
            raise ValidationError("event: expected a JSON object")
        extra = sorted(set(obj) - _ENVELOPE_KEYS)
        if extra:
            raise ValidationError(f"{extra[0]}: unknown field; put type-specific fields under payload")
        type_name = obj.get("type")
        if not isinstance(type_name, str) or type_name not in PAYLOAD_TYPES:  # a list is unhashable
            known = ", ".join(sorted(PAYLOAD_TYPES))
            raise ValidationError(f"type: {quoted(type_name)} is not an event type; known: {known}")
        registry = default_registry()
        newest = registry.latest(type_name).version
        version = obj.get("schema_version", newest)
        if not isinstance(version, int) or isinstance(version, bool) or not 1 <= version <= newest:
            raise ValidationError(
                f"schema_version: {quoted(version)} is not a version of {type_name} (1..{newest})"
            )
        if not accept_chain_fields:
            for name in _CHAIN_FIELDS:
                if obj.get(name) is not None:
                    raise ValidationError(f"{name}: set only by ledgerflow agents; omit it")
        event_id = obj.get("event_id")
        if event_id is None:
            event_id = id_factory()
        elif isinstance(event_id, str):
            event_id = event_id.lower()
        if "occurred_at" in obj and obj["occurred_at"] is not None:
            occurred_at = _json_time(obj["occurred_at"])
            if occurred_at > now_micros + MAX_FUTURE_SKEW_MICROS:
                raise ValidationError(
                    f"occurred_at: {obj['occurred_at']} is more than a day in the future; "
                    "check the producer's clock"
                )
        else:
            occurred_at = now_micros
        if "payload" not in obj:
            raise ValidationError("payload: required field is missing")
        payload_schema = registry.get(type_name, version).payload_schema()
        record = {"payload": _avro_json.from_json(payload_schema, obj["payload"], "payload")}
        record = upcast_payload(registry, type_name, version, record)
        event = cls(
            event_id=event_id,
            type=type_name,
            schema_version=version,
            tenant=_json_str(obj, "tenant"),
            subject=_json_str(obj, "subject"),
            occurred_at=occurred_at,
            producer=_json_str(obj, "producer", default_producer),
            trace_id=_json_optional(obj, "trace_id", str),
            sequence=_json_optional(obj, "sequence", int),
            prev_hash=_json_optional(obj, "prev_hash", str),
            hash=_json_optional(obj, "hash", str),
            payload=PAYLOAD_TYPES[type_name].from_record(record["payload"]),
        )
        validate_envelope(event)
        return event


def _json_time(value: Any) -> int:
    if not isinstance(value, str):
        raise ValidationError("occurred_at: expected a string like 2026-11-23T20:00:00.000000Z")
    return parse_timestamp(value, "occurred_at")


def _json_str(obj: dict[str, Any], name: str, default: str | None = None) -> str:
    value = obj.get(name, default)
    if value is None:
        raise ValidationError(f"{name}: required field is missing")
    if not isinstance(value, str):
        raise ValidationError(f"{name}: expected a string")
    return value


def _json_optional(obj: dict[str, Any], name: str, kind: type) -> Any:
    value = obj.get(name)
    if value is not None and (not isinstance(value, kind) or isinstance(value, bool)):
        raise ValidationError(f"{name}: expected {kind.__name__} or null")
    return value


def new_event(
    type: str,
    *,
    tenant: str,
    subject: str,
    payload: Payload,
    producer: str,
    occurred_at_micros: int,
    event_id: str | None = None,
    trace_id: str | None = None,
    schema_version: int | None = None,
) -> Event:
    """Build a validated event with ``schema_version`` of ``type`` (default: the newest; an older
    one is for writers that keep an older record's bytes, and the payload must fit it).

    ``event_id`` defaults to a random UUID; agents should pass :func:`derived_event_id`
    so that a replay re-derives identical events.
    """
    if type not in PAYLOAD_TYPES:
        raise ValidationError(f"type: {type!r} is not an event type")
    event = Event(
        event_id=event_id if event_id is not None else new_event_id(),
        type=type,
        schema_version=default_registry().latest(type).version if schema_version is None else schema_version,
        tenant=tenant,
        subject=subject,
        occurred_at=occurred_at_micros,
        producer=producer,
        trace_id=trace_id,
        payload=payload,
    )
    validate_envelope(event)
    return event


def validate_envelope(event: Event) -> None:
    """Check what the Avro schema cannot: ids, non-empty keys, time range, content size.

    Pure (no clock). Raises ValidationError (ContentTooLarge for oversized content).
    """
    if not isinstance(event.event_id, str) or _UUID_RE.match(event.event_id) is None:
        raise ValidationError(f"event_id: {quoted(event.event_id, 60)} is not a lowercase canonical UUID")
    cls = PAYLOAD_TYPES.get(event.type)
    if cls is None or type(event.payload) is not cls:
        raise ValidationError(
            f"type: {event.type!r} does not match the payload ({type(event.payload).__name__})"
        )
    if event.schema_version < 1:
        raise ValidationError(f"schema_version: {event.schema_version} must be 1 or more")
    # An id passes the one regex match; only what fails it takes the call that names the problem.
    if not (isinstance(event.tenant, str) and _is_id(event.tenant)):
        _check_key_id(event, "tenant", event.tenant)
    if not (isinstance(event.subject, str) and _is_id(event.subject)):
        _check_key_id(event, "subject", event.subject)
    producer = event.producer
    if not isinstance(producer, str) or not producer.strip():
        raise ValidationError("producer: must not be empty")
    if len(producer) > MAX_ID_CHARS:
        raise ValidationError(f"producer: longer than {MAX_ID_CHARS} characters")
    if event.trace_id is not None and len(event.trace_id) > MAX_ID_CHARS:
        raise ValidationError(f"trace_id: longer than {MAX_ID_CHARS} characters")
    if not MIN_OCCURRED_AT <= event.occurred_at < MAX_OCCURRED_AT:
        raise ValidationError(
            f"occurred_at: {event.occurred_at} is outside 2000-01-01..2200-01-01; "
            "it must be UTC microseconds since the epoch"
        )
    if event.sequence is not None and event.sequence < 1:
        raise ValidationError(f"sequence: {event.sequence} must be 1 or more")
    if isinstance(event.payload, MessageSubmitted):
        validate_turn(event.payload)
    elif isinstance(event.payload, ConversationStarted):
        _check_text("payload.model", event.payload.model, MAX_MODEL_CHARS)
        _check_text("payload.actor", event.payload.actor, MAX_ID_CHARS)
    elif isinstance(event.payload, UsageWindow):
        validate_usage_window(event.payload)


def validate_usage_window(window: UsageWindow) -> None:
    """A usage record's numbers: what the usage agent can write (``usage/wire.py: record_of``).

    A window of at most a day around a time inside the envelope's range (its start may be up to a
    day before 2000-01-01: a window holds its first turn), counts of 0 or more, and a ``LateUsage``
    delta (revision -1) counts one turn: 1 event and at most ``MAX_TOKENS`` (a turn's largest count,
    far above the estimate for 64 KiB of content). The read models *add* deltas (HINCRBY): a delta
    past these bounds, written to Kafka directly, overflowed Redis's 64-bit counter; a window past
    year 9999 could not be shown as a date."""
    start, end = window.window_start, window.window_end
    if not MIN_OCCURRED_AT - MAX_WINDOW_MICROS <= start < MAX_OCCURRED_AT:
        raise ValidationError(f"payload.window_start: {start} is outside 1999-12-31..2200-01-01 (UTC µs)")
    if not start < end <= start + MAX_WINDOW_MICROS:
        raise ValidationError(
            f"payload.window_end: {end} is not after window_start {start} by 1 µs to {MAX_WINDOW_MICROS} µs"
        )
    for name in ("tokens", "events", "estimated_tokens"):
        if getattr(window, name) < 0:
            raise ValidationError(f"payload.{name}: {getattr(window, name)} is negative")
    if window.revision < LATE_USAGE_REVISION:
        raise ValidationError(f"payload.revision: {window.revision} is below {LATE_USAGE_REVISION}")
    if window.revision == LATE_USAGE_REVISION and (window.events != 1 or window.tokens > MAX_TOKENS):
        raise ValidationError(
            f"payload: a LateUsage delta (revision -1) counts one turn: 1 event and at most {MAX_TOKENS} "
            f"tokens, not {window.events} and {window.tokens}"
        )


def _check_key_id(event: Event, name: str, value: object) -> None:
    if isinstance(value, str) and not value.strip():
        raise ValidationError(f"{name}: must not be empty")
    if not (value == ANY_TENANT and event.type in ANY_TENANT_TYPES):
        check_id(name, value)


def validate_turn(turn: MessageSubmitted) -> None:
    """A turn's payload: what the Avro schema cannot say (ids, ranges, sizes, types).

    Checked at the edge and again in the agents, which also read records that producers
    wrote to Kafka directly. Raises ValidationError (ContentTooLarge for oversized content).
    """
    if not (isinstance(turn.turn_id, str) and _is_id(turn.turn_id)):
        check_id("payload.turn_id", turn.turn_id)
    if not isinstance(turn.content, str):
        raise ValidationError(f"payload.content: expected a string, got {type(turn.content).__name__}")
    if len(turn.content) * 4 > MAX_CONTENT_BYTES:
        size = len(turn.content.encode("utf-8", "surrogatepass"))
        if size > MAX_CONTENT_BYTES:
            raise ContentTooLarge(
                f"payload.content: {size} bytes of UTF-8 is over the {MAX_CONTENT_BYTES}-byte "
                "limit; split the message into several turns"
            )
    _check_text("payload.model", turn.model, MAX_MODEL_CHARS)
    tokens = turn.tokens
    if tokens is not None:
        if not isinstance(tokens, int) or isinstance(tokens, bool):
            raise ValidationError(f"payload.tokens: expected an integer or null, got {type(tokens).__name__}")
        if not 0 <= tokens <= MAX_TOKENS:
            raise ValidationError(f"payload.tokens: {tokens} is outside 0..{MAX_TOKENS}")
    if turn.language is not None:
        _check_text("payload.language", turn.language, MAX_LANGUAGE_CHARS)


def _check_text(field: str, value: object, longest: int) -> None:
    """A non-empty string of at most ``longest`` characters without control characters."""
    if not isinstance(value, str):
        raise ValidationError(f"{field}: expected a string, got {type(value).__name__}")
    if not value.strip():
        raise ValidationError(f"{field}: must not be empty")
    if len(value) > longest:
        raise ValidationError(f"{field}: longer than {longest} characters")
    if not value.isprintable():
        raise ValidationError(f"{field}: {value[:40]!r} contains control characters")


def check_key(event: Event, key: bytes | None) -> None:
    """A record's Kafka key must be its subject (conversation or tenant id): otherwise one
    conversation's history would be split across partitions. Raises DecodeError."""
    if key != event.subject.encode():
        shown = key.decode(errors="replace") if key is not None else None
        raise DecodeError(
            f"invalid-envelope: subject {event.subject!r} does not match the record key {shown!r}; "
            "the key must be the subject (conversation id or tenant)"
        )
