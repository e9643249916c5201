"""Schema-Registry ids and subjects derived from the shipped schemas (pure)."""

from __future__ import annotations

import io

import pytest

from ledgerflow.client.confluent import single_object_schema_id
from ledgerflow.contracts import codec
from ledgerflow.contracts.events import new_event
from ledgerflow.contracts.payloads import MessageSubmitted
from ledgerflow.contracts.registry import default_registry
from ledgerflow.contracts.schema_ids import SchemaCatalog, schema_id, schema_id_of_record
from ledgerflow.errors import DecodeError, ValidationError


class Slot:
    id: int | None = None


def test_every_version_has_a_subject_version_and_a_unique_nonzero_id_from_its_fingerprint() -> None:
    registry = default_registry()
    catalog = SchemaCatalog(registry)
    assert set(catalog.subjects) == {f"io.ledgerflow.{t}" for t in registry.versions}
    for entry in registry.entries():
        found = catalog.version(f"io.ledgerflow.{entry.type}", str(entry.version))
        assert found.id == int.from_bytes(entry.fingerprint[:4], "big") & 0x7FFFFFFF != 0
        assert catalog.by_id[found.id] is found
        if entry.alias_fingerprint is not None:  # the python-avro/goavro variant names the same schema
            assert catalog.by_id[schema_id(entry.alias_fingerprint)] is found
    assert catalog.version("io.ledgerflow.MessageSubmitted", "latest").version == 2
    for bad in ("0", "3", "x", "", "01x", "²", "٢", " 1", "+1", "1_0", "1" * 5000):
        with pytest.raises(KeyError):
            catalog.version("io.ledgerflow.MessageSubmitted", bad)


def test_ids_are_stable_across_releases() -> None:
    # Published ids are in users' caches and tools: changing the derivation breaks them.
    catalog = SchemaCatalog(default_registry())
    assert catalog.version("io.ledgerflow.MessageSubmitted", "2").id == 1038137812


def test_a_clash_of_ids_refuses_to_build() -> None:
    catalog = SchemaCatalog(default_registry())
    one = catalog.version("io.ledgerflow.MessageSubmitted", "1")
    other = catalog.version("io.ledgerflow.MessageSubmitted", "2")
    with pytest.raises(ValidationError, match="is taken or zero"):
        catalog._add(one.id, other)
    with pytest.raises(ValidationError, match="is taken or zero"):
        catalog._add(0, other)


def test_lookup_matches_by_canonical_form_and_refuses_what_is_no_schema() -> None:
    catalog = SchemaCatalog(default_registry())
    v1 = default_registry().get("MessageSubmitted", 1)
    spaced = __import__("json").dumps(v1.schema, indent=3)  # formatting and docs do not matter
    assert catalog.lookup("io.ledgerflow.MessageSubmitted", spaced).version == 1  # type: ignore[union-attr]
    assert catalog.lookup("io.ledgerflow.MessageSubmitted", '"string"') is None
    for bad in ("{", '{"type": "record"}', "[1, 2]"):
        with pytest.raises(ValidationError, match="not a valid Avro schema"):
            catalog.lookup("io.ledgerflow.MessageSubmitted", bad)


def test_the_confluent_hook_names_the_schema_of_a_record_and_refuses_other_framings() -> None:
    payload = MessageSubmitted("t1", "user", "hi", "m")
    event = new_event(
        "MessageSubmitted", tenant="a", subject="c", payload=payload, producer="p", occurred_at_micros=10**15
    )
    wire = codec.encode(event)
    slot = Slot()
    body = single_object_schema_id(wire, None, slot)
    assert (
        slot.id
        == schema_id_of_record(wire)
        == schema_id(default_registry().latest("MessageSubmitted").fingerprint)
    )
    assert isinstance(body, io.BytesIO) and body.read() == wire[10:]
    for other in (b"\x00\x00\x00\x00\x01" + wire[10:], wire[:9], b""):
        with pytest.raises(ValueError, match="not-single-object"):
            single_object_schema_id(other, None, Slot())
    with pytest.raises(DecodeError):
        schema_id_of_record(b"{}")
