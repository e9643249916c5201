"""Avro single-object encoding of events and dead letters.

Wire format (Avro specification, "Single object encoding")::

    C3 01 | CRC-64-AVRO fingerprint of the writer schema (8 bytes, little-endian) | body

The body is Avro binary, written and read by readers and writers compiled once per
schema at start-up (``ledgerflow.contracts.avrobin``; the same bytes as fastavro's, about
twice as fast). Decoding an older version of a type reads it with its own schema, then
resolves it to the newest (``ledgerflow.contracts.resolve``: added fields get their
defaults, as Avro schema resolution does), then applies ``UPCASTERS`` for each version step
(see ``ledgerflow.contracts.upcasting``). Every failure to
decode raises ``DecodeError`` whose reason starts with a machine-friendly code:
``not-single-object``, ``truncated``, ``unknown-fingerprint``, ``undecodable``,
``wrong-type-for-topic``, ``invalid-envelope``, ``content-too-large``.
"""

from __future__ import annotations

import dataclasses
import functools
import importlib.machinery
from collections.abc import Mapping
from dataclasses import dataclass
from io import BytesIO
from typing import Any

import fastavro.read
import fastavro.write
from fastavro import schemaless_reader

from ledgerflow.contracts.avrobin import (
    AvroError,
    Reader,
    Resolver,
    Writer,
    compile_reader,
    compile_resolver,
    compile_writer,
)
from ledgerflow.contracts.events import ContentTooLarge, Event, validate_envelope
from ledgerflow.contracts.payloads import NESTED_RECORDS, PAYLOAD_TYPES, DeadLetter
from ledgerflow.contracts.registry import SchemaEntry, SchemaRegistry, default_registry
from ledgerflow.contracts.upcasting import UPCASTERS, Upcaster, upcast_steps
from ledgerflow.errors import DecodeError, InfrastructureError, ValidationError
from ledgerflow.topics import TOPIC_TYPES

__all__ = [
    "MAGIC",
    "TOPIC_TYPES",
    "UPCASTERS",
    "Codec",
    "DeadLetter",
    "decode",
    "decode_dead_letter",
    "default_codec",
    "encode",
    "encode_dead_letter",
    "fast_codec_loaded",
    "reason_code",
    "require_fast_codec",
]

MAGIC = b"\xc3\x01"
# What the decoders take: bytes, or a buffer of them (compiled code checks the annotation).
Buffer = bytes | bytearray | memoryview
_HEADER = 10

_ENCODE_ERRORS = (TypeError, ValueError, KeyError, AttributeError, OverflowError)


