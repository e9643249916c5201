"""The schema set in ``schemas/`` is the registry: load it, fingerprint it, look it up.

Files are named ``<Type>.v<N>.avsc`` (record ``io.ledgerflow.<Type>``); files whose name
starts with ``_`` are references (``_envelope.avsc``) and are not wire types.
A schema's wire identity is the CRC-64-AVRO fingerprint of its Parsing Canonical Form,
stored little-endian in the single-object header (as the Java implementation does).
"""

from __future__ import annotations

import copy
import functools
import hashlib
import json
import re
import sys
from collections.abc import Iterable
from dataclasses import dataclass
from importlib import resources
from importlib.resources.abc import Traversable
from pathlib import Path
from typing import Any

from fastavro import parse_schema
from fastavro.schema import to_parsing_canonical_form

from ledgerflow.errors import ValidationError

NAMESPACE = "io.ledgerflow"
LOCK_FILE = "fingerprints.lock"
_FILE_RE = re.compile(r"^(?P<type>[A-Z][A-Za-z0-9]*)\.v(?P<version>[1-9][0-9]*)\.avsc$")

_EMPTY64 = 0xC15D213AA4D7A795


def _crc64_table() -> tuple[int, ...]:
    table = []
    for i in range(256):
        fp = i
        for _ in range(8):
            fp = (fp >> 1) ^ (_EMPTY64 & -(fp & 1))
        table.append(fp)
    return tuple(table)


_TABLE = _crc64_table()


def crc64_avro(data: bytes) -> int:
    """The Avro specification's 64-bit Rabin fingerprint of ``data``."""
    fp = _EMPTY64
    for byte in data:
        fp = (fp >> 8) ^ _TABLE[(fp ^ byte) & 0xFF]
    return fp


def canonical_form(schema: dict[str, Any]) -> str:
    """Parsing Canonical Form (drops doc, default, logicalType, aliases), as Java and fastavro."""
    return str(to_parsing_canonical_form(schema))


_PCF_ORDER = ("name", "type", "fields", "symbols", "items", "values", "size")
_PRIMITIVES = frozenset({"null", "boolean", "int", "long", "float", "double", "bytes", "string"})


def logical_wrapper_form(schema: Any, namespace: str = "", seen: set[str] | None = None) -> str:
    """The canonical form some libraries compute by mistake (Python ``avro``, goavro).

    They keep a logical-typed primitive as ``{"type":"long"}`` instead of ``"long"``
    (see goavro #174, AVRO-4004). Its fingerprint is accepted on decode as an alias so
    producers using those libraries are not dead-lettered; we never write it.
    """
    seen = set() if seen is None else seen
    if isinstance(schema, list):
        return "[" + ",".join(logical_wrapper_form(b, namespace, seen) for b in schema) + "]"
    if isinstance(schema, str):
        if schema in _PRIMITIVES:
            return json.dumps(schema)
        return json.dumps(schema if "." in schema else f"{namespace}.{schema}".lstrip("."))
    kind = schema["type"]
    if kind in _PRIMITIVES:
        return "{" + f'"type":{json.dumps(kind)}' + "}" if "logicalType" in schema else json.dumps(kind)
    parts = []
    if kind in ("record", "enum", "fixed"):
        name = schema["name"]
        if "." not in name and schema.get("namespace", namespace):
            name = f"{schema.get('namespace', namespace)}.{name}"
        if name in seen:
            return json.dumps(name)
        seen.add(name)
        namespace = name.rpartition(".")[0]
        parts.append(f'"name":{json.dumps(name)}')
    parts.append(f'"type":{json.dumps(kind)}')
    if kind == "record":
        fields = ",".join(
            "{"
            + f'"name":{json.dumps(f["name"])},"type":'
            + logical_wrapper_form(f["type"], namespace, seen)
            + "}"
            for f in schema["fields"]
        )
        parts.append(f'"fields":[{fields}]')
    elif kind == "enum":
        parts.append('"symbols":' + json.dumps(schema["symbols"], separators=(",", ":")))
    elif kind == "array":
        parts.append('"items":' + logical_wrapper_form(schema["items"], namespace, seen))
    elif kind == "map":
        parts.append('"values":' + logical_wrapper_form(schema["values"], namespace, seen))
    elif kind == "fixed":
        parts.append(f'"size":{int(schema["size"])}')
    return "{" + ",".join(parts) + "}"


