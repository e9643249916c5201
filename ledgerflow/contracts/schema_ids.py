"""Schema-Registry-compatible ids and subjects for the schemas in ``schemas/`` (pure).

Stock Confluent clients name a schema by a 32-bit id and group versions under a subject.
ledgerflow's records name their schema by the 8-byte fingerprint in the single-object header
(``c3 01 | fingerprint | body``), so the id is derived from it: the first four fingerprint
bytes as they stand on the wire, read big-endian, top bit cleared. Anyone holding a record
can compute its schema id without asking anything (``schema_id_of_record``), and an id never
changes when schemas are added. Subjects follow the RecordNameStrategy (``io.ledgerflow.<Type>``,
one version per ``<Type>.v<N>.avsc``): several record types share a topic, so the
TopicNameStrategy's one schema per topic does not describe our topics.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from ledgerflow.contracts.registry import NAMESPACE, SchemaEntry, SchemaRegistry, fingerprint
from ledgerflow.digits import ascii_digits
from ledgerflow.errors import DecodeError, ValidationError

SINGLE_OBJECT_MAGIC = b"\xc3\x01"
HEADER_BYTES = 10
COMPATIBILITY = "FULL"
"""What docs/contracts.md requires of each new version (backward and forward with the previous one)."""


def schema_id(wire_fingerprint: bytes) -> int:
    """The registry id of a schema: its wire fingerprint's first 4 bytes, big-endian, top bit cleared."""
    return int.from_bytes(wire_fingerprint[:4], "big") & 0x7FFF_FFFF


def schema_id_of_record(value: bytes) -> int:
    """The registry id of the schema a single-object encoded record was written with."""
    if value[:2] != SINGLE_OBJECT_MAGIC or len(value) < HEADER_BYTES:
        raise DecodeError("not-single-object: the value does not start with c3 01 and an 8-byte fingerprint")
    return schema_id(value[2:HEADER_BYTES])


def subject_of(type_name: str) -> str:
    return f"{NAMESPACE}.{type_name}"


@dataclass(frozen=True, slots=True)
class Registered:
    """One schema version as a Schema Registry answers it."""

    subject: str
    version: int
    id: int
    schema: str  # the .avsc document as JSON text (logical types and docs included)
    fingerprint: bytes

    def answer(self) -> dict[str, Any]:
        """``GET /subjects/{s}/versions/{v}``'s body (``schemaType`` left out: AVRO)."""
        return {"subject": self.subject, "version": self.version, "id": self.id, "schema": self.schema}


class SchemaCatalog:
    """Subjects, versions and ids of a schema registry; ids are checked unique when built."""

    def __init__(self, registry: SchemaRegistry) -> None:
        self.subjects: dict[str, tuple[Registered, ...]] = {}
        self.by_id: dict[int, Registered] = {}
        for type_name, entries in registry.versions.items():
            found = tuple(_registered(entry) for entry in entries)
            self.subjects[subject_of(type_name)] = found
            for entry, registered in zip(entries, found, strict=True):
                self._add(registered.id, registered)
                if entry.alias_fingerprint is not None:  # python avro / goavro writers (docs/contracts.md)
                    self._add(schema_id(entry.alias_fingerprint), registered)

    def _add(self, ident: int, registered: Registered) -> None:
        clash = self.by_id.get(ident)
        if ident == 0 or (clash is not None and clash != registered):
            raise ValidationError(
                f"schema id {ident} of {registered.subject} v{registered.version} is taken or zero: "
                "two schemas must differ in their first four fingerprint bytes"
            )
        self.by_id[ident] = registered

    def version(self, subject: str, version: str) -> Registered:
        """``version`` is a number or ``latest``; KeyError names what is missing."""
        versions = self.subjects[subject]
        if version in ("latest", "-1"):
            return versions[-1]
        if not ascii_digits(version) or not 1 <= int(version) <= len(versions):
            raise KeyError(version)
        return versions[int(version) - 1]

    def lookup(self, subject: str, schema_text: str) -> Registered | None:
        """The version of ``subject`` whose schema has the same Parsing Canonical Form, else None.
        ValidationError when ``schema_text`` is no Avro schema."""
        try:
            wanted = fingerprint(json.loads(schema_text))
        except Exception as exc:  # json and fastavro raise many kinds on a bad schema
            raise ValidationError(f"schema: not a valid Avro schema ({type(exc).__name__})") from None
        return next((r for r in self.subjects[subject] if r.fingerprint == wanted), None)


def _registered(entry: SchemaEntry) -> Registered:
    text = json.dumps(entry.schema, separators=(",", ":"))
    return Registered(
        subject_of(entry.type), entry.version, schema_id(entry.fingerprint), text, entry.fingerprint
    )