class Codec:
    """Encoder/decoder over one schema registry (``default_codec()`` for the shipped one)."""

    def __init__(
        self,
        registry: SchemaRegistry,
        upcasters: Mapping[tuple[str, int], Upcaster] = UPCASTERS,
        *,
        direct: bool = True,
    ) -> None:
        """``direct=False`` reads every record as a dict first (the reference path tests compare to)."""
        self.registry = registry
        self._latest = {name: registry.latest(name) for name in registry.event_types}
        # fingerprint -> how to read it: entry, compiled reader, resolution, upcasters in order
        self._readers: dict[bytes, _ReadPlan] = {}
        self._writers: dict[bytes, Writer] = {}
        for entry in registry.entries():
            newest = registry.latest(entry.type)
            steps = upcast_steps(entry.type, entry.version, newest.version, upcasters)
            plan = _plan(entry, newest, steps, direct)
            self._readers[entry.fingerprint] = plan
            if entry.alias_fingerprint is not None:
                self._readers[entry.alias_fingerprint] = plan
            self._writers[entry.fingerprint] = compile_writer(entry.wire)
        self._dropped = {
            e.fingerprint: _dropped_fields(e)
            for e in registry.entries()
            if e.is_event and e is not self._latest[e.type]
        }

    def encode(self, event: Event) -> bytes:
        """Single-object bytes of ``event``, written with schema ``event.schema_version``.

        Raises ValidationError if the event breaks the envelope rules or its schema.
        """
        validate_envelope(event)
        try:
            entry = self.registry.get(event.type, event.schema_version)
        except KeyError:
            raise ValidationError(
                f"schema_version: {event.type} has no version {event.schema_version}"
            ) from None
        record: dict[str, Any] = {
            "event_id": event.event_id,
            "type": event.type,
            "schema_version": event.schema_version,
            "tenant": event.tenant,
            "subject": event.subject,
            "occurred_at": event.occurred_at,
            "producer": event.producer,
            "trace_id": event.trace_id,
            "sequence": event.sequence,
            "prev_hash": event.prev_hash,
            "hash": event.hash,
            "payload": event.payload.to_record(),
        }
        dropped = self._dropped.get(entry.fingerprint)
        if dropped:
            _check_downgrade(entry, record["payload"], dropped)
        return self._write(entry, record)

    def decode(self, data: Buffer, *, allowed_types: frozenset[str] | None = None) -> Event:
        """The event in ``data`` (newest payload shape). Raises DecodeError(reason)."""
        entry, record = self._read(data, allowed_types)
        if not entry.is_event:
            raise DecodeError(f"wrong-type-for-topic: {entry.type} is not an event")
        if type(record) is Event:  # read straight into the classes (see ``_builders``)
            _check_written_as(record.type, record.schema_version, entry)
            return _validated(record)
        _check_written_as(record["type"], record["schema_version"], entry)
        for upcast in self._readers[entry.fingerprint].upcasters:
            record = upcast(record)
        event = Event(
            event_id=record["event_id"],
            type=entry.type,
            schema_version=entry.version,
            tenant=record["tenant"],
            subject=record["subject"],
            occurred_at=record["occurred_at"],
            producer=record["producer"],
            trace_id=record["trace_id"],
            sequence=record["sequence"],
            prev_hash=record["prev_hash"],
            hash=record["hash"],
            payload=PAYLOAD_TYPES[entry.type].from_record(record["payload"]),
        )
        return _validated(event)

    def encode_dead_letter(self, letter: DeadLetter) -> bytes:
        """Single-object bytes of a dead letter (schema DeadLetter, newest version)."""
        return self._write(self.registry.latest("DeadLetter"), letter.to_record())

    def decode_dead_letter(self, data: Buffer) -> DeadLetter:
        """The dead letter in ``data``. Raises DecodeError(reason)."""
        entry, record = self._read(data, frozenset({"DeadLetter"}))
        for upcast in self._readers[entry.fingerprint].upcasters:
            record = upcast(record)
        return DeadLetter.from_record(record)

    def _write(self, entry: SchemaEntry, record: dict[str, Any]) -> bytes:
        try:
            body = self._writers[entry.fingerprint](record)
        except _ENCODE_ERRORS as exc:
            raise ValidationError(f"{entry.type}: does not fit schema v{entry.version}: {exc}") from None
        return MAGIC + entry.fingerprint + body

    def _read(self, data: Buffer, allowed_types: frozenset[str] | None) -> tuple[SchemaEntry, Any]:
        """The writer's entry and the record: a dict, or an Event when read straight into it."""
        # Step 1. Framing: magic, then the 8-byte fingerprint.
        if data[:2] != MAGIC:
            if data and MAGIC.startswith(data):
                raise DecodeError("truncated: the value ends inside the C3 01 magic")
            raise DecodeError(
                f"not-single-object: value starts with {bytes(data[:2]).hex() or 'nothing'}, not c301"
            )
        if len(data) < _HEADER:
            raise DecodeError(f"truncated: {len(data)} bytes, the header alone is {_HEADER}")
        fp = bytes(data[2:_HEADER])
        # Step 2. Writer schema from the registry, and the topic's allow-list.
        found = self._readers.get(fp)
        if found is None:
            raise DecodeError(f"unknown-fingerprint: {fp.hex()} is not in schemas/")
        entry = found.entry
        if allowed_types is not None and entry.type not in allowed_types:
            allowed = ", ".join(sorted(allowed_types))
            raise DecodeError(f"wrong-type-for-topic: {entry.type} is not one of {allowed}")
        # Step 3. Body: every byte must be consumed.
        if type(data) is not bytes:  # bytearray, memoryview: the compiled reader slices bytes
            data = bytes(data)
        try:
            record, end = found.read(data, _HEADER)
        except AvroError as exc:
            if exc.truncated:
                raise DecodeError(f"truncated: body ends early for {entry.type} v{entry.version}") from None
            raise DecodeError(f"undecodable: {entry.type} v{entry.version}: {exc}") from None
        rest = len(data) - end
        if rest:
            raise DecodeError(f"undecodable: {rest} trailing bytes after {entry.type} v{entry.version}")
        if isinstance(record, dict):
            return entry, found.resolve(data, record)
        if not isinstance(record, Event):  # a record schema always reads as one of them
            raise DecodeError(f"undecodable: {entry.type} v{entry.version} is not a record")
        return entry, record