def fingerprint(schema: dict[str, Any]) -> bytes:
    """8-byte little-endian CRC-64-AVRO fingerprint, as written after the ``C3 01`` magic."""
    return crc64_avro(canonical_form(schema).encode("utf-8")).to_bytes(8, "little")


def alias_fingerprint(schema: dict[str, Any]) -> bytes:
    """Fingerprint of :func:`logical_wrapper_form` (accepted on decode, never written)."""
    return crc64_avro(logical_wrapper_form(schema).encode("utf-8")).to_bytes(8, "little")


def content_digest(schema: dict[str, Any]) -> str:
    """SHA-256 of the schema without ``doc`` attributes.

    Unlike the fingerprint it also covers defaults and logical types, which the
    Parsing Canonical Form leaves out but which change what readers see.
    """
    text = json.dumps(_strip(schema, {"doc"}), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def _strip(node: Any, keys: set[str]) -> Any:
    if isinstance(node, dict):
        return {k: _strip(v, keys) for k, v in node.items() if k not in keys}
    if isinstance(node, list):
        return [_strip(v, keys) for v in node]
    return node


def wire_schema(schema: dict[str, Any]) -> Any:
    """fastavro-parsed schema without logical types (same bytes; ints and strings in/out)."""
    return parse_schema(_strip(copy.deepcopy(schema), {"logicalType"}), named_schemas={})


@dataclass(frozen=True, slots=True)
class SchemaEntry:
    """One published schema version."""

    type: str
    version: int
    file_name: str
    schema: dict[str, Any]
    wire: Any
    fingerprint: bytes
    is_event: bool
    alias_fingerprint: bytes | None = None

    @property
    def fingerprint_hex(self) -> str:
        return self.fingerprint.hex()

    def payload_schema(self) -> dict[str, Any]:
        """The ``payload`` record of an event schema."""
        for field in self.schema["fields"]:
            if field["name"] == "payload":
                return field["type"]  # type: ignore[no-any-return]
        raise ValidationError(f"{self.file_name} has no payload field: it is not an event schema")


class SchemaRegistry:
    """All schema versions, by fingerprint and by (type, version)."""

    def __init__(self, entries: Iterable[SchemaEntry]) -> None:
        self.by_fingerprint: dict[bytes, SchemaEntry] = {}
        self.by_alias: dict[bytes, SchemaEntry] = {}
        versions: dict[str, list[SchemaEntry]] = {}
        for entry in entries:
            pairs = ((entry.fingerprint, self.by_fingerprint), (entry.alias_fingerprint, self.by_alias))
            for fp, table in pairs:
                if fp is None:
                    continue
                clash = self.by_fingerprint.get(fp) or self.by_alias.get(fp)
                if clash is not None:
                    raise ValidationError(
                        f"{entry.file_name} and {clash.file_name} have the same fingerprint: "
                        "two versions of a schema must differ on the wire"
                    )
                table[fp] = entry
            versions.setdefault(entry.type, []).append(entry)
        self.versions: dict[str, tuple[SchemaEntry, ...]] = {}
        for name, found in sorted(versions.items()):
            found.sort(key=lambda e: e.version)
            numbers = [e.version for e in found]
            if numbers != list(range(1, len(found) + 1)):
                raise ValidationError(
                    f"versions of {name} are {numbers}: they must be 1, 2, 3 ... with no gap"
                )
            self.versions[name] = tuple(found)
        self.event_types: frozenset[str] = frozenset(
            name for name, found in self.versions.items() if found[-1].is_event
        )

    def latest(self, type_name: str) -> SchemaEntry:
        return self.versions[type_name][-1]

    def get(self, type_name: str, version: int) -> SchemaEntry:
        found = self.versions[type_name]
        if not 1 <= version <= len(found):
            raise KeyError((type_name, version))
        return found[version - 1]

    def entries(self) -> list[SchemaEntry]:
        return [e for found in self.versions.values() for e in found]


def schemas_dir() -> Traversable:
    """``ledgerflow/schemas`` when installed as package data, else ``<repo>/schemas``."""
    packaged = resources.files("ledgerflow") / "schemas"
    if packaged.is_dir():
        return packaged
    return Path(__file__).resolve().parents[2] / "schemas"


def load_entry(file_name: str, text: str) -> SchemaEntry:
    """Parse one ``<Type>.v<N>.avsc`` file."""
    match = _FILE_RE.match(file_name)
    if match is None:
        raise ValidationError(f"{file_name}: schema files are named <Type>.v<N>.avsc")
    schema = json.loads(text)
    type_name, version = match["type"], int(match["version"])
    if schema.get("name") != type_name or schema.get("namespace") != NAMESPACE:
        raise ValidationError(
            f"{file_name}: the record must be named {NAMESPACE}.{type_name} "
            "(the same name in every version, so readers can resolve old data)"
        )
    is_event = any(f["name"] == "payload" for f in schema["fields"])
    return SchemaEntry(
        type=type_name,
        version=version,
        file_name=file_name,
        schema=schema,
        wire=wire_schema(schema),
        fingerprint=fingerprint(schema),
        is_event=is_event,
        alias_fingerprint=_alias_or_none(schema),
    )


def _alias_or_none(schema: dict[str, Any]) -> bytes | None:
    alias = alias_fingerprint(schema)
    return None if alias == fingerprint(schema) else alias


def load_registry(directory: Traversable | None = None) -> SchemaRegistry:
    """Load every ``*.avsc`` in ``directory`` (default: :func:`schemas_dir`)."""
    root = directory if directory is not None else schemas_dir()
    entries = [
        load_entry(item.name, item.read_text(encoding="utf-8"))
        for item in sorted(root.iterdir(), key=lambda t: t.name)
        if item.name.endswith(".avsc") and not item.name.startswith("_")
    ]
    if not entries:
        raise ValidationError(f"no schemas found in {root}: is the schemas/ directory shipped?")
    return SchemaRegistry(entries)


@functools.cache
def default_registry() -> SchemaRegistry:
    """The registry of the shipped schema set (loaded once)."""
    return load_registry()


def envelope_fields(directory: Traversable | None = None) -> list[dict[str, Any]]:
    """The reference envelope fields from ``_envelope.avsc``."""
    root = directory if directory is not None else schemas_dir()
    reference = json.loads((root / "_envelope.avsc").read_text(encoding="utf-8"))
    return reference["fields"]  # type: ignore[no-any-return]


def render_lock(registry: SchemaRegistry) -> str:
    """The content of ``schemas/fingerprints.lock`` for ``registry``."""
    lines = ["# type version crc64-avro-fingerprint(hex, as on the wire) content-sha256"]
    for entry in registry.entries():
        lines.append(f"{entry.type} {entry.version} {entry.fingerprint_hex} {content_digest(entry.schema)}")
    return "\n".join(lines) + "\n"


def read_lock(text: str) -> dict[tuple[str, int], tuple[str, str]]:
    """Parse a lock file into {(type, version): (fingerprint_hex, content_sha256)}."""
    locked: dict[tuple[str, int], tuple[str, str]] = {}
    for line in text.splitlines():
        if not line.strip() or line.startswith("#"):
            continue
        type_name, version, fp, digest = line.split()
        locked[(type_name, int(version))] = (fp, digest)
    return locked


if __name__ == "__main__":  # python -m ledgerflow.contracts.registry > schemas/fingerprints.lock
    sys.stdout.write(render_lock(default_registry()))
