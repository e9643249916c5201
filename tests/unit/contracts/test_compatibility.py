"""Compatibility gate: each schema version can read its predecessor's data and vice versa."""

from __future__ import annotations

import io
import json
from typing import Any

import avro.schema
import pytest
from avro.compatibility import ReaderWriterCompatibilityChecker, SchemaCompatibilityType
from fastavro import schemaless_reader, schemaless_writer
from hypothesis import given, settings
from hypothesis import strategies as st

from ledgerflow.contracts.registry import SchemaEntry, default_registry, wire_schema

PAIRS = [
    (found[i - 1], found[i]) for found in default_registry().versions.values() for i in range(1, len(found))
]
IDS = [f"{new.type}.v{old.version}-v{new.version}" for old, new in PAIRS]


def _compatible(reader: dict[str, Any], writer: dict[str, Any]) -> tuple[bool, str]:
    result = ReaderWriterCompatibilityChecker().get_compatibility(
        avro.schema.parse(json.dumps(reader)), avro.schema.parse(json.dumps(writer))
    )
    return result.compatibility is SchemaCompatibilityType.compatible, str(result.messages)


def test_there_is_at_least_one_evolution_to_check() -> None:
    assert IDS, "MessageSubmitted v1 -> v2 should be checked here"


@pytest.mark.parametrize(("old", "new"), PAIRS, ids=IDS)
def test_new_version_reads_old_data_backward(old: SchemaEntry, new: SchemaEntry) -> None:
    ok, why = _compatible(reader=new.schema, writer=old.schema)
    assert ok, f"{new.file_name} cannot read {old.file_name}: {why}. Give new fields a default."


@pytest.mark.parametrize(("old", "new"), PAIRS, ids=IDS)
def test_old_version_reads_new_data_forward(old: SchemaEntry, new: SchemaEntry) -> None:
    ok, why = _compatible(reader=old.schema, writer=new.schema)
    assert ok, (
        f"{old.file_name} cannot read {new.file_name}: {why}. "
        "Never remove or retype a field that has no default."
    )


@pytest.mark.parametrize(("old", "new"), PAIRS, ids=IDS)
@settings(max_examples=25, deadline=None)
@given(data=st.data())
def test_fastavro_resolves_data_both_ways(old: SchemaEntry, new: SchemaEntry, data, strategies) -> None:
    for writer, reader in ((old, new), (new, old)):
        if not writer.is_event:  # DeadLetter: no envelope, the record is the letter
            record = data.draw(strategies["value"](writer.schema))
            out = io.BytesIO()
            schemaless_writer(out, writer.wire, record)
            read = schemaless_reader(io.BytesIO(out.getvalue()), writer.wire, reader.wire)
            shared = {f["name"] for f in reader.schema["fields"]} & set(record)
            assert {k: read[k] for k in shared} == {k: record[k] for k in shared}
            continue
        record = data.draw(strategies["event_record"](writer))
        out = io.BytesIO()
        schemaless_writer(out, writer.wire, record)
        read = schemaless_reader(io.BytesIO(out.getvalue()), writer.wire, reader.wire)
        shared = {f["name"] for f in reader.payload_schema()["fields"]} & set(record["payload"])
        assert {k: read["payload"][k] for k in shared} == {k: record["payload"][k] for k in shared}


def test_the_gate_catches_a_new_required_field() -> None:
    old = default_registry().latest("ConversationClosed").schema
    new = json.loads(json.dumps(old))
    new["fields"][-1]["type"]["fields"].append({"name": "closed_by", "type": "string"})
    ok, _ = _compatible(reader=new, writer=old)
    assert not ok
    wire_schema(new)  # still a valid schema: only the gate refuses it