@dataclass(frozen=True, slots=True)
class _ReadPlan:
    entry: SchemaEntry
    read: Reader
    resolver: Resolver | None
    """Resolution to the newest schema; None: written with it, or ``fallback`` is needed."""
    fallback: Any
    """The newest wire schema when resolution needs fastavro (a change ``compile_resolver``
    does not cover), else None."""
    upcasters: tuple[Upcaster, ...]

    def resolve(self, data: bytes, record: dict[str, Any]) -> dict[str, Any]:
        """``record`` (read with its writer's schema) in the newest schema's shape."""
        if self.resolver is not None:
            return self.resolver(record)
        if self.fallback is None:
            return record
        body = BytesIO(data)
        body.seek(_HEADER)
        try:
            resolved: dict[str, Any] = schemaless_reader(body, self.entry.wire, self.fallback)  # type: ignore[assignment]
        except Exception as exc:  # fastavro raises many kinds on what it cannot resolve
            why = f"{self.entry.type} v{self.entry.version}: {type(exc).__name__}"
            raise DecodeError(f"undecodable: {why}") from None
        return resolved


def _plan(
    entry: SchemaEntry, newest: SchemaEntry, upcasters: tuple[Upcaster, ...], direct: bool = True
) -> _ReadPlan:
    builders = _builders(entry, newest, upcasters) if direct else {}
    if entry is newest or builders:  # read straight into the classes, which fill newer fields
        return _ReadPlan(entry, compile_reader(entry.wire, builders), None, None, upcasters)
    resolver = compile_resolver(entry.wire, newest.wire)
    fallback = newest.wire if resolver is None else None
    return _ReadPlan(entry, compile_reader(entry.wire), resolver, fallback, upcasters)


def _check_written_as(type_name: Any, version: Any, entry: SchemaEntry) -> None:
    if type_name != entry.type or version != entry.version:
        raise DecodeError(
            f"invalid-envelope: type/schema_version say {type_name} "
            f"v{version} but the writer schema is {entry.type} v{entry.version}"
        )


def _validated(event: Event) -> Event:
    try:
        validate_envelope(event)
    except ContentTooLarge as exc:
        raise DecodeError(f"content-too-large: {exc}") from None
    except ValidationError as exc:
        raise DecodeError(f"invalid-envelope: {exc}") from None
    return event


def _builders(entry: SchemaEntry, newest: SchemaEntry, upcasters: tuple[Upcaster, ...]) -> dict[str, Any]:
    """Read ``entry`` straight into ``Event`` and its payload class (no dict in between) when that
    gives what the dict path gives: the envelope's fields are Event's, the payload's are its class's
    (a field newer than ``entry`` defaults as the newest schema says), no upcaster has to run, and
    what the class's ``from_record`` converts is arrays to tuples and nested records to
    ``NESTED_RECORDS`` (a test compares both paths on every schema version). Else {}."""
    if not entry.is_event or upcasters:
        return {}
    if {f["name"] for f in entry.schema["fields"]} != {f.name for f in dataclasses.fields(Event)}:
        return {}
    cls = PAYLOAD_TYPES[entry.type]
    written = {f["name"] for f in entry.payload_schema()["fields"]}
    defaults = {f["name"]: f.get("default", _NO_DEFAULT) for f in newest.payload_schema()["fields"]}
    for field in dataclasses.fields(cls):
        if field.name not in written and (
            field.name not in defaults or defaults[field.name] != field.default
        ):
            return {}
    if not written <= {f.name for f in dataclasses.fields(cls)}:
        return {}
    wire_payload = next(f["type"] for f in entry.wire["fields"] if f["name"] == "payload")
    builders: dict[str, Any] = {entry.wire["name"]: Event, wire_payload["name"]: cls}
    for name in _nested_records(wire_payload):
        nested = NESTED_RECORDS.get(name.rpartition(".")[2])
        if nested is None:
            return {}
        builders[name] = nested
    return builders


