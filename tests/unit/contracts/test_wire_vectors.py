"""Bytes written before the compiled codec still decode to the same records and re-encode to the
very same bytes (hash chains and input hashes are over these bytes).

``wire_vectors.json`` was written by the codec of commit 1ce3892 (fastavro's schemaless writer
and reader) with::

    git archive 1ce3892 | tar -x -C /tmp/old
    PYTHONPATH=/tmp/old python tests/unit/contracts/test_wire_vectors.py > /tmp/v.json  # then move it here

Each vector: the single-object bytes (hex) of a deterministic record of one schema version
(three variants each: nulls and small values, Unicode and multi-byte varints, extremes), and
what that codec decoded them to (``Event.to_json()``; a dead letter's record with bytes as hex).
The ``UsageWindow`` vectors were written again the same way (same commit) once the codec began to
refuse windows no usage agent writes (``validate_usage_window``): the generator's values had
``window_end == window_start`` and negative counts.
"""

from __future__ import annotations

import dataclasses
import json
import sys
import uuid
from pathlib import Path
from typing import Any

import pytest

from ledgerflow.contracts import codec
from ledgerflow.contracts.events import Event
from ledgerflow.contracts.payloads import PAYLOAD_TYPES, DeadLetter
from ledgerflow.contracts.registry import SchemaEntry, default_registry
from ledgerflow.errors import ValidationError

VECTORS = Path(__file__).with_name("wire_vectors.json")
T0 = 1_795_000_000_000_000
_IDS = ("acme", "conv-6f1c.3c52:x@y_z", "T" * 128)
_TEXTS = ("plain", "é漢字🙂 «quoted» \\ back", "x" * 64)
_FREE = ("", 'line one\nline two\t"q" \\ \x00 é漢字🙂', "y" * 256)
_INTS = (0, -300, 2**31 - 1)
_LONGS = (1, -(2**40), 2**63 - 1)
_DOUBLES = (0.5, -1e300, 3.0)
_ID_FIELDS = {"tenant", "subject", "turn_id", "conversation_id"}
_TEXT_FIELDS = {"model", "actor", "language", "producer"}


def _value(schema: Any, name: str, v: int) -> Any:
    """A deterministic value of ``schema`` for field ``name``, variant ``v`` (0..2)."""
    if isinstance(schema, list):
        if v == 0 and "null" in schema:
            return None
        return _value(next(b for b in schema if b != "null"), name, v)
    kind = schema if isinstance(schema, str) else schema["type"]
    logical = None if isinstance(schema, str) else schema.get("logicalType")
    if logical == "uuid":
        return str(uuid.uuid5(uuid.NAMESPACE_URL, f"{name}/{v}"))
    if logical == "timestamp-micros":
        return T0 + v * 1_234_567
    if kind == "string":
        pool = _IDS if name in _ID_FIELDS else _TEXTS if name in _TEXT_FIELDS else _FREE
        return pool[v]
    if kind == "int":
        return _INTS[v]
    if kind == "long":
        return _LONGS[v]
    if kind == "double":
        return _DOUBLES[v]
    if kind == "boolean":
        return v == 1
    if kind == "bytes":
        return bytes(range(v * 100 % 256)) + b"\x00\xff"
    if kind == "enum":
        return schema["symbols"][v % len(schema["symbols"])]
    if kind == "array":
        return [_value(schema["items"], name, (v + i) % 3) for i in range(v)]
    if kind == "record":
        return {f["name"]: _value(f["type"], f["name"], v) for f in schema["fields"]}
    raise ValueError(kind)


def _event(entry: SchemaEntry, v: int) -> Event | None:
    record = _value(entry.schema, "", v)
    record.update(type=entry.type, schema_version=entry.version, sequence=None if v == 0 else v)
    if record["tenant"] is not None and entry.type in ("RulePackPublished",) and v == 2:
        record["tenant"] = record["subject"] = "*"
    payload = dict(record.pop("payload"))
    cls = PAYLOAD_TYPES[entry.type]
    for field in dataclasses.fields(cls):
        payload.setdefault(field.name, field.default)  # fields newer than this version
    if entry.type == "MessageSubmitted":
        payload["tokens"] = None if v == 0 else 1000 * v
    if entry.type == "PolicyDecision":
        payload["score"] = _DOUBLES[v] if v < 2 else 0.875
    if entry.type == "UsageWindow":  # a window the usage agent could write (validate_usage_window)
        payload["window_end"] = payload["window_start"] + 60_000_000
        payload.update(tokens=_LONGS[v] if v != 1 else 2**40, events=v + 1, estimated_tokens=v, revision=v)
    event = Event(**record, payload=cls.from_record(payload))
    try:
        codec.encode(event)
    except ValidationError:
        return None
    return event


def _letter_json(letter: DeadLetter) -> dict[str, Any]:
    record = letter.to_record()
    record["key"] = None if letter.key is None else letter.key.hex()
    record["value"] = letter.value.hex()
    record["headers"] = [[k, None if h is None else h.hex()] for k, h in letter.headers]
    return record


def generate() -> list[dict[str, Any]]:
    """The vectors, written and decoded by whatever ``ledgerflow`` is on the path."""
    out: list[dict[str, Any]] = []
    for entry in default_registry().entries():
        for v in range(3):
            if entry.is_event:
                event = _event(entry, v)
                if event is None:
                    continue
                wire = codec.encode(event)
                out.append(
                    {
                        "name": f"{entry.file_name}/{v}",
                        "hex": wire.hex(),
                        "json": codec.decode(wire).to_json(),
                    }
                )
            else:
                import io

                from fastavro import schemaless_writer

                body = io.BytesIO()
                record = _value(entry.schema, "", v)
                schemaless_writer(body, entry.wire, record)
                wire = codec.MAGIC + entry.fingerprint + body.getvalue()
                letter = codec.decode_dead_letter(wire)
                out.append(
                    {"name": f"{entry.file_name}/{v}", "hex": wire.hex(), "json": _letter_json(letter)}
                )
    return out


def _vectors() -> list[dict[str, Any]]:
    return json.loads(VECTORS.read_text(encoding="utf-8"))  # type: ignore[no-any-return]


def test_every_schema_version_has_vectors() -> None:
    names = {v["name"].split("/")[0] for v in _vectors()}
    assert names == {e.file_name for e in default_registry().entries()}


@pytest.mark.parametrize("vector", _vectors(), ids=lambda v: v["name"])
def test_old_bytes_decode_to_the_same_record_and_re_encode_identically(vector: dict[str, Any]) -> None:
    wire = bytes.fromhex(vector["hex"])
    if "DeadLetter" in vector["name"]:
        letter = codec.decode_dead_letter(wire)
        assert _letter_json(letter) == vector["json"]
        assert codec.decode_dead_letter(codec.encode_dead_letter(letter)) == letter
        return
    event = codec.decode(wire)
    assert event.to_json() == vector["json"]
    assert codec.encode(event) == wire


if __name__ == "__main__":
    json.dump(generate(), sys.stdout, indent=1, ensure_ascii=False)
    sys.stdout.write("\n")