_NO_DEFAULT = object()


def _nested_records(schema: Any) -> list[str]:
    """Full names of the records inside a record schema (not the record itself)."""
    if isinstance(schema, list):
        return [name for branch in schema for name in _nested_records(branch)]
    if not isinstance(schema, dict):
        return []
    if schema.get("type") == "record":
        inner = [n for f in schema["fields"] for n in _nested_records(f["type"])]
        return inner + [n for f in schema["fields"] for n in _record_name(f["type"])]
    if schema.get("type") == "array":
        return _nested_records(schema["items"]) + _record_name(schema["items"])
    return []


def _record_name(schema: Any) -> list[str]:
    return [schema["name"]] if isinstance(schema, dict) and schema.get("type") == "record" else []


def _dropped_fields(entry: SchemaEntry) -> tuple[tuple[str, Any], ...]:
    """The newest payload's fields that ``entry`` lacks, with their defaults (in field order)."""
    kept = {f["name"] for f in entry.payload_schema()["fields"]}
    newest = PAYLOAD_TYPES[entry.type]
    return tuple((f.name, f.default) for f in dataclasses.fields(newest) if f.name not in kept)


def _check_downgrade(
    entry: SchemaEntry, payload: dict[str, Any], dropped: tuple[tuple[str, Any], ...]
) -> None:
    """Writing an older version must not drop a field that holds a non-default value."""
    for name, default in dropped:
        if name in payload and payload[name] != default:
            raise ValidationError(
                f"payload.{name}: {entry.type} v{entry.version} has no such field; "
                "write the newest version or clear the field"
            )


@functools.cache
def default_codec() -> Codec:
    """The codec over the shipped schema set."""
    return Codec(default_registry())


def encode(event: Event) -> bytes:
    """Single-object Avro bytes of ``event``."""
    return default_codec().encode(event)


def decode(data: Buffer, *, allowed_types: frozenset[str] | None = None) -> Event:
    """The event in ``data``; raises DecodeError(reason) for anything that must be dead-lettered."""
    return default_codec().decode(data, allowed_types=allowed_types)


def encode_dead_letter(letter: DeadLetter) -> bytes:
    return default_codec().encode_dead_letter(letter)


def decode_dead_letter(data: Buffer) -> DeadLetter:
    return default_codec().decode_dead_letter(data)


def reason_code(reason: str) -> str:
    """The machine-friendly prefix of a DecodeError reason (``DeadLetter.reason_code``)."""
    return reason.split(":", 1)[0]


def fast_codec_loaded() -> bool:
    """True when fastavro's compiled reader and writer are in use (not the pure-Python fallback)."""
    # The modules fastavro picked at import (C extension, or ``_write_py``/``_read_py``).
    modules = (vars(fastavro.write)["_write"], vars(fastavro.read)["_read"])
    return all(
        module.__name__ in ("fastavro._write", "fastavro._read")
        and str(getattr(module, "__file__", "")).endswith(tuple(importlib.machinery.EXTENSION_SUFFIXES))
        for module in modules
    )


def require_fast_codec() -> None:
    """Call at start-up: refuse to run ~20x slower on fastavro's pure-Python fallback."""
    if not fast_codec_loaded():
        raise InfrastructureError(
            "fastavro is running without its C extension (fastavro._write is pure Python). "
            "Operator action: reinstall a binary wheel: "
            "pip install --force-reinstall --only-binary=:all: fastavro"
        )
